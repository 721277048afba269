"""Errors map to one body; /healthz, /readyz and /metrics answer one shape (ASGI, no server)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel
from raxx_service_kit.errors import (
    ConfigError,
    PermanentError,
    RetryableError,
    ServiceError,
    TypedError,
    UnauthorizedError,
)
from raxx_service_kit.http import (
    Check,
    Readiness,
    health_router,
    install_error_handlers,
    ping_checks,
)


class Item(BaseModel):
    n: int


def make_app(readiness: Readiness, registry: CollectorRegistry) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(health_router(lambda: readiness, registry))

    @app.get("/svc/{kind}")
    async def fail(kind: str) -> dict[str, str]:
        if kind == "retry":
            raise RetryableError("store down", 2.5, code="database_unavailable")
        if kind == "perm":
            raise PermanentError("bad symbol", details={"field": "symbol"})
        if kind == "auth":
            raise UnauthorizedError("expired")
        if kind == "custom":
            raise ServiceError("in_progress", 409, "busy", log_detail="secret host 10.0.0.1")
        if kind == "config":
            raise ConfigError("no key")
        raise RuntimeError("password=hunter2 at db.internal")

    @app.post("/items")
    async def items(item: Item) -> dict[str, int]:
        return {"n": item.n}

    return app


async def call(app: FastAPI, method: str, path: str, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.request(method, path, **kw)  # type: ignore[arg-type]


@pytest.fixture
def app() -> FastAPI:
    return make_app(Readiness.of({"db": Check(ok=True)}), CollectorRegistry())


async def test_typed_errors_map_to_status_body_and_headers(app: FastAPI) -> None:
    r = await call(app, "GET", "/svc/retry")
    assert (r.status_code, r.json()) == (
        503,
        {"error": "database_unavailable", "message": "store down"},
    )
    assert r.headers["Retry-After"] == "3"
    r = await call(app, "GET", "/svc/perm")
    assert (r.status_code, r.json()) == (
        400,
        {"error": "bad_request", "message": "bad symbol", "field": "symbol"},
    )
    r = await call(app, "GET", "/svc/auth")
    assert r.status_code == 401
    assert r.json()["reason"] == "expired"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    r = await call(app, "GET", "/svc/custom")
    assert (r.status_code, r.json()) == (409, {"error": "in_progress", "message": "busy"})
    r = await call(app, "GET", "/svc/config")
    assert (r.status_code, r.json()["error"]) == (500, "config")


async def test_unhandled_error_body_names_nothing_internal(app: FastAPI) -> None:
    r = await call(app, "GET", "/svc/boom")
    assert (r.status_code, r.json()) == (500, {"error": "internal", "message": "internal error"})
    assert "hunter2" not in r.text


async def test_validation_is_400_bad_request_and_unknown_route_404(app: FastAPI) -> None:
    r = await call(app, "POST", "/items", json={"n": "x"})
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"
    assert "n" in r.json()["message"]
    r = await call(app, "GET", "/nope")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await call(app, "DELETE", "/items")
    assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")


async def test_readyz_shapes_ready_degraded_not_ready() -> None:
    registry = CollectorRegistry()
    ok = make_app(Readiness.of({"db": Check(ok=True)}, role="leader"), registry)
    r = await call(ok, "GET", "/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "checks": {"db": {"ok": True, "reason": None, "critical": True}},
        "role": "leader",
    }
    degraded = Readiness.of(
        {"db": Check(ok=True), "nats": Check(ok=False, reason="down", critical=False)}
    )
    r = await call(make_app(degraded, registry), "GET", "/readyz")
    assert (r.status_code, r.json()["status"]) == (200, "degraded")
    down = Readiness.of({"db": Check(ok=False, reason="timeout")})
    r = await call(make_app(down, registry), "GET", "/readyz")
    assert (r.status_code, r.json()["status"]) == (503, "not_ready")
    assert r.headers["Retry-After"] == "2"
    assert r.json()["checks"]["db"]["reason"] == "timeout"


async def test_healthz_and_metrics() -> None:
    registry = CollectorRegistry()
    Counter("kit_test_things", "things", registry=registry).inc()
    app = FastAPI()
    wedged: dict[str, str] = {}
    app.include_router(health_router(lambda: Readiness.of({}), registry, liveness=lambda: wedged))
    r = await call(app, "GET", "/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    wedged["heartbeat"] = "stale"
    r = await call(app, "GET", "/healthz")
    assert (r.status_code, r.json()) == (503, {"status": "wedged", "down": {"heartbeat": "stale"}})
    r = await call(app, "GET", "/metrics")
    assert "kit_test_things_total 1.0" in r.text


async def test_ping_checks_report_instead_of_raising() -> None:
    async def good() -> bool:
        return True

    async def false() -> bool:
        return False

    async def boom() -> None:
        raise OSError("refused")

    async def frozen() -> None:
        await asyncio.Event().wait()

    checks = await ping_checks(
        {"a": good, "b": false, "c": boom, "d": frozen}, non_critical=["c"], timeout=0.05
    )
    assert checks["d"].reason == "no answer within 0.05 s"
    assert checks["a"].ok
    assert not checks["b"].ok
    assert not checks["c"].ok
    assert checks["c"].reason == "OSError: refused"
    assert not checks["c"].critical
    assert Readiness.of(checks).status == "not_ready"


def test_a_service_error_class_takes_its_message_first() -> None:
    class NotEligible(TypedError):
        code = "not_eligible"
        status = 403
        default_message = "not for your tier"

    assert NotEligible().body() == {"error": "not_eligible", "message": "not for your tier"}
    exc = NotEligible("live needs the pro tier", details={"tier": "free"})
    assert (exc.status, exc.body()["message"], exc.body()["tier"]) == (
        403,
        "live needs the pro tier",
        "free",
    )
    assert isinstance(exc, ServiceError)
    assert ConfigError("no key").exit_code == 78


def test_extra_readiness_blocks_never_override_the_shape() -> None:
    body = Readiness.of({"db": Check(ok=False)}, status="fine", role="leader").body()
    assert (body["status"], body["role"]) == ("not_ready", "leader")


async def test_on_error_sees_every_typed_error_answered() -> None:
    seen: list[tuple[str, int]] = []
    app = FastAPI()
    install_error_handlers(app, on_error=lambda exc: seen.append((exc.code, exc.status)))

    @app.get("/x")
    async def x() -> None:
        raise RetryableError("later", 3.0, code="busy")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/x")
    assert (r.status_code, r.headers["Retry-After"]) == (503, "3")
    assert seen == [("busy", 503)]


async def test_service_app_wires_errors_routes_health_and_asyncapi() -> None:
    import contextlib
    from collections.abc import AsyncIterator

    from fastapi import APIRouter
    from raxx_service_kit.http import service_app
    from raxx_service_kit.messaging import make_broker
    from raxx_service_kit.settings import ServiceSettings

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    routes = APIRouter()

    @routes.get("/v1/thing")
    async def thing() -> dict[str, str]:
        raise PermanentError("no such thing", code="unknown_thing")

    seen: list[int] = []
    registry = CollectorRegistry()
    app = service_app(
        "demo", lifespan=lifespan, readiness=lambda: Readiness.of({"db": Check(ok=False)}),
        registry=registry, routers=[routes], on_error=lambda exc: seen.append(exc.status),
        retry_after=7, broker=make_broker(ServiceSettings(), "demo"),
    )  # fmt: skip
    r = await call(app, "GET", "/v1/thing")
    assert (r.status_code, r.json()["error"], seen) == (400, "unknown_thing", [400])
    r = await call(app, "GET", "/readyz")
    assert (r.status_code, r.headers["Retry-After"]) == (503, "7")
    assert (await call(app, "GET", "/healthz")).status_code == 200
    assert (await call(app, "GET", "/metrics")).status_code == 200
    assert (await call(app, "GET", "/asyncapi.json")).json()["info"]["title"] == "demo"
    bare = service_app("bare", lifespan=lifespan, readiness=Readiness.of, registry=registry)
    assert (await call(bare, "GET", "/asyncapi.json")).status_code == 404
