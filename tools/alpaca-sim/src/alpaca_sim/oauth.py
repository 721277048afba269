"""Alpaca Connect OAuth: an authorize endpoint that approves at once, codes, tokens, revoke."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from alpaca_sim.keys import SIM_KEY
from alpaca_sim.settings import Settings

if TYPE_CHECKING:
    from alpaca_sim.state import SimState


@dataclass
class Grant:
    """An authorization code waiting to be exchanged."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    env: str
    account_id: str
    expires_at: float
    challenge: str | None
    challenge_method: str
    used: bool = False


@dataclass
class Token:
    """An issued access token; it does not expire, it can be revoked."""

    access_token: str
    client_id: str
    scope: str
    env: str
    account_id: str


class OAuthStore:
    """Codes, tokens and the simulated users behind them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.grants: dict[str, Grant] = {}
        self.tokens: dict[str, Token] = {}
        self.users: dict[str, str] = {}  # sim user name -> account id

    def token(self, access_token: str) -> Token | None:
        """The live token with this value, if any."""
        return self.tokens.get(access_token)

    def account_for_user(self, user: str | None) -> str:
        """A named user keeps its account across grants; anonymous approvals get a new one."""
        if user is None:
            return str(uuid.uuid4())
        return self.users.setdefault(user, str(uuid.uuid4()))

    def client_ok(self, client_id: str | None, client_secret: str | None) -> bool:
        """Whether these are the registered client's credentials."""
        return (
            client_id == self.settings.oauth_client_id
            and client_secret is not None
            and hmac.compare_digest(
                client_secret, self.settings.oauth_client_secret.get_secret_value()
            )
        )


def _error(status: int, error: str, message: str) -> web.Response:
    code = {400: 40010000, 401: 40110000, 403: 40310000}.get(status, status * 100000)
    return web.json_response(
        {"code": code, "message": message, "error": error, "error_description": message},
        status=status,
    )


async def authorize(request: web.Request) -> web.StreamResponse:
    """`GET /oauth/authorize`: approve for a simulated account and redirect with code and state."""
    sim: SimState = request.app[SIM_KEY]
    store = sim.oauth
    q = request.query
    client_id, redirect_uri = q.get("client_id"), q.get("redirect_uri")
    if client_id != sim.settings.oauth_client_id:
        return _error(400, "invalid_client", "unknown client_id")
    if redirect_uri is None or redirect_uri not in sim.settings.oauth_redirect_uris:
        return _error(400, "invalid_request", "redirect_uri is not registered for this client")
    if q.get("response_type") != "code":
        return _redirect(
            redirect_uri, {"error": "unsupported_response_type", "state": q.get("state")}
        )
    method = q.get("code_challenge_method", "plain")
    challenge = q.get("code_challenge")
    if challenge is not None and method not in ("S256", "plain"):
        return _redirect(redirect_uri, {"error": "invalid_request", "state": q.get("state")})
    env = q.get("env", "paper")
    grant = Grant(
        code=str(uuid.uuid4()),
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=q.get("scope", ""),
        env=env,
        account_id=store.account_for_user(q.get("sim_user")),
        expires_at=time.time() + sim.settings.oauth_code_ttl,
        challenge=challenge,
        challenge_method=method,
    )
    store.grants[grant.code] = grant
    return _redirect(redirect_uri, {"code": grant.code, "state": q.get("state")})


def _redirect(uri: str, params: dict[str, str | None]) -> web.Response:
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return web.Response(status=302, headers={"Location": urlunsplit(parts._replace(query=query))})


def _pkce_ok(grant: Grant, verifier: str | None) -> bool:
    if grant.challenge is None:
        return True
    if verifier is None:
        return False
    if grant.challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        expected = verifier
    return hmac.compare_digest(expected, grant.challenge)


def _client_credentials(
    request: web.Request, form: dict[str, str]
) -> tuple[str | None, str | None]:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            return cid, secret
        except ValueError:
            return None, None
    return form.get("client_id"), form.get("client_secret")


async def token(request: web.Request) -> web.Response:
    """`POST /oauth/token` (form): exchange a code once for a non-expiring bearer token."""
    sim: SimState = request.app[SIM_KEY]
    store = sim.oauth
    form = {k: str(v) for k, v in (await request.post()).items()}
    client_id, secret = _client_credentials(request, form)
    if not store.client_ok(client_id, secret):
        return _error(401, "invalid_client", "client authentication failed")
    if form.get("grant_type") != "authorization_code":
        return _error(400, "unsupported_grant_type", "grant_type must be authorization_code")
    grant = store.grants.get(form.get("code", ""))
    if grant is None or grant.used or grant.expires_at < time.time():
        return _error(400, "invalid_grant", "authorization code is invalid, used or expired")
    if grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
        return _error(400, "invalid_grant", "redirect_uri or client_id does not match the code")
    if not _pkce_ok(grant, form.get("code_verifier")):
        return _error(400, "invalid_grant", "code_verifier does not match code_challenge")
    grant.used = True
    tok = Token(str(uuid.uuid4()), grant.client_id, grant.scope, grant.env, grant.account_id)
    store.tokens[tok.access_token] = tok
    sim.broker.account(tok.account_id)  # open the simulated account now
    return web.json_response(
        {"access_token": tok.access_token, "token_type": "bearer", "scope": tok.scope}
    )


async def revoke(request: web.Request) -> web.Response:
    """`POST /oauth/revoke` (form `token`, client credentials): the token stops working."""
    sim: SimState = request.app[SIM_KEY]
    form = {k: str(v) for k, v in (await request.post()).items()}
    client_id, secret = _client_credentials(request, form)
    if not sim.oauth.client_ok(client_id, secret):
        return _error(401, "invalid_client", "client authentication failed")
    sim.oauth.tokens.pop(form.get("token", ""), None)  # RFC 7009: unknown tokens are fine
    return web.json_response({})
