"""The HTTP edge every service shares: error mapping, `/healthz`, `/readyz`, `/metrics`.

Errors: `install_error_handlers(app)` maps a `ServiceError` to its status, headers and
`ErrorBody`; a request that fails validation to **400** `bad_request` (three of the four
services answered 400 already, and a client cannot tell 422's "well-formed but wrong" from a
malformed request any better than from the message); Starlette's 404/405 to the same body; and
anything else to a 500 `internal` whose body names nothing internal (the log has the trace).

Readiness: one body for every service,
`{"status": "ready" | "degraded" | "not_ready", "checks": {name: {"ok", "reason", "critical"}},
...extra}`. A failing *critical* check makes the replica `not_ready` (503 + `Retry-After`);
a failing non-critical one only `degraded` (200: tier-gate keeps issuing while NATS is down).
`extra` carries a service's own blocks (the hub's `role` and `alpaca`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from raxx_service_kit.errors import ErrorBody, ServiceError
from raxx_service_kit.supervisor import Supervisor

if TYPE_CHECKING:
    from faststream.nats import NatsBroker
    from starlette.types import Lifespan

log = logging.getLogger(__name__)

_HTTP_CODES = {
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "method not allowed"),
}


def error_response(exc: ServiceError) -> JSONResponse:
    """The response for a typed error (also usable outside exception handlers)."""
    return JSONResponse(exc.body(), exc.status, headers=exc.headers() or None)


def install_error_handlers(
    app: FastAPI, *, on_error: Callable[[ServiceError], None] | None = None
) -> None:
    """Map every error to `ErrorBody` once; details go to the log only.

    `on_error(exc)` is called for each typed error answered (e.g. a per-status counter)."""

    async def typed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)  # noqa: S101 - registered for ServiceError only
        if on_error is not None:
            on_error(exc)
        if exc.log_detail or exc.status >= 500:
            level = logging.WARNING if exc.status >= 500 else logging.INFO
            detail = exc.log_detail or exc.message
            log.log(level, "%s %s -> %s: %s", request.method, request.url.path, exc.code, detail)
        return error_response(exc)

    async def invalid(_: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors]
        message = "; ".join(parts)[:300] or "invalid request"
        return JSONResponse(ErrorBody(error="bad_request", message=message).model_dump(), 400)

    async def http(_: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        code, message = _HTTP_CODES.get(status, (f"http_{status}", "request refused"))
        headers = getattr(exc, "headers", None)
        return JSONResponse(ErrorBody(error=code, message=message).model_dump(), status, headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(ErrorBody(error="internal", message="internal error").model_dump(), 500)

    app.add_exception_handler(ServiceError, typed)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)


# -- readiness ---------------------------------------------------------------------------------


class Check(BaseModel):
    """One readiness check: `ok`, and why not (`reason`, public text, no secrets)."""

    ok: bool
    reason: str | None = None
    critical: bool = True
    """A failing critical check makes the replica not ready; otherwise it is only degraded."""


class Readiness(BaseModel):
    """The one `/readyz` body."""

    status: Literal["ready", "degraded", "not_ready"]
    checks: dict[str, Check] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict, exclude=True)
    """A service's own blocks, merged at the top level of the body (e.g. the hub's `alpaca`)."""

    @classmethod
    def of(cls, checks: Mapping[str, Check], **extra: Any) -> Readiness:
        """Readiness from checks: `not_ready` if a critical check fails, `degraded` if another."""
        if any(not c.ok and c.critical for c in checks.values()):
            status: Literal["ready", "degraded", "not_ready"] = "not_ready"
        elif any(not c.ok for c in checks.values()):
            status = "degraded"
        else:
            status = "ready"
        return cls(status=status, checks=dict(checks), extra=extra)

    @property
    def ready(self) -> bool:
        """Whether `/readyz` answers 200."""
        return self.status != "not_ready"

    def body(self) -> dict[str, Any]:
        """The JSON body: the extra blocks at the top level (never overriding status/checks)."""
        return {**self.extra, **self.model_dump(mode="json")}


ReadinessSource = Callable[[], Readiness | Awaitable[Readiness]]


def supervisor_checks(supervisor: Supervisor, *, critical: bool = True) -> dict[str, Check]:
    """One check per supervised task (`task:<name>`): failing once it keeps crashing."""
    problems = supervisor.problems()
    return {
        f"task:{h.name}": Check(
            ok=h.name not in problems, reason=problems.get(h.name), critical=critical
        )
        for h in supervisor.health()
    }


async def ping_checks(
    pings: Mapping[str, Callable[[], Awaitable[object]]],
    *,
    non_critical: Iterable[str] = (),
    timeout: float = 1.0,  # noqa: ASYNC109 - a per-ping bound, not the caller's deadline
) -> dict[str, Check]:
    """Run the pings concurrently, each bounded by `timeout`; raising, timing out or returning
    False fails its check (a readiness probe reports, never raises)."""
    optional = set(non_critical)

    async def one(ping: Callable[[], Awaitable[object]]) -> tuple[bool, str | None]:
        try:
            async with asyncio.timeout(timeout):
                result = await ping()
        except TimeoutError:
            return False, f"no answer within {timeout:g} s"
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"[:200]
        return (True, None) if result is not False else (False, "not answering")

    results = await asyncio.gather(*(one(p) for p in pings.values()))
    return {
        name: Check(ok=ok, reason=reason, critical=name not in optional)
        for name, (ok, reason) in zip(pings, results, strict=True)
    }


def health_router(
    readiness: ReadinessSource,
    registry: CollectorRegistry,
    *,
    liveness: Callable[[], Mapping[str, str]] | None = None,
    retry_after: int = 2,
) -> APIRouter:
    """`/healthz` (503 `{"status": "wedged", "down": ...}` when `liveness()` names a
    problem), `/readyz` (the `Readiness` body; 503 + `Retry-After` when not ready) and
    `/metrics` (Prometheus text of `registry`)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        down = dict(liveness()) if liveness is not None else {}
        if down:
            return JSONResponse({"status": "wedged", "down": down}, 503)
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        result = readiness()
        state = await result if inspect.isawaitable(result) else result
        assert isinstance(state, Readiness)  # noqa: S101 - the source's declared type
        if state.ready:
            return JSONResponse(state.body())
        return JSONResponse(state.body(), 503, headers={"Retry-After": str(retry_after)})

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def service_app(
    title: str,
    *,
    lifespan: Lifespan[FastAPI],
    readiness: ReadinessSource,
    registry: CollectorRegistry,
    liveness: Callable[[], Mapping[str, str]] | None = None,
    routers: Sequence[APIRouter] = (),
    broker: NatsBroker | None = None,
    on_error: Callable[[ServiceError], None] | None = None,
    retry_after: int = 2,
    version: str = "0.1.0",
) -> FastAPI:
    """The one app wiring every service shares: a FastAPI app on `lifespan` with the kit's error
    mapping, the service's `routers`, `/healthz` `/readyz` `/metrics` (`health_router`) and,
    with a faststream `broker`, its AsyncAPI document (`/asyncapi.json`, `/docs/asyncapi`).

    `readiness`/`liveness` may read `app.state` through a closure over the returned app (they
    are only called once it serves)."""
    app = FastAPI(title=title, version=version, lifespan=lifespan)
    install_error_handlers(app, on_error=on_error)
    for router in routers:
        app.include_router(router)
    app.include_router(
        health_router(readiness, registry, liveness=liveness, retry_after=retry_after)
    )
    if broker is not None:
        from raxx_service_kit.messaging import asyncapi_router  # faststream only where used

        app.include_router(asyncapi_router(broker, title=title, version=version))
    return app
