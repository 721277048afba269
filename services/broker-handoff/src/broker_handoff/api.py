"""HTTP routes. Thin: authenticate, parse, call the use case, shape the answer."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from broker_handoff import domain, pages
from broker_handoff.auth import admin_allowed, bearer, user_id
from broker_handoff.domain import OrderRequest
from broker_handoff.errors import BadRequest, CrossSiteRequest, ServiceError, Unauthorized
from broker_handoff.orders import BrokerUse
from broker_handoff.revocation import MassRevocation
from broker_handoff.service import COOKIE_MARGIN_SECONDS, FlowStart, HandoffService

log = logging.getLogger(__name__)

router = APIRouter()


def _service(request: Request) -> HandoffService:
    service: HandoffService = request.app.state.service
    return service


ServiceDep = Annotated[HandoffService, Depends(_service)]


async def _user(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The verified identity (JWT `sub`) of the caller."""
    service = _service(request)
    return await user_id(service.deps.identity, bearer(authorization))


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
    """API clients: 302 to Alpaca's consent page, setting the cookie that binds the flow."""
    flow = await service.start_connect(user_id, consent, env, redirect_uri)
    return _to_provider(service, flow, status=302)


@router.post("/v1/broker/alpaca/connect-link", status_code=201)
async def connect_link(service: ServiceDep, user_id: UserDep, env: str = "paper") -> JSONResponse:
    """Browsers: a one-time, short-lived URL of the consent page (open it in the browser)."""
    url, expires = await service.create_link(user_id, env)
    body = {"url": url, "expires_at": expires.isoformat(), "env": env}
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


@router.get(pages.CONSENT_PATH, response_class=HTMLResponse)
async def consent_page(service: ServiceDep, link: str = "") -> Response:
    """The explicit consent step (the link is used up only by an answer, never by a view)."""
    try:
        user_id, env = await service.peek_link(link)
    except ServiceError as exc:
        return _page(service, exc.code, exc.status)
    return _html(service, pages.consent_page(link, user_id, env), 200)


@router.post(pages.CONSENT_PATH)
async def consent_answer(request: Request, service: ServiceDep) -> Response:
    """The person's answer: continue to Alpaca (cookie set) or cancel."""
    try:
        _same_origin(request, service)
        form = await _form(request)
        flow = await service.confirm_consent(
            form.get("link", ""), form.get("decision") == "connect"
        )
    except ServiceError as exc:
        return _page(service, exc.code, exc.status)
    if flow is None:
        return _page(service, "cancelled", 200)
    return _to_provider(service, flow, status=303)


@router.get(pages.CALLBACK_PATH, response_class=HTMLResponse)
async def callback(
    request: Request,
    service: ServiceDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    """Provider redirect target: completes only in the browser holding the flow's cookie."""
    try:
        outcome = await service.complete_callback(state, code, error, request.cookies)
    except ServiceError as exc:  # the database is away before anything was decided
        return _page(service, exc.code, exc.status)
    except Exception as exc:
        log.error("callback failed unexpectedly: %s", type(exc).__name__)
        return _page(service, "internal", 500)
    cookie = domain.cookie_name(state) if state else None
    if outcome.error is None:
        response = _page(service, "connected", 200, env=outcome.env)
    else:
        err = outcome.error
        response = _page(service, err.code, err.status, retry_state=outcome.retry_state)
    if cookie and outcome.retry_state is None:
        _forget_cookie(service, response, cookie)
    elif cookie and (value := request.cookies.get(cookie)):
        # The failed state is kept as a retry ticket for a fresh lifetime: so is its cookie.
        ttl = service.settings.oauth_state_ttl_seconds + COOKIE_MARGIN_SECONDS
        _set_cookie(service, response, cookie, value, ttl)
    return response


@router.post(pages.RETRY_PATH)
async def retry(request: Request, service: ServiceDep) -> Response:
    """Start again after a failed callback, in the same browser (its cookie is checked)."""
    state = None
    try:
        _same_origin(request, service)
        state = (await _form(request)).get("state")
        flow = await service.retry_flow(state, request.cookies)
    except ServiceError as exc:
        return _page(service, exc.code, exc.status)
    response = _to_provider(service, flow, status=303)
    if state:
        _forget_cookie(service, response, domain.cookie_name(state))
    return response


# -- browser plumbing -------------------------------------------------------------------------
COOKIE_PATH = "/v1/broker/alpaca/"
MAX_FORM_BYTES = 4096


def _to_provider(service: HandoffService, flow: FlowStart, status: int) -> RedirectResponse:
    response = RedirectResponse(flow.authorize_url, status_code=status)
    response.headers.update(pages.security_headers(service.provider_origin()))
    _set_cookie(service, response, flow.cookie_name, flow.cookie_value, flow.max_age)
    return response


def _set_cookie(
    service: HandoffService, response: Response, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=service.settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def _forget_cookie(service: HandoffService, response: Response, name: str) -> None:
    response.delete_cookie(
        name,
        path=COOKIE_PATH,
        secure=service.settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def _html(service: HandoffService, body: str, status: int) -> HTMLResponse:
    headers = pages.security_headers(service.provider_origin())
    if status == 503:
        headers["Retry-After"] = str(service.settings.retry_after_seconds)
    return HTMLResponse(body, status_code=status, headers=headers)


def _page(
    service: HandoffService,
    outcome: str,
    status: int,
    env: str | None = None,
    retry_state: str | None = None,
) -> Response:
    """The end of a browser step: our own page, or a 303 to the configured app URL."""
    app_url = service.settings.app_return_url
    if app_url:
        result = "connected" if outcome == "connected" else "failed"
        params = {"broker": "alpaca", "status": result}
        if outcome != "connected":
            params["reason"] = outcome
        sep = "&" if "?" in app_url else "?"
        response = RedirectResponse(f"{app_url}{sep}{urlencode(params)}", status_code=303)
        response.headers.update(pages.security_headers())
        return response
    return _html(service, pages.outcome_page(outcome, env, retry_state), status)


def _same_origin(request: Request, service: HandoffService) -> None:
    """Refuse a form post that a browser did not send from one of our own pages."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if (site is not None and site != "same-origin") or (
        origin is not None and origin != service.public_origin()
    ):
        raise CrossSiteRequest("This request did not come from a Raxx page.")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest("The form is too large.")
    try:
        fields = parse_qs(body.decode(), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The form could not be read.") from None
    return {k: v[0] for k, v in fields.items() if v}


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
