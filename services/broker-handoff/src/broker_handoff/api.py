"""HTTP routes. Thin: authenticate, parse, call the use case, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError

from broker_handoff.auth import admin_allowed, bearer
from broker_handoff.domain import OrderRequest
from broker_handoff.errors import BadRequest, Unauthorized
from broker_handoff.orders import BrokerUse
from broker_handoff.revocation import MassRevocation
from broker_handoff.service import HandoffService

router = APIRouter()


def _service(request: Request) -> HandoffService:
    service: HandoffService = request.app.state.service
    return service


ServiceDep = Annotated[HandoffService, Depends(_service)]


async def _user(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The verified identity (JWT `sub`) of the caller."""
    service = _service(request)
    return await service.deps.identity.user_id(bearer(authorization))


UserDep = Annotated[str, Depends(_user)]


async def _admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """Admin callers present a separate bearer token whose SHA-256 is configured (Vault)."""
    service = _service(request)
    token = bearer(authorization)
    expected = await service.deps.vault.read_field("admin", "token_sha256")
    expected = expected or service.settings.admin_token_sha256
    if not admin_allowed(token, expected):
        raise Unauthorized("Admin token required.")
    return "admin"


AdminDep = Annotated[str, Depends(_admin)]


@router.get("/v1/broker/alpaca/connect", status_code=302, response_class=RedirectResponse)
async def connect(
    service: ServiceDep,
    user_id: UserDep,
    consent: bool = False,
    env: str = "paper",
    redirect_uri: str | None = None,
) -> RedirectResponse:
    """Start the OAuth handoff: 302 to Alpaca's consent page (needs consent=true)."""
    url = await service.start_connect(user_id, consent, env, redirect_uri)
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.get("/v1/broker/alpaca/callback")
async def callback(
    service: ServiceDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> JSONResponse:
    """Provider redirect target: consume the state, store the token in Vault, record it."""
    result = await service.complete_callback(state, code, error)
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


@router.get("/v1/broker/alpaca")
async def status(service: ServiceDep, user_id: UserDep) -> dict[str, Any]:
    """The caller's connection status."""
    return await service.status(user_id)


@router.delete("/v1/broker/alpaca")
async def disconnect(service: ServiceDep, user_id: UserDep) -> dict[str, Any]:
    """Disconnect: revoke at Alpaca (where offered), destroy the token in Vault, audit."""
    return await service.disconnect(user_id, user_id, "user")


@router.get("/v1/broker/alpaca/account")
async def account(service: ServiceDep, user_id: UserDep) -> dict[str, Any]:
    """A summary of the connected Alpaca account."""
    return await BrokerUse(service).account(user_id)


@router.post("/v1/broker/alpaca/orders")
async def place_order(
    request: Request,
    service: ServiceDep,
    user_id: UserDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Place an order once per Idempotency-Key; a repeat returns the original (200)."""
    try:
        order = OrderRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
        raise BadRequest(f"Invalid order ({fields}).") from None
    placed, replayed = await BrokerUse(service).place_order(user_id, order, idempotency_key)
    return JSONResponse(
        {"order": placed, "replayed": replayed},
        status_code=200 if replayed else 201,
        headers={"Idempotent-Replayed": "true" if replayed else "false"},
    )


@router.post("/admin/v1/broker/revoke-all")
async def revoke_all(
    request: Request,
    _admin: AdminDep,
    max_items: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Destroy every stored token (resumable; a second run is a no-op); report counts."""
    revocation: MassRevocation = request.app.state.revocation
    return await revocation.run(max_items)
