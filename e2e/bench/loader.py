"""The load generator of `python -m e2e.bench`: raw HTTP/1.1 over asyncio sockets, keep-alive, no HTTP library.

An httpx client spends more CPU per request than a fast server does (the first 1,000-call benchmark measured its own
pool), so the load comes from plain sockets: each connection writes a request, reads the status line, the headers and
exactly `Content-Length` bytes, and writes the next one. It runs as its own process (`python -m e2e.bench.loader`,
pinned with `taskset` to the core the server does not have), reads its job as JSON on stdin and prints its result as
JSON, its own CPU time included, so the report can say whether the loader or the server was the bottleneck.

Three kinds of job:
- `fixed`: the same request again and again; `__ID__` in the body becomes a unique JSON-RPC id each time;
- `chain`: a refresh-token rotation per connection: `__TOKEN__` in the body is the `refresh_token` of the previous
  answer (each connection starts with its own);
- `once`: a list of bodies, each sent once (authorization codes), shared by the connections until none is left.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Job:
    host: str
    port: int
    path: str
    headers: dict[str, str]
    connections: int
    duration: float
    kind: str = "fixed"  # fixed | chain | once
    body: str = ""
    tokens: list[str] = field(default_factory=list)  # chain: one starting refresh token per connection
    bodies: list[str] = field(default_factory=list)  # once


@dataclass
class Result:
    requests: int = 0
    ok: int = 0
    not_ok: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    first_failure: str = ""

    @property
    def per_second(self) -> float:
        return self.requests / max(self.elapsed, 1e-9)

    @property
    def cpu_share(self) -> float:
        """The loader's CPU as a share of one core over the run."""
        return self.cpu_seconds / max(self.elapsed, 1e-9)


def _request(job: Job, body: bytes) -> bytes:
    head = [f"POST {job.path} HTTP/1.1", f"Host: {job.host}:{job.port}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in job.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "transfer-encoding":
            raise RuntimeError("a chunked answer: the loader expects Content-Length")
    return status, await reader.readexactly(length) if length else b""


async def _connection(job: Job, index: int, deadline: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(job.host, job.port)
    token = job.tokens[index] if job.kind == "chain" else ""
    counter = index * 10_000_000
    try:
        while time.perf_counter() < deadline:
            if job.kind == "once":
                if not job.bodies:
                    return
                body = job.bodies.pop()
            elif job.kind == "chain":
                body = job.body.replace("__TOKEN__", token)
            else:
                counter += 1
                body = job.body.replace("__ID__", str(counter))
            writer.write(_request(job, body.encode()))
            status, answer = await _response(reader)
            result.requests += 1
            if status == 200:
                result.ok += 1
            else:
                result.not_ok += 1
                if not result.first_failure:
                    result.first_failure = f"{status}: {answer[:300].decode(errors='replace')}"
            if job.kind == "chain":
                if status != 200:
                    return  # the chain is broken: this connection has nothing left to send
                token = json.loads(answer)["refresh_token"]
    finally:
        writer.close()


async def run(job: Job) -> Result:
    result = Result()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    done = await asyncio.gather(
        *(_connection(job, index, started + job.duration, result) for index in range(job.connections)),
        return_exceptions=True,
    )
    result.elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.errors = [repr(outcome) for outcome in done if isinstance(outcome, BaseException)][:5]
    return result


def main() -> int:
    job = Job(**json.load(sys.stdin))
    try:
        import uvloop

        result = uvloop.run(run(job))
    except ImportError:
        result = asyncio.run(run(job))
    out: dict[str, Any] = asdict(result)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
