"""The composition root: `create_app(settings)` wires storage, services and routes; nothing imports this module."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.types import Receive, Scope, Send
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vouchsim.server import openapi
from vouchsim.server.core.clock import Clock, OffsetClock, SystemClock
from vouchsim.server.core.crypto import random_token
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.delegation.audiences import AudienceRegistry
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.delegation.tokens import SigningKeyStore
from vouchsim.server.device.routes import decision_lane, device_router
from vouchsim.server.edge import stack
from vouchsim.server.edge.cors import cors_headers
from vouchsim.server.edge.limits import RateLimits, limited
from vouchsim.server.mcp.routes import fast_lane, mcp_routes
from vouchsim.server.mcp.transport import McpServer
from vouchsim.server.oauth.cimd import metadata_resolver
from vouchsim.server.oauth.clients import CIMD_MODE, ClientDirectory
from vouchsim.server.oauth.delegation_tokens import DelegationTokens
from vouchsim.server.oauth.preregistered import PreregisteredClients
from vouchsim.server.oauth.routes import TEMPLATES, oauth_routes
from vouchsim.server.settings import LOG_FORMAT, Settings, settings_from_environment
from vouchsim.server.storage.engine import create_engine, create_sessionmaker
from vouchsim.server.storage.events import EventBus
from vouchsim.server.storage.migrate import upgrade
from vouchsim.server.storage.repositories.clients import ClientRepository
from vouchsim.server.storage.repositories.keys import get_or_create_key
from vouchsim.server.storage.session import own_transactions, transaction
from vouchsim.server.testbed import routes as testbed_routes
from vouchsim.server.testbed.control import Testbed

log = logging.getLogger("vouchsim")


@dataclass(frozen=True)
class Resources:
    """What lives for the life of the process besides the Runtime: the engine, its sessions, the event bus, and
    the delegation service (its own short transactions: a waiting call holds no connection)."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    events: EventBus
    delegations: DelegationService


async def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def provide_events(state: State) -> EventBus:
    resources: Resources = state.resources
    return resources.events


async def provide_delegations(state: State) -> DelegationService:
    resources: Resources = state.resources
    return resources.delegations


async def provide_delegation_tokens(state: State) -> DelegationTokens:
    """`server.delegation`'s service, as the Protocol `server.oauth` asks for (it never imports the delegation
    package): revocation, introspection and the JWKS of delegation tokens."""
    resources: Resources = state.resources
    return resources.delegations


async def provide_db_session(state: State) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back when it raises."""
    resources: Resources = state.resources
    async with transaction(resources.sessions) as session:
        yield session


_ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Framework errors (unknown route, wrong method, bad parameters) in the same shape as every other error."""
    code = _ERROR_CODES.get(exc.status_code, "server_error" if exc.status_code >= 500 else "invalid_request")
    headers = dict(exc.headers or {})
    return Response(
        content={"error": code, "error_description": exc.detail},
        status_code=exc.status_code,
        headers=headers,
        media_type="application/json",
    )


