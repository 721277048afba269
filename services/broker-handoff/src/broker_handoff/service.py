"""The handoff use cases: connect, callback, status, disconnect, tier changes."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from raxx_contracts import HandoffEvent, NanoDatetime, TierChanged, TierPolicy

from broker_handoff import domain, pages
from broker_handoff.adapters.postgres import OAuthState
from broker_handoff.adapters.vault import GRANTS_DIR, StoredToken, grant_path, record_path
from broker_handoff.deps import Deps
from broker_handoff.domain import BrokerEnv
from broker_handoff.errors import (
    BadRequest,
    BindingMismatch,
    Declined,
    InProgress,
    InvalidLink,
    InvalidState,
    NotConnected,
    NotEligible,
    ProviderRejected,
    ProviderUnavailable,
    RedirectNotAllowed,
    ServiceError,
    StateExpired,
    StoreUnavailable,
    VaultUnavailable,
)
from broker_handoff.settings import Settings

log = logging.getLogger(__name__)
SYSTEM = "system"
RETRYABLE = frozenset(
    {"declined", "provider_rejected", "provider_unavailable", "vault_unavailable",
     "database_unavailable"}
)  # fmt: skip
"""Callback failures a new authorization in the same browser can fix."""
COOKIE_MARGIN_SECONDS = 60
"""The binding cookie outlives its state a little, so expiry is reported as expiry."""


@dataclass(frozen=True)
class FlowStart:
    """Where to send the browser, and the cookie that binds the flow to it."""

    authorize_url: str
    cookie_name: str
    cookie_value: str
    max_age: int


@dataclass(frozen=True)
class CallbackOutcome:
    """How a callback ended: `error` None means connected."""

    error: ServiceError | None
    env: BrokerEnv | None
    retry_state: str | None
    scope: str | None


async def _nowhere(_event: HandoffEvent) -> None:
    return None


def _failure(code: str) -> ServiceError:
    """The error a failed (retryable) state recorded, rebuilt for its page."""
    message = "This attempt did not complete."
    kinds: dict[str, Callable[[], ServiceError]] = {
        "declined": lambda: Declined(message),
        "provider_rejected": lambda: ProviderRejected(message),
        "provider_unavailable": lambda: ProviderUnavailable(message),
        "vault_unavailable": lambda: VaultUnavailable("callback"),
        "database_unavailable": lambda: StoreUnavailable(message),
    }
    return kinds.get(code, kinds["declined"])()


class HandoffService:
    """Orchestrates Postgres (records), Vault (tokens), Alpaca and NATS for one deployment."""

    def __init__(self, settings: Settings, deps: Deps, policy: TierPolicy) -> None:
        self.settings = settings
        self.deps = deps
        self.policy = policy
        self.metrics = deps.metrics
        self._client_secret: str | None = None
        self.wake_reconciler: Callable[[], None] = lambda: None
        """Set by the app: asks the reconciler to look for orphans soon."""
        self.publish_event: Callable[[HandoffEvent], Awaitable[None]] = _nowhere
        """Set by the app: the kit broker's best-effort publisher of `broker.handoff.events`."""

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
        raise VaultUnavailable("oauth-client secret not configured")

    async def publish(self, user_id: str, kind: Any, env: BrokerEnv, reason: str = "") -> None:
        """Publish a HandoffEvent (no secrets)."""
        event = HandoffEvent(
            user_id=user_id,
            kind=kind,
            env=env,
            timestamp=NanoDatetime.from_datetime(self.deps.clock.now()),
            reason=reason,
        )
        await self.publish_event(event)

    def check_redirect(self, redirect_uri: str | None) -> str:
        """The redirect URI to use; refused unless it is on the allow-list."""
        uri = redirect_uri or self.settings.redirect_uri
        if uri not in self.settings.allowed_redirect_uris:
            raise RedirectNotAllowed("redirect_uri is not on the allow-list.")
        return uri

    # -- connect ------------------------------------------------------------------------------
    def _parse_env(self, env: str) -> BrokerEnv:
        if env not in ("live", "paper"):
            raise BadRequest("env must be 'live' or 'paper'.")
        return "live" if env == "live" else "paper"

    async def start_connect(
        self, user_id: str, consent: bool, env: str, redirect_uri: str | None
    ) -> FlowStart:
        """API clients: record consent and a fresh state bound to this client's cookie jar."""
        store = self.deps.store
        try:
            uri = self.check_redirect(redirect_uri)
            broker_env = self._parse_env(env)
            if not consent:
                raise BadRequest(
                    "Explicit consent is required: connecting lets Raxx place orders in your "
                    "Alpaca account. Repeat the request with consent=true to agree."
                )
            await self.require_eligible(user_id)
        except ServiceError as exc:
            self.metrics.connects.labels(exc.code).inc()
            await store.audit(user_id, user_id, "connect", exc.code, {"env": env})
            raise
        await store.audit(user_id, user_id, "consent", "granted", {"env": broker_env})
        return await self._begin_flow(user_id, broker_env, uri)

    async def create_link(self, user_id: str, env: str) -> tuple[str, dt.datetime]:
        """Browsers: a one-time, short-lived URL of the consent page for this user."""
        store = self.deps.store
        try:
            broker_env = self._parse_env(env)
            await self.require_eligible(user_id)
        except ServiceError as exc:
            self.metrics.connects.labels(exc.code).inc()
            await store.audit(user_id, user_id, "connect_link", exc.code, {"env": env})
            raise
        link = domain.new_link()
        expires = self.deps.clock.now() + dt.timedelta(
            seconds=self.settings.connect_link_ttl_seconds
        )
        await store.save_link(domain.link_key(link), user_id, broker_env, expires)
        await store.audit(user_id, user_id, "connect_link", "issued", {"env": broker_env})
        return f"{self.public_origin()}{pages.CONSENT_PATH}?link={link}", expires

    def public_origin(self) -> str:
        """Where browsers reach this service: the origin of the registered redirect URI."""
        parts = urlsplit(self.settings.redirect_uri)
        return f"{parts.scheme}://{parts.netloc}"

    def provider_origin(self) -> str:
        """The origin of the provider's authorize page (our consent forms lead there)."""
        parts = urlsplit(self.settings.alpaca_oauth_url)
        return f"{parts.scheme}://{parts.netloc}"

    async def peek_link(self, link: str) -> tuple[str, BrokerEnv]:
        """The user and env of a valid link, without using it up (the consent page)."""
        row = await self.deps.store.link(domain.link_key(link)) if link else None
        if row is None:
            self.metrics.connects.labels("invalid_link").inc()
            raise InvalidLink("This link is not valid, was already used or expired.")
        return row.user_id, "live" if row.env == "live" else "paper"

    async def confirm_consent(self, link: str, agree: bool) -> FlowStart | None:
        """The person's answer on the consent page: uses the link up; None when cancelled."""
        store = self.deps.store
        row = await store.consume_link(domain.link_key(link)) if link else None
        if row is None:
            self.metrics.connects.labels("invalid_link").inc()
            raise InvalidLink("This link is not valid, was already used or expired.")
        user_id = row.user_id
        broker_env: BrokerEnv = "live" if row.env == "live" else "paper"
        if not agree:
            self.metrics.connects.labels("cancelled").inc()
            await store.audit(user_id, user_id, "consent", "declined", {"env": broker_env})
            return None
        try:
            await self.require_eligible(user_id)
        except ServiceError as exc:
            self.metrics.connects.labels(exc.code).inc()
            await store.audit(user_id, user_id, "connect", exc.code, {"env": broker_env})
            raise
        await store.audit(
            user_id, user_id, "consent", "granted", {"env": broker_env, "via": "link"}
        )
        return await self._begin_flow(user_id, broker_env, self.settings.redirect_uri)

    async def _begin_flow(
        self, user_id: str, env: BrokerEnv, uri: str, replaces: str | None = None
    ) -> FlowStart:
        """A fresh state bound to a fresh cookie; the provider's authorize URL."""
        state = domain.new_state()
        binding = domain.new_binding()
        verifier = domain.new_code_verifier() if self.settings.oauth_pkce else None
        ttl = self.settings.oauth_state_ttl_seconds
        expires = self.deps.clock.now() + dt.timedelta(seconds=ttl)
        await self.deps.store.save_state(
            domain.state_key(state),
            user_id,
            env,
            verifier,
            uri,
            expires,
            domain.binding_hash(binding),
            replaces,
        )
        self.metrics.connects.labels("started").inc()
        url = self.deps.oauth.authorize_url(uri, state, verifier, env)
        return FlowStart(url, domain.cookie_name(state), binding, ttl + COOKIE_MARGIN_SECONDS)

    # -- callback -----------------------------------------------------------------------------
    def _claim_lease(self) -> dt.timedelta:
        """How long an exchange may take before its claim counts as abandoned."""
        seconds = self.settings.alpaca_timeout_seconds * 2 + self.settings.vault.timeout_seconds * 3
        return dt.timedelta(seconds=seconds + 10)

    async def _bound_state(
        self, state: str | None, cookies: Mapping[str, str], step: str
    ) -> tuple[str, OAuthState]:
        """The state row, only for the browser holding its cookie; else refuse and audit.

        A mismatch burns the state: a flow is completed, or retried, only where it started.
        """
        store = self.deps.store
        key = domain.state_key(state) if state else ""
        row = await store.state(key) if state else None
        if row is None or state is None:
            self.metrics.connects.labels("invalid_state").inc()
            await self._audit_quietly("anonymous", None, step, "invalid_state", {})
            raise InvalidState("Unknown or already used state. Start again.")
        if row.expires_at < self.deps.clock.now():  # the cookie may be gone too: say why plainly
            await store.delete_state(key)
            self.metrics.connects.labels("expired").inc()
            await self._audit_quietly(row.user_id, row.user_id, step, "expired", {})
            raise StateExpired("This authorization expired. Start again.")
        presented = cookies.get(domain.cookie_name(state))
        if not domain.binding_matches(presented, row.binding_hash):
            await store.delete_state(key)
            self.metrics.connects.labels("binding_mismatch").inc()
            detail = {"env": row.env, "cookie": "missing" if presented is None else "wrong"}
            await self._audit_quietly("anonymous", row.user_id, step, "binding_mismatch", detail)
            env: BrokerEnv = "live" if row.env == "live" else "paper"
            await self.publish(row.user_id, "connect_failed", env, "binding_mismatch")
            log.warning("OAuth %s refused: the browser does not hold the flow's cookie", step)
            raise BindingMismatch("This authorization was started in a different browser.")
        return key, row

    async def complete_callback(
        self,
        state: str | None,
        code: str | None,
        error: str | None,
        cookies: Mapping[str, str],
    ) -> CallbackOutcome:
        """Finish the flow in the browser that started it: exchange, store, record.

        The state is spent only on success or on a refusal that no retry can fix; any other
        failure keeps it as a retry ticket for the same browser (`retry_flow`).
        """
        store = self.deps.store
        try:
            key, row = await self._bound_state(state, cookies, "callback")
        except (InvalidState, BindingMismatch) as exc:  # StateExpired is an InvalidState
            return CallbackOutcome(exc, None, None, None)
        user_id = row.user_id
        env: BrokerEnv = "live" if row.env == "live" else "paper"
        now = self.deps.clock.now()
        if row.status == "failed":  # a reload of a failed attempt: offer the retry again
            return CallbackOutcome(_failure(row.failure), env, state, None)
        if error or not code:
            declined = Declined("The authorization was declined at Alpaca.")
            await self._fail(key, user_id, env, declined, retryable=True)
            return CallbackOutcome(declined, env, state, None)
        claimed = await store.claim_state(key, now - self._claim_lease())
        if claimed is None:
            self.metrics.connects.labels("in_progress").inc()
            return CallbackOutcome(
                InProgress("This authorization is being completed."), env, None, None
            )
        try:
            uri = self.check_redirect(claimed.redirect_uri)
            await self.require_eligible(user_id)
            secret = await self.client_secret()
            issued = await self.deps.oauth.exchange(code, uri, claimed.code_verifier, secret)
            await self._store_token(user_id, env, issued.token, issued.scope, secret)
        except ServiceError as exc:
            retryable = exc.code in RETRYABLE
            await self._fail(key, user_id, env, exc, retryable)
            return CallbackOutcome(exc, env, state if retryable else None, None)
        with contextlib.suppress(StoreUnavailable):
            await store.delete_state(key)
        self.metrics.connects.labels("connected").inc()
        await self._audit_quietly(user_id, user_id, "connect", "connected", {"env": env})
        await self.publish(user_id, "connected", env)
        return CallbackOutcome(None, env, None, issued.scope)

    async def _fail(
        self, key: str, user_id: str, env: BrokerEnv, exc: ServiceError, retryable: bool
    ) -> None:
        """Record a failed callback; keep the state as a retry ticket when a retry can help."""
        self.metrics.connects.labels(exc.code).inc()
        await self._audit_quietly(user_id, user_id, "connect", exc.code, {"env": env})
        await self.publish(user_id, "connect_failed", env, exc.code)
        ttl = dt.timedelta(seconds=self.settings.oauth_state_ttl_seconds)
        try:
            if retryable:
                await self.deps.store.fail_state(key, exc.code, self.deps.clock.now() + ttl)
            else:
                await self.deps.store.delete_state(key)
        except StoreUnavailable:
            log.warning("could not record the failed callback (database unavailable)")

    async def retry_flow(self, state: str | None, cookies: Mapping[str, str]) -> FlowStart:
        """Start again from a failed callback, in the same browser (its cookie proves it)."""
        key, row = await self._bound_state(state, cookies, "retry")
        if row.status != "failed":
            raise InvalidState("There is nothing to retry. Start again.")
        env: BrokerEnv = "live" if row.env == "live" else "paper"
        try:
            await self.require_eligible(row.user_id)
        except ServiceError as exc:
            self.metrics.connects.labels(exc.code).inc()
            await self.deps.store.delete_state(key)
            raise
        self.metrics.connects.labels("retried").inc()
        await self.deps.store.audit(
            row.user_id, row.user_id, "connect", "retried", {"env": env, "after": row.failure}
        )
        return await self._begin_flow(row.user_id, env, row.redirect_uri, replaces=key)

    async def _audit_quietly(
        self, actor: str, user_id: str | None, action: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        """Audit on an error path: a database outage must not hide the error being reported."""
        try:
            await self.deps.store.audit(actor, user_id, action, outcome, detail)
        except StoreUnavailable:
            log.warning("audit row lost (database unavailable): %s %s", action, outcome)

    async def _store_token(
        self, user_id: str, env: BrokerEnv, token: domain.AccessToken, scope: str, secret: str
    ) -> None:
        """Intent row, Vault write, record; compensate at each step that fails.

        A Vault write that times out may still land later: the token is revoked at the provider
        now and its grant marked failed, and the reconciler destroys the secret once Vault
        answers. The user's current connection (if any) is untouched until the new one is
        recorded, and the grant it replaces is then revoked and destroyed.
        """
        store, vault = self.deps.store, self.deps.vault
        grant_id = domain.new_grant_id()
        try:
            await store.begin_grant(grant_id, user_id)
        except StoreUnavailable:
            await self._revoke(token, secret)
            raise
        try:
            await vault.write_grant(grant_id, user_id, token, env, scope)
        except VaultUnavailable:
            await self._revoke(token, secret)
            with contextlib.suppress(StoreUnavailable):
                await store.set_grant_status(grant_id, "failed", ("writing",))
            self.wake_reconciler()
            raise
        path = grant_path(grant_id)
        try:
            previous = await store.activate_grant(user_id, grant_id, env, scope, path)
        except StoreUnavailable:
            await self._revoke(token, secret)
            with contextlib.suppress(VaultUnavailable):
                await vault.destroy_path(path)
            with contextlib.suppress(StoreUnavailable):
                await store.set_grant_status(grant_id, "failed", ("writing",))
            raise
        if previous is not None:
            await self._retire(grant_path(previous), secret)

    async def _revoke(self, token: domain.AccessToken, secret: str | None) -> None:
        outcome = await self.deps.oauth.revoke(token, secret)
        self.metrics.revocations.labels(outcome).inc()

    async def _retire(self, path: str, secret: str | None) -> None:
        """Revoke and destroy a superseded grant; the reconciler finishes what fails here."""
        try:
            stored = await self.deps.vault.read_path(path)
            if stored is not None:
                await self._revoke(stored.token, secret)
            await self.deps.vault.destroy_path(path)
            grant = path.removeprefix(GRANTS_DIR + "/")
            await self.deps.store.set_grant_status(grant, "destroyed", ("retired",))
        except ServiceError as exc:
            log.warning("superseded grant not destroyed yet (%s); the reconciler will", exc.code)
            self.wake_reconciler()

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
        stored = await self.deps.vault.read_path(record_path(conn.vault_key))
        if stored is None:
            raise NotConnected("The Alpaca connection is gone. Connect again.")
        return stored

    # -- disconnect ---------------------------------------------------------------------------
    async def disconnect(self, user_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Revoke at the provider, destroy the token in Vault, record, audit and publish."""
        vault = self.deps.vault
        conn = await self.deps.store.connection(user_id)
        paths = [record_path(conn.vault_key)] if conn and conn.vault_key else []
        legacy = record_path(domain.vault_key(user_id))
        if legacy not in paths:
            paths.append(legacy)  # a record written before per-grant paths
        stored = None
        revoked = "absent"
        for path in paths:
            found = await vault.read_path(path)
            if found is not None:
                stored = stored or found
                secret = await self._secret_or_none()
                revoked = await self.deps.oauth.revoke(found.token, secret)
                self.metrics.revocations.labels(revoked).inc()
            await vault.destroy_path(path)
        status = "revoked" if reason == "admin_revoke" else "disconnected"
        was_connected = await self.deps.store.mark_disconnected(user_id, status, reason)
        if conn is not None and conn.grant_id:
            await self.deps.store.set_grant_status(conn.grant_id, "destroyed", ("retired",))
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
