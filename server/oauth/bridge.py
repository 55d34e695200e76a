"""Authlib inside async routes: the request it is handed, the answer it gives back, and the bridge to the store.

Authlib's server is synchronous. A route reads the body on the loop, builds a `FormRequest`, and runs Authlib in a
greenlet on the event loop's own thread (`run_authlib`); Authlib's callbacks wait for the async `OAuthStore` through
`bridge`, which hands the coroutine to the route's task and resumes the greenlet with its result: the way
SQLAlchemy's async layer runs its synchronous ORM (its `greenlet_spawn`, whose `greenlet` package this uses).

Authlib ran in a worker thread before, its callbacks coming back with `anyio.from_thread.run`: about five thread
hops a token request, each a wake-up of the loop and of the thread, which made a code exchange the costliest
request the server had. Authlib does no I/O of its own, so nothing blocks the loop that the store would not.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import greenlet
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request

T = TypeVar("T")
# The client authentication methods of the token and revocation endpoints: public clients (`none`) included.
ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


@dataclass(frozen=True)
class OAuthResult:
    """Authlib's answer, framework-neutral; the route turns it into a Litestar response."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        return next((value for name, value in self.headers if name.lower() == "location"), None)


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, datalist: Mapping[str, list[str]]) -> None:
        self._datalist = {key: list(values) for key, values in datalist.items()}
        self._data = {key: values[0] for key, values in self._datalist.items() if values}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Headers(dict[str, str]):
    """Header lookup without regard to case: Authlib asks for "Authorization", Litestar hands "authorization"."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__((name.lower(), value) for name, value in headers.items())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An OAuth request whose parameters were read on the event loop (query string, form or JSON body)."""

    def __init__(self, method: str, uri: str, params: Mapping[str, list[str]], headers: Mapping[str, str]) -> None:
        # Authlib refuses non-https URIs outside loopback (and outside its own error handling, so as a 500).
        # The transport is the deployment's business (a TLS proxy, or plain http in a lab); the URI is used
        # for nothing else here, so Authlib sees it with an https scheme.
        if uri.startswith("http://"):
            uri = "https://" + uri[len("http://") :]
        super().__init__(method, uri, headers=_Headers(headers))
        self.payload = _Payload(params)

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data

    @property
    def args(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data


class _AuthlibGreenlet(greenlet.greenlet):  # type: ignore[misc]
    """Authlib's work, run by `run_authlib`: its parent is the route's task, which awaits what `bridge` hands it."""

    def __init__(self, work: Callable[[], Any], parent: greenlet.greenlet) -> None:
        super().__init__(work, parent)
        self.gr_context = parent.gr_context  # the task's context variables (a worker thread ran in a copy of them)


def bridge(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """From Authlib's code (inside `run_authlib`), run a store coroutine on the event loop and wait for it."""
    current = greenlet.getcurrent()
    if not isinstance(current, _AuthlibGreenlet):
        raise RuntimeError("bridge() is for Authlib's callbacks, inside run_authlib()")
    return current.parent.switch(fn(*args))


async def run_authlib(work: Callable[[], T]) -> T:
    """`work` (Authlib's synchronous server) in a greenlet, each coroutine it hands over (`bridge`) awaited here and
    its result (or exception) sent back in, until it returns."""
    child = _AuthlibGreenlet(work, greenlet.getcurrent())
    handed = child.switch()
    while not child.dead:
        try:
            result = await handed
        except BaseException:  # the store's exception, or a cancellation, is raised where Authlib called the store
            handed = child.throw(*sys.exc_info())
        else:
            handed = child.switch(result)
    return cast(T, handed)
