"""Testbed controls (README "Testbed controls"): a request journal, fault injection, a movable clock and reset,
under `/testbed/`, on only with `vouchsim serve --testbed` (`VOUCHSIM_TESTBED=1`).

`control` holds the state and its changes (shared by every instance through the database and the event bus),
`journal` the per-instance request journal, `faults` the fault wire types and matching, `observe` what a
request and its answer say (secrets masked), `layer` the ASGI layer that journals and injects, and `routes`
the HTTP endpoints (the only module here that knows Litestar).
"""
