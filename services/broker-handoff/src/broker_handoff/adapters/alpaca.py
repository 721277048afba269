"""Alpaca: OAuth (Authlib's httpx-based client) and the trading API (alpaca-py, in a thread).

Every vendor exception becomes a typed error here, raised `from None`: vendor exceptions hold
the request (and so the bearer header), which must never reach a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import dataclass
from typing import Any

# Imported first: it installs an "always" filter that must not override the one below.
import authlib.deprecate  # noqa: F401
import httpx
import requests

with warnings.catch_warnings():
    # Authlib 1.9 prefers the `httpx2` fork and warns when it falls back to httpx; httpx is the
    # client this workspace standardises on, so the fallback is deliberate.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from broker_handoff.domain import AccessToken, BrokerEnv
from broker_handoff.errors import NotConnected, ProviderRejected, ProviderUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedToken:
    """What the token endpoint returned (Alpaca: no expiry, no refresh token)."""

    token: AccessToken
    scope: str


class AlpacaOAuth:
    """Authorize URL, code exchange and revocation against Alpaca's OAuth endpoints."""

    def __init__(
        self,
        authorize_base: str,
        token_base: str,
        client_id: str,
        scope: str,
        timeout: float,
    ) -> None:
        self._authorize_url = authorize_base.rstrip("/") + "/oauth/authorize"
        self._token_url = token_base.rstrip("/") + "/oauth/token"
        self._revoke_url = token_base.rstrip("/") + "/oauth/revoke"
        self._client_id = client_id
        self._scope = scope
        self._timeout = timeout

    def _client(self, redirect_uri: str | None, client_secret: str | None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self._client_id,
            client_secret=client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name)
            revocation_endpoint_auth_method="client_secret_post",
            redirect_uri=redirect_uri,
            scope=self._scope,
            code_challenge_method="S256",
            timeout=self._timeout,
            follow_redirects=False,
        )

    def authorize_url(
        self, redirect_uri: str, state: str, code_verifier: str | None, env: BrokerEnv
    ) -> str:
        """The provider's consent page URL (PKCE S256 when a verifier is given)."""
        client = self._client(redirect_uri, None)
        url, _ = client.create_authorization_url(
            self._authorize_url, state=state, code_verifier=code_verifier, env=env
        )
        return str(url)

    async def exchange(
        self, code: str, redirect_uri: str, code_verifier: str | None, client_secret: str
    ) -> IssuedToken:
        """Exchange an authorization code for an access token."""
        extra: dict[str, str] = {"code_verifier": code_verifier} if code_verifier else {}
        try:
            async with self._client(redirect_uri, client_secret) as client:
                token = await client.fetch_token(
                    self._token_url,
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=redirect_uri,
                    **extra,
                )
        except OAuthError as exc:
            error = str(getattr(exc, "error", "") or "rejected")[:80]
            log.info("code exchange refused by provider: %s", error)
            raise ProviderRejected(
                f"Alpaca refused the authorization ({error}). "
                "Start again at /v1/broker/alpaca/connect."
            ) from None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("code exchange failed: %s", type(exc).__name__)
            raise ProviderUnavailable(
                "Alpaca did not complete the authorization. "
                "Start again at /v1/broker/alpaca/connect."
            ) from None
        access = token.get("access_token")
        if not access:
            raise ProviderUnavailable("Alpaca returned no access token. Start again.")
        return IssuedToken(AccessToken(str(access)), str(token.get("scope") or self._scope))

    async def revoke(self, token: AccessToken, client_secret: str | None) -> str:
        """Revoke at the provider: `revoked`, `unsupported` (no endpoint) or `failed`."""
        try:
            async with self._client(None, client_secret) as client:
                resp = await client.revoke_token(
                    self._revoke_url,
                    token=token.reveal(),
                    token_type_hint="access_token",  # noqa: S106 (a hint, no secret)
                )
        except (httpx.HTTPError, OAuthError) as exc:
            log.warning("token revocation failed: %s", type(exc).__name__)
            return "failed"
        if resp.status_code in (404, 405, 501):
            return "unsupported"
        return "revoked" if resp.is_success else "failed"


def _side(value: str) -> OrderSide:
    return OrderSide.BUY if value == "buy" else OrderSide.SELL


class AlpacaTrading:
    """The user's trading account through alpaca-py's TradingClient (sync: run in threads)."""

    def __init__(self, live_url: str, paper_url: str) -> None:
        self._urls: dict[BrokerEnv, str] = {"live": live_url, "paper": paper_url}

    def _client(self, token: AccessToken, env: BrokerEnv) -> TradingClient:
        return TradingClient(
            oauth_token=token.reveal(),
            paper=env == "paper",
            raw_data=True,
            url_override=self._urls[env].rstrip("/"),
        )

    async def _run(self, what: str, fn: Any) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except APIError as exc:
            raise _map_api_error(what, exc) from None
        except requests.RequestException as exc:
            log.warning("alpaca %s failed: %s", what, type(exc).__name__)
            raise ProviderUnavailable(f"Alpaca did not answer ({what}). Try again.") from None

    async def account(self, token: AccessToken, env: BrokerEnv) -> dict[str, Any]:
        """The account as Alpaca returns it."""
        result = await self._run("account", lambda: self._client(token, env).get_account())
        return dict(result)

    async def order_by_client_id(
        self, token: AccessToken, env: BrokerEnv, coid: str
    ) -> dict[str, Any] | None:
        """The order with this client_order_id, None when the provider has none."""
        try:
            result = await self._run(
                "order lookup", lambda: self._client(token, env).get_order_by_client_id(coid)
            )
        except ProviderRejected as exc:
            if getattr(exc, "http_status", None) == 404:
                return None
            raise
        return dict(result)

    async def submit(
        self, token: AccessToken, env: BrokerEnv, fields: dict[str, str]
    ) -> dict[str, Any]:
        """Place an order (fields from `domain.order_fields`)."""
        common: dict[str, Any] = {
            "symbol": fields["symbol"],
            "side": _side(fields["side"]),
            "time_in_force": TimeInForce(fields["time_in_force"]),
            "client_order_id": fields["client_order_id"],
        }
        if "qty" in fields:
            common["qty"] = float(fields["qty"])
        if "notional" in fields:
            common["notional"] = float(fields["notional"])
        request = (
            LimitOrderRequest(limit_price=float(fields["limit_price"]), **common)
            if fields["type"] == "limit"
            else MarketOrderRequest(**common)
        )
        result = await self._run("order", lambda: self._client(token, env).submit_order(request))
        return dict(result)


class ProviderStatusError(ProviderRejected):
    """The provider answered a trading call with a 4xx (its message is safe to show)."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = 422 if http_status in (400, 403, 422) else 502
        self.code = "order_rejected" if http_status in (400, 403, 422) else "provider_error"


def _map_api_error(what: str, exc: APIError) -> Exception:
    status = exc.status_code or 0
    try:
        detail = str(exc.message)[:200]
    except (ValueError, KeyError, TypeError):
        detail = ""
    log.info("alpaca %s answered %s", what, status)
    if status == 401:
        return NotConnected(
            "Alpaca no longer accepts this connection; disconnect and connect again."
        )
    if status >= 500 or status == 429:
        return ProviderUnavailable(f"Alpaca is unavailable ({what}, HTTP {status}). Try again.")
    return ProviderStatusError(f"Alpaca refused the {what}: {detail or status}", status)
