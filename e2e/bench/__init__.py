"""One benchmark for every speed figure of Vouchsim (issue 12), each beside a Litestar hello-world of the same run:

    uv run python -m e2e.bench [--quick] [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--json PATH]
        [--only mcp|decisions]

- `/mcp` `tools/call identity_get`, 2025-11-25 with a session and 2026-07-28 stateless, req/s and the ratio to the
  hello-world, on SQLite (and PostgreSQL with `--postgres`): mcp.py;
- a device's decision → the waiting call's reply, one at a time (p50/p99); the server's CPU per decision; 1,000
  waiting calls approved 32 at a time (replies within 1 s of their own decision, peak RSS): delegations.py;
- the token endpoint: code exchanges and refresh rotations per second, as a ratio to the hello-world: token.py;
- the whole flow in one process (DCR → … → tools/call) p50, with the QR's render and decode: flow.py.

Servers run pinned to core 0 and the load generator (loader.py: raw keep-alive sockets, its own process) to core 1
when `taskset` exists; the loader's CPU share is printed beside every rate, so a loader that is the bottleneck shows.
Server CPU is read from `/proc` before and after each measurement, so per-request CPU figures hold on a busy machine.
`--quick` (tiny counts, a few seconds of load) is the smoke run of `make test` (e2e/test_bench.py): it checks that the
benchmark runs and reports, not any speed. The table is printed and saved as JSON.
"""
