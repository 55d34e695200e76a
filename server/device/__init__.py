"""The trusted device's API (docs/device-api.md): signed requests, enrolment, pairings, connections."""