def bad_input(exc: BaseException) -> bool:
    """Whether `exc` is a parser or the database refusing what the request carried, not a bug of ours: nesting past
    a recursion limit, text that is not Unicode, a value the database cannot store (PostgreSQL and NUL)."""
    if isinstance(exc, RecursionError | UnicodeError | DataError):
        return True
    if isinstance(exc, DBAPIError):
        # asyncpg's errors reach SQLAlchemy as a generic DBAPIError; SQLSTATE class 22 is "data exception"
        # (22021: a NUL byte in text), the request's fault, not ours.
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(state, str) and state.startswith("22")
    return isinstance(exc, StatementError) and isinstance(exc.orig, UnicodeError)


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: logged with its traceback for us, a plain 500 for the caller (never the traceback itself). The last
    resort behind server.edge.inputs: bad input that got past it is a 400, logged in one line."""
    if bad_input(exc):
        log.warning(
            "refused %s %s: the request carried what a parser cannot read (%s)",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return Response(
            content={"error": "invalid_request", "error_description": "The request contains data that cannot be read."},
            status_code=400,
            headers={"Cache-Control": "no-store"},
            media_type="application/json",
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(
        content={"error": "server_error", "error_description": "Something went wrong on our side."},
        status_code=500,
        media_type="application/json",
    )


async def _answer_failure(app: Litestar, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """What Litestar's exception handling answers for `exc` raised by a route (the app's handlers: `http_error`,
    `unexpected_error`), for a fast lane, which has no route."""
    request: Request[Any, Any, Any] = app.request_class(scope=scope, receive=receive, send=send)
    response = http_error(request, exc) if isinstance(exc, HTTPException) else unexpected_error(request, exc)
    await response.to_asgi_response(app=None, request=request, type_encoders=app.type_encoders)(scope, receive, send)


@get("/healthz", tags=["ops"])
async def healthz(state: State) -> dict[str, str]:
    """Readiness: the database answers."""
    resources: Resources = state.resources
    async with resources.engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
    return {"status": "ok"}


def create_app_from_environment() -> Litestar:
    """The app of one worker process of `vouchsim serve --workers N`, from the `VOUCHSIM_*` variables the
    command exported for it."""
    return serving(create_app(settings_from_environment()))


def serving(app: Litestar) -> Litestar:
    """`app` as a server process of its own runs it (`vouchsim serve`): once started, what the start made (modules,
    routes, the app's caches: ~400,000 objects) is frozen out of the garbage collector's reach, so a full collection
    walks only what requests made. Before, each full collection paused the event loop for ~110 ms on this 2-core
    machine, four times in a burst of 1,000 decisions. Not for an app run inside another program (the tests), whose
    objects the freeze would keep for good."""
    app.on_startup.append(_freeze_what_startup_made)
    return app


def _freeze_what_startup_made() -> None:
    gc.collect()  # the start's garbage goes first: frozen, it would stay
    gc.freeze()


class _MsgspecLitestar(Litestar):
    """Litestar without the Pydantic and attrs plugins it adds whenever those libraries can be imported (they can:
    the companion's MCP SDK needs Pydantic). Every model here is a msgspec struct, and Pydantic with Litestar's
    plugin for it cost the serving process ~14 MiB of resident memory for nothing."""

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        plugins.append(MsgspecDIPlugin())  # the one default plugin this app uses (Litestar's own list, less two)
        return plugins


@dataclass(frozen=True)
class Deployment:
    """What one use of the app is bound to (`bind`): its settings and clock, and what is made from them before the
    app starts. Its lifespan, dependencies and edge read it from `app.state.deployment`."""

    settings: Settings
    clock: Clock  # the testbed's movable clock when the testbed is on: every expiry follows it
    audiences: AudienceRegistry
    testbed: Testbed | None
    preregistered: PreregisteredClients
    clients: ClientDirectory

    @classmethod
    def of(
        cls, settings: Settings, *, clock: Clock | None = None, audiences: AudienceRegistry | None = None
    ) -> Deployment:
        """Raises `AudienceFileError`, `ClientsFileError` or `CaFileError` at once when the audience file, the
        clients file or the CIMD CA file (settings.audiences_file, clients_file, cimd_ca_file) is not usable."""
        clock = clock or SystemClock()
        registry = audiences if audiences is not None else AudienceRegistry.from_settings(settings)
        testbed = _testbed(settings, clock)
        if testbed is not None:
            clock = testbed.clock
        preregistered = PreregisteredClients.from_settings(settings)
        # One directory (and so one metadata document cache) per use; the resolver reads the CA file now.
        modes = settings.registration_modes
        clients = ClientDirectory(modes, metadata_resolver(settings, clock) if CIMD_MODE in modes else None)
        if settings.cimd_ca_file and CIMD_MODE not in modes:
            metadata_resolver(settings, clock)  # a bad CA file stops the server whatever the mode
        return cls(settings, clock, registry, testbed, preregistered, clients)


def create_app(
    settings: Settings, *, clock: Clock | None = None, audiences: AudienceRegistry | None = None
) -> Litestar:
    """The app serving `settings`: `routes()` bound to `Deployment.of(settings, …)`, which raises when a file the
    settings name is not usable."""
    deployment = Deployment.of(settings, clock=clock, audiences=audiences)
    return bind(routes(with_testbed=deployment.testbed is not None), deployment)


async def provide_clients(state: State) -> ClientDirectory:
    deployment: Deployment = state.deployment
    return deployment.clients


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    deployment: Deployment = app.state.deployment
    settings, clock, testbed = deployment.settings, deployment.clock, deployment.testbed
    engine = create_engine(settings.database_url)
    events = EventBus()
    app.state.running = True  # `bind` refuses to swap the deployment under a running app
    try:
        await upgrade(engine)
        await events.start(settings.database_url)
        sessions = create_sessionmaker(engine, events)  # repositories announce revocations on `events`
        async with sessions() as session, session.begin():
            key = settings.secret_key or await get_or_create_key(session, "hmac", lambda: random_token(32), clock.now())
            if retired := await deployment.preregistered.seed(ClientRepository(session), clock.now()):
                log.info("pre-registered clients no longer in the clients file: %s", ", ".join(retired))
        hmac_key = key.encode()
        app.state.runtime = Runtime(settings, clock, hmac_key)
        keys = SigningKeyStore(hmac_key, clock, settings)
        delegations = DelegationService(
            own_transactions(sessions), deployment.audiences, keys, events, clock, settings, hmac_key
        )
        await delegations.prepare()  # the first signing key exists before the first request
        app.state.resources = Resources(engine, sessions, events, delegations)
        # /mcp caches validated tokens and sessions; revocations announced on the bus empty it at once.
        app.state.mcp = McpServer(app.state.runtime, sessions, events, delegations)
        events.add_listener(app.state.mcp.on_event)
        if testbed is not None:
            await testbed.start(sessions, events, delegations)
        yield
    finally:
        if testbed is not None:
            await testbed.stop()
        await events.stop()
        # The pool's connections (SQLite files, PostgreSQL sockets) stay open unless the engine is disposed.
        await engine.dispose()
        app.state.running = False


class _RoutedLitestar(_MsgspecLitestar):
    """The app with its Litestar handler kept (`routed`), for `bind` to put the edge around it again, and whether its
    routes include the testbed's controls."""

    routed: Any
    with_testbed: bool


def routes(*, with_testbed: bool = False) -> Litestar:
    """The Litestar app with every route, dependency and handler (with the testbed's controls or not), and nothing of
    a deployment: unusable until `bind` gives it one. Building it is most of `create_app`'s cost (~47 ms of CPU on
    the 2-core machine, about 80 route handlers registered); it can be bound again, to another deployment with a
    testbed or none alike, once the last one's lifespan has ended (the HTTP tests do so: one per test before)."""
    app = _RoutedLitestar(
        route_handlers=[
            healthz,
            *oauth_routes,
            device_router,
            *mcp_routes,
            *([testbed_routes.testbed_router()] if with_testbed else []),
        ],
        lifespan=[_lifespan],
        dependencies={
            "runtime": Provide(provide_runtime),
            "db": Provide(provide_db_session),
            "events": Provide(provide_events),
            "delegations": Provide(provide_delegations),
            "delegation_tokens": Provide(provide_delegation_tokens),
            "clients": Provide(provide_clients),
        },
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
        # The command line's one log format, and Alembic's start-up steps kept out of it (the banner names the schema).
        logging_config=LoggingConfig(
            formatters={"standard": {"format": LOG_FORMAT}},
            loggers={"alembic": {"level": "WARNING", "propagate": True}},
        ),
        openapi_config=OpenAPIConfig(
            title="Vouchsim",
            version="0.1.0",
            path="/schema",
            components=testbed_routes.openapi_components() if with_testbed else [],
            render_plugins=openapi.render_plugins(limited),  # the edge's answers too (server.edge)
        ),
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
    )
    app.routed = app.asgi_handler
    app.with_testbed = with_testbed
    return app


def bind(app: Litestar, deployment: Deployment) -> Litestar:
    """`app` (from `routes`, with the testbed's controls if `deployment` has a testbed, without them if not) serving
    `deployment`: its state is the deployment's alone, and around the routes go the fast lanes, the edge and the
    testbed's layer made for it."""
    if not isinstance(app, _RoutedLitestar) or app.with_testbed != (deployment.testbed is not None):
        raise TypeError("bind() takes an app from routes() with the testbed's controls if the deployment has a testbed")
    if app.state.get("running"):
        raise RuntimeError("bind() takes an app whose last deployment has stopped")
    app.state = State({"deployment": deployment})
    settings, testbed = deployment.settings, deployment.testbed
    # The edge (server.edge): host guard, CORS, rate limits and the input guard, around everything the app does.
    limits = RateLimits(settings)
    # Inside it, the plain case of /mcp skips Litestar's router for the same handler (server.mcp.routes.fast_lane), and
    # so does a device's decision (server.device.routes.decision_lane).
    lanes = fast_lane(decision_lane(app.routed, partial(_answer_failure, app)))
    app.asgi_handler = cast("Any", stack(cast("Any", lanes), settings, limits))
    if testbed is not None:
        testbed.on_reset(limits.clear)
        testbed.on_reset(deployment.clients.forget_documents)
        testbed_routes.install(app, testbed, partial(cors_headers, settings))  # journal and faults, around all
    return app


def _testbed(settings: Settings, clock: Clock) -> Testbed | None:
    """The testbed controls when the settings turn them on; without a token in the settings, one is made and
    printed (`vouchsim serve` makes and prints it itself, once for every worker)."""
    if not settings.testbed:
        return None
    token = settings.testbed_token
    if not token:
        token = random_token(24)
        print(f"Vouchsim testbed controls on /testbed/; bearer token: {token}", flush=True)
    return Testbed(settings, OffsetClock(clock), token=token)
