"""HTTP routes: token issuance, JWKS, dev identity, health. Errors mapped here, once."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from raxx_contracts import TierChanged, encode, subjects, utc_now
from starlette.exceptions import HTTPException as StarletteHTTPException

from tier_gate import identity, keys
from tier_gate.deps import Runtime
from tier_gate.errors import (
    AuthError,
    BadRequestError,
    NotFoundError,
    TierGateError,
    UnavailableError,
)

log = logging.getLogger(__name__)
router = APIRouter()


class TokenRequest(BaseModel):
    """Optional body of `POST /v1/tokens`: the client's own NATS user public key."""

    public_key: str | None = Field(default=None, description="NATS user public key (U...)")


class DevIdentityRequest(BaseModel):
    """Body of `POST /dev/identity` (dev only)."""

    user: str = Field(min_length=1, max_length=200)
    tier: str


async def runtime(request: Request) -> Runtime:
    """The app's runtime (set up by the lifespan); async so FastAPI needs no thread hop."""
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing", "Authorization: Bearer <identity JWT> is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing", "Authorization must be 'Bearer <identity JWT>'")
    return token.strip()


@router.post("/v1/tokens")
async def issue_token(
    rt: RuntimeDep,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Verify the identity JWT and return a NATS credential + HTTP token for the user's tier."""
    started = time.perf_counter()
    try:
        claims = await rt.verifier.verify(_bearer(authorization))
        body = await request.body()
        public_key = None
        if body.strip():
            try:
                public_key = TokenRequest.model_validate_json(body).public_key
            except ValueError as exc:
                raise BadRequestError(
                    'body must be a JSON object {"public_key": "U..."} or empty'
                ) from exc
        response = await rt.gate.issue(claims["sub"], public_key)
    except AuthError as exc:
        rt.metrics.failures.labels(exc.reason).inc()
        raise
    except TierGateError as exc:
        rt.metrics.failures.labels(exc.code).inc()
        raise
    except Exception:
        rt.metrics.failures.labels("internal").inc()
        raise
    rt.metrics.latency.observe(time.perf_counter() - started)
    # Pre-encoded with orjson: skips FastAPI's jsonable_encoder walk (measured hot spot).
    return Response(orjson.dumps(response), media_type="application/json")


@router.get("/.well-known/jwks.json")
async def jwks(rt: RuntimeDep) -> dict[str, Any]:
    """Public key(s) verifying tier-gate's HTTP tokens (aud raxx-md-http)."""
    return rt.http_jwks


async def dev_listener(rt: RuntimeDep, request: Request) -> Runtime:
    """Dev routes exist only with TG_ENV=dev, and only on the dev listener when one is set.

    The port is the one the connection reached on this host (the socket's own address, as the
    server reports it), never anything the client sends, such as a Host header.
    """
    if rt.dev_identity_key is None:
        raise NotFoundError("dev identity exists only with TG_ENV=dev")
    dev_port = rt.settings.dev_http_port
    local = request.scope.get("server")
    if dev_port is not None and (not local or local[1] != dev_port):
        raise NotFoundError("not found")
    return rt


DevRuntimeDep = Annotated[Runtime, Depends(dev_listener)]


@router.get("/dev/identity/jwks.json")
async def dev_jwks(rt: DevRuntimeDep) -> dict[str, Any]:
    """Dev only: public JWKS of the dev identity issuer."""
    assert rt.dev_identity_key is not None  # noqa: S101 - dev_listener checked it
    return keys.public_jwks(rt.dev_identity_key)


@router.post("/dev/identity")
async def dev_identity(rt: DevRuntimeDep, req: DevIdentityRequest) -> dict[str, Any]:
    """Dev only: record `tier` for `user` as billing would, return an identity JWT."""
    assert rt.dev_identity_key is not None  # noqa: S101 - dev_listener checked it
    if req.tier not in rt.gate.policy.tiers:
        raise BadRequestError(f"unknown tier {req.tier!r}; tiers: {list(rt.gate.policy.tiers)}")
    applied = await rt.gate.apply_tier(req.user, req.tier, None)
    if applied.applied:
        # As billing would: every service keeping a tier projection (broker-handoff) hears it.
        event = TierChanged(
            user_id=req.user, tier=req.tier, version=applied.version, timestamp=utc_now()
        )
        await rt.nc.jetstream().publish(subjects.BILLING_TIER_CHANGED, encode(event))
    token = identity.dev_identity_token(
        rt.dev_identity_key,
        user_id=req.user,
        tier=req.tier,
        issuer=rt.settings.identity_issuer,
        audience=rt.settings.identity_audience,
    )
    return {"user": req.user, "tier": req.tier, "token": token}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Process alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(rt: RuntimeDep) -> Response:
    """200 while this replica can issue credentials; 503 only for what stops issuing.

    Answers from cached background probes (never waits on a dependency). `degraded` lists
    what is wrong but does not stop issuance (NATS, OpenBao), each with its real reason.
    """
    down, degraded = rt.state()
    if down:
        return JSONResponse(
            {
                "status": "unavailable",
                "error": "not_ready",
                "message": "cannot issue credentials: " + ", ".join(sorted(down)),
                "down": down,
                "degraded": degraded,
            },
            503,
            headers={"Retry-After": "2"},
        )
    if degraded:
        return JSONResponse({"status": "degraded", "degraded": degraded})
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
async def metrics(rt: RuntimeDep) -> Response:
    """Prometheus text from this app's registry."""
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def install_error_handlers(app: FastAPI) -> None:
    """Map errors to `{"error": code, "message": safe text}`; details go to the log only."""

    async def _typed(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, TierGateError):
            raise exc
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc)
        body: dict[str, Any] = {"error": exc.code, "message": exc.public_message}
        if isinstance(exc, AuthError):
            body["reason"] = exc.reason
        headers: dict[str, str] = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, UnavailableError):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return JSONResponse(body, exc.status, headers=headers or None)

    async def _invalid(_: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors]
        message = "; ".join(parts)[:300] or "invalid request"
        return JSONResponse({"error": "bad_request", "message": message}, 400)

    async def _http(_: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(status, f"http_{status}")
        message = {404: "no such route", 405: "method not allowed"}.get(status, "request refused")
        return JSONResponse({"error": code, "message": message}, status)

    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse({"error": "internal", "message": "internal error"}, 500)

    app.add_exception_handler(TierGateError, _typed)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
