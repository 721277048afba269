"""HTTP routes: token issuance, JWKS, dev identity. Errors are mapped once by the service kit
(`install_error_handlers`); `/healthz` `/readyz` `/metrics` are the kit's `health_router`."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from raxx_contracts import TierChanged

from tier_gate import identity, keys
from tier_gate.deps import Runtime
from tier_gate.errors import BadRequestError, NotFoundError, ServiceError, UnauthorizedError

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
        raise UnauthorizedError("missing", "Authorization: Bearer <identity JWT> is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("missing", "Authorization must be 'Bearer <identity JWT>'")
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
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise UnauthorizedError("missing_claim", "identity token has no usable 'sub'")
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
    except UnauthorizedError as exc:
        rt.metrics.failures.labels(exc.reason).inc()
        raise
    except ServiceError as exc:
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
            user_id=req.user, tier=req.tier, version=applied.version, timestamp=rt.gate.clock.now()
        )
        await rt.bus.publish_tier(event)
    token = identity.dev_identity_token(
        rt.dev_identity_key,
        user_id=req.user,
        tier=req.tier,
        issuer=rt.settings.identity_issuer,
        audience=rt.settings.identity_audience,
    )
    return {"user": req.user, "tier": req.tier, "token": token}
