"""The handoff use cases: connect, callback, status, disconnect, tier changes."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from raxx_contracts import HandoffEvent, NanoDatetime, TierChanged, TierPolicy

from broker_handoff import domain
from broker_handoff.adapters.vault import StoredToken
from broker_handoff.deps import Deps
from broker_handoff.domain import BrokerEnv
from broker_handoff.errors import (
    BadRequest,
    HandoffError,
    InvalidState,
    NotConnected,
    NotEligible,
    RedirectNotAllowed,
    VaultUnavailable,
)
from broker_handoff.settings import Settings

log = logging.getLogger(__name__)
SYSTEM = "system"


class HandoffService:
    """Orchestrates Postgres (records), Vault (tokens), Alpaca and NATS for one deployment."""

    def __init__(self, settings: Settings, deps: Deps, policy: TierPolicy) -> None:
        self.settings = settings
        self.deps = deps
        self.policy = policy
        self.metrics = deps.metrics
        self._client_secret: str | None = None

    async def load_secrets(self) -> None:
        """Fetch the OAuth client secret at start (non-fatal: /readyz shows a Vault outage)."""
        try:
            await self.client_secret()
        except VaultUnavailable:
            log.warning("OAuth client secret not loaded at start; will retry on first use")

    # -- helpers ----------------------------------------------------------------------------
    async def tier(self, user_id: str) -> str:
        """The user's current tier (unknown user: the policy's default, i.e. free)."""
        return await self.deps.store.tier_of(user_id) or self.policy.default_tier

    async def require_eligible(self, user_id: str) -> str:
        """The tier, or NotEligible when it may not use the handoff."""
        tier = await self.tier(user_id)
        if not domain.eligible(self.policy, tier):
            raise NotEligible(f"Live-broker handoff is not included in the {tier} tier.")
        return tier

    async def client_secret(self) -> str:
        """The OAuth client secret: Vault first, the dev fallback second (cached once read)."""
        if self._client_secret:
            return self._client_secret
        secret = await self.deps.vault.read_field("oauth-client", "client_secret")
        if not secret and self.settings.oauth_client_secret is not None:
            secret = self.settings.oauth_client_secret.get_secret_value()
        if secret:
            self._client_secret = secret
            return secret
        raise VaultUnavailable("The OAuth client secret is not configured in the secret store.")

    async def publish(self, user_id: str, kind: Any, env: BrokerEnv, reason: str = "") -> None:
        """Publish a HandoffEvent (no secrets)."""
        event = HandoffEvent(
            user_id=user_id,
            kind=kind,
            env=env,
            timestamp=NanoDatetime.from_datetime(self.deps.clock()),
            reason=reason,
        )
        await self.deps.bus.publish_event(event)

    def check_redirect(self, redirect_uri: str | None) -> str:
        """The redirect URI to use; refused unless it is on the allow-list."""
        uri = redirect_uri or self.settings.redirect_uri
        if uri not in self.settings.allowed_redirect_uris:
            raise RedirectNotAllowed("redirect_uri is not on the allow-list.")
        return uri

    # -- connect ------------------------------------------------------------------------------
    async def start_connect(
        self, user_id: str, consent: bool, env: str, redirect_uri: str | None
    ) -> str:
        """Record consent and a fresh state; return the provider's authorize URL."""
        store = self.deps.store
        try:
            uri = self.check_redirect(redirect_uri)
            if env not in ("live", "paper"):
                raise BadRequest("env must be 'live' or 'paper'.")
            if not consent:
                raise BadRequest(
                    "Explicit consent is required: connecting lets Raxx place orders in your "
                    "Alpaca account. Repeat the request with consent=true to agree."
                )
            await self.require_eligible(user_id)
        except HandoffError as exc:
            self.metrics.connects.labels(exc.code).inc()
            await store.audit(user_id, user_id, "connect", exc.code, {"env": env})
            raise
        broker_env: BrokerEnv = "live" if env == "live" else "paper"
        state = domain.new_state()
        verifier = domain.new_code_verifier() if self.settings.oauth_pkce else None
        expires = self.deps.clock() + dt.timedelta(seconds=self.settings.oauth_state_ttl_seconds)
        await store.save_state(domain.state_key(state), user_id, broker_env, verifier, uri, expires)
        await store.audit(user_id, user_id, "consent", "granted", {"env": broker_env})
        self.metrics.connects.labels("started").inc()
        return self.deps.oauth.authorize_url(uri, state, verifier, broker_env)

    async def complete_callback(
        self, state: str | None, code: str | None, error: str | None
    ) -> dict[str, Any]:
        """Verify and consume the state, exchange the code, store the token, record it."""
        store = self.deps.store
        row = await store.consume_state(domain.state_key(state)) if state else None
        if row is None:
            self.metrics.connects.labels("invalid_state").inc()
            await store.audit("anonymous", None, "callback", "invalid_state")
            raise InvalidState("Unknown or already used state. Start again at the connect URL.")
        user_id = row.user_id
        env: BrokerEnv = "live" if row.env == "live" else "paper"
        try:
            if row.expires_at < self.deps.clock():
                raise InvalidState("This authorization expired. Start again at the connect URL.")
            if error or not code:
                raise BadRequest(
                    f"Alpaca did not authorize the connection ({(error or 'no code')[:60]})."
                )
            uri = self.check_redirect(row.redirect_uri)
            await self.require_eligible(user_id)
            secret = await self.client_secret()
            issued = await self.deps.oauth.exchange(code, uri, row.code_verifier, secret)
            await self._store_token(user_id, env, issued.token, issued.scope, secret)
        except HandoffError as exc:
            self.metrics.connects.labels(exc.code).inc()
            await store.audit(user_id, user_id, "connect", exc.code, {"env": env})
            await self.publish(user_id, "connect_failed", env, exc.code)
            raise
        self.metrics.connects.labels("connected").inc()
        await store.audit(user_id, user_id, "connect", "connected", {"env": env})
        await self.publish(user_id, "connected", env)
        return {"status": "connected", "env": env, "scope": issued.scope}

    async def _store_token(
        self, user_id: str, env: BrokerEnv, token: domain.AccessToken, scope: str, secret: str
    ) -> None:
        """Vault first, then the record; undo the Vault write if the record cannot be made."""
        try:
            await self.deps.vault.write_token(user_id, token, env, scope)
        except VaultUnavailable:
            # Nothing is stored; do not leave a live grant at the provider that nobody holds.
            await self.deps.oauth.revoke(token, secret)
            raise
        try:
            await self.deps.store.mark_connected(user_id, env, scope, domain.vault_key(user_id))
        except HandoffError:
            await self.deps.vault.destroy_token(user_id)
            await self.deps.oauth.revoke(token, secret)
            raise

    # -- status / token -----------------------------------------------------------------------
    async def status(self, user_id: str) -> dict[str, Any]:
        """The user's connection status (no secret)."""
        tier = await self.tier(user_id)
        conn = await self.deps.store.connection(user_id)
        out: dict[str, Any] = {
            "connected": bool(conn and conn.status == "connected"),
            "eligible": domain.eligible(self.policy, tier),
            "tier": tier,
        }
        if conn:
            out.update(
                status=conn.status,
                env=conn.env,
                scope=conn.scope,
                connected_at=conn.connected_at.isoformat() if conn.connected_at else None,
                updated_at=conn.updated_at.isoformat(),
                reason=conn.reason,
            )
        return out

    async def token_for_use(self, user_id: str) -> StoredToken:
        """Tier re-checked, then the connected user's token from Vault."""
        await self.require_eligible(user_id)
        conn = await self.deps.store.connection(user_id)
        if conn is None or conn.status != "connected":
            raise NotConnected("No Alpaca account is connected. Connect one first.")
        stored = await self.deps.vault.read_token(user_id)
        if stored is None:
            raise NotConnected("The Alpaca connection is gone. Connect again.")
        return stored

    # -- disconnect ---------------------------------------------------------------------------
    async def disconnect(self, user_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Revoke at the provider, destroy the token in Vault, record, audit and publish."""
        vault = self.deps.vault
        stored = await vault.read_token(user_id)
        revoked = "absent"
        if stored is not None:
            secret = await self._secret_or_none()
            revoked = await self.deps.oauth.revoke(stored.token, secret)
            self.metrics.revocations.labels(revoked).inc()
        await vault.destroy_token(user_id)
        status = "revoked" if reason == "admin_revoke" else "disconnected"
        was_connected = await self.deps.store.mark_disconnected(user_id, status, reason)
        env: BrokerEnv = stored.env if stored else "paper"
        await self.deps.store.audit(
            actor, user_id, "disconnect", "done", {"reason": reason, "provider_revoke": revoked}
        )
        if was_connected or stored is not None:
            self.metrics.disconnects.labels(reason).inc()
            kind = "revoked" if reason == "admin_revoke" else "disconnected"
            await self.publish(user_id, kind, env, reason)
        return {"status": status, "was_connected": was_connected, "provider_revoke": revoked}

    async def _secret_or_none(self) -> str | None:
        try:
            return await self.client_secret()
        except VaultUnavailable:
            return None

    # -- tier projection ----------------------------------------------------------------------
    async def apply_tier_change(self, event: TierChanged) -> None:
        """Project a tier change; a downgrade below the eligible tier disconnects the user."""
        applied = await self.deps.store.apply_tier(
            event.user_id, event.tier, event.version, event.timestamp
        )
        self.metrics.tier_changes.labels("applied" if applied else "stale").inc()
        # Decide on the projected tier, not the event: a redelivered (stale) event must still
        # finish a disconnect that failed half-way the first time.
        if domain.eligible(self.policy, await self.tier(event.user_id)):
            return
        conn = await self.deps.store.connection(event.user_id)
        if conn is not None and conn.status == "connected":
            log.info("tier downgrade: disconnecting a user's broker connection")
            await self.disconnect(event.user_id, SYSTEM, "tier_downgrade")
