"""The QR pairing flow (server side): a state machine, its codes and QR, and the service that drives it."""
