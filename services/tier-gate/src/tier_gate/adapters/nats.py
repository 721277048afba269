"""NATS, raw nats-py side: the BILLING stream (tier-gate owns and declares it), the user-tier
KV bucket, account-claims pushes (revocations) and the dev route's tier publish.

Connections come from the service kit (`raxx_service_kit.nats.connect`: one set of options,
status for `/readyz`); the billing consumers run on faststream (`tier_gate.handlers`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client, RawCredentials
from nats.js.api import (
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from raxx_contracts import DecodeError, TierChanged, decode, encode, subjects
from raxx_service_kit.nats import ConnectionStatus, Credentials, connect, creds_text
from raxx_service_kit.nats import credentials as settings_credentials

from tier_gate import keys
from tier_gate.adapters.vault import Vault
from tier_gate.errors import ConfigError, UnavailableError
from tier_gate.settings import Settings

log = logging.getLogger(__name__)

BILLING_STREAM_CONFIG = StreamConfig(
    name=subjects.BILLING_STREAM,
    subjects=[subjects.BILLING_TIER_CHANGED],
    storage=StorageType.FILE,
    retention=RetentionPolicy.LIMITS,
    max_age=90 * 86400,
    duplicate_window=2 * 86400,
)
"""The one declaration of the BILLING stream (billing publishes, tier-gate consumes)."""


async def ensure_billing_stream(nc: Client) -> None:
    """Declare BILLING (create, or update to our config): the only place that declares it."""
    js = nc.jetstream()
    try:
        await js.stream_info(subjects.BILLING_STREAM)
        await js.update_stream(BILLING_STREAM_CONFIG)
    except NotFoundError:
        await js.add_stream(BILLING_STREAM_CONFIG)


async def push_account_jwt(sys_nc: Client, account_pub: str, account_jwt: str) -> str:
    """Send a re-signed account JWT to `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.UPDATE`; return reply."""
    subject = f"$SYS.REQ.ACCOUNT.{account_pub}.CLAIMS.UPDATE"
    try:
        msg = await sys_nc.request(subject, account_jwt.encode(), timeout=3)
    except (TimeoutError, nats.errors.Error) as exc:
        raise UnavailableError(f"claims update not answered: {exc!r}") from exc
    reply = json.loads(msg.data)
    if "error" in reply:
        raise UnavailableError(f"claims update refused: {reply['error']}")
    data = reply.get("data", {})
    return str(data.get("message", ""))


async def user_tiers_bucket(nc: Client, max_age: float) -> KeyValue:
    """Declare `USER_TIERS_BUCKET` (tier-gate owns it): one entry per user, `max_age` TTL."""
    js = nc.jetstream(timeout=3)
    cfg = KeyValueConfig(
        bucket=subjects.USER_TIERS_BUCKET,
        history=1,
        ttl=max_age,
        storage=StorageType.FILE,
        description="tier-gate: each user's current tier (the hub refuses superseded tokens)",
    )
    try:
        return await js.create_key_value(cfg)
    except BadRequestError:
        # Exists with another TTL (a changed credential lifetime): adopt ours.
        info = await js.stream_info(f"KV_{subjects.USER_TIERS_BUCKET}")
        info.config.max_age = max_age
        await js.update_stream(info.config)
        return await js.key_value(subjects.USER_TIERS_BUCKET)


async def announce_tier(kv: KeyValue, event: TierChanged) -> bool:
    """Make the user's entry carry `event` unless it already holds a newer version.

    Compare-and-set on the entry's revision, so replicas announcing concurrently (or out of
    order) never move an entry back. Returns whether this call wrote. Raises
    UnavailableError when NATS does not answer.
    """
    key = subjects.user_tier_key(event.user_id)
    data = encode(event)
    try:
        for _ in range(10):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                entry = None
            try:
                if entry is None or entry.value is None:
                    await kv.create(key, data)
                    return True
                try:
                    current: TierChanged | None = decode(TierChanged, entry.value)
                except DecodeError:
                    current = None
                if current is not None and current.version >= event.version:
                    return False
                await kv.update(key, data, last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                continue  # another writer got there first: read it again
    except (TimeoutError, nats.errors.Error) as exc:
        raise UnavailableError(f"tier announcement for a user not written: {exc!r}") from exc
    raise UnavailableError("tier announcement kept conflicting; will retry")


async def service_credentials(
    settings: Settings, vault: Vault, name: str, *, sys: bool = False
) -> Credentials:
    """A service user's credentials: the settings' `.creds` file (or text), else OpenBao's."""
    if sys:
        if settings.nats_sys_creds is not None:
            return settings.nats_sys_creds
    else:
        found = settings_credentials(settings)
        if found is not None:
            return found
    stored = await vault.read(keys.service_path(name))
    if stored is None:
        raise ConfigError(f"no NATS credential for {name}: run init or set TG_NATS_CREDS")
    return RawCredentials(creds_text(stored["jwt"], stored["seed"]))


@dataclass
class NatsBus:
    """tier-gate's two raw connections and what it does on them (not the consumers)."""

    nc: Client
    sys_nc: Client
    tiers_kv: KeyValue
    status: ConnectionStatus
    sys_status: ConnectionStatus

    @classmethod
    async def open(
        cls, settings: Settings, vault: Vault, *, kv_max_age: float, creds: Credentials
    ) -> NatsBus:
        """Connect both users, declare BILLING (ours) and the user-tier bucket."""
        from tier_gate import domain

        status = ConnectionStatus("tier-gate")
        sys_status = ConnectionStatus("tier-gate-sys")
        sys_creds = await service_credentials(settings, vault, domain.SYS_SERVICE, sys=True)
        nc = await connect(settings, "tier-gate/tier-gate", status=status, creds=creds)
        try:
            sys_nc = await connect(
                settings, "tier-gate/tier-gate-sys", status=sys_status, creds=sys_creds
            )
        except BaseException:
            await nc.close()
            raise
        try:
            await ensure_billing_stream(nc)
            kv = await user_tiers_bucket(nc, max_age=kv_max_age)
        except BaseException:
            await nc.close()
            await sys_nc.close()
            raise
        return cls(nc, sys_nc, kv, status, sys_status)

    async def announce(self, event: TierChanged) -> bool:
        """Write the user's current tier for the hub (see `announce_tier`)."""
        return await announce_tier(self.tiers_kv, event)

    async def push_account(self, account_pub: str, account_jwt: str) -> str:
        """Push a re-signed account JWT on the system connection."""
        return await push_account_jwt(self.sys_nc, account_pub, account_jwt)

    async def publish_tier(self, event: TierChanged) -> None:
        """Dev route: publish a tier change into BILLING as billing would."""
        try:
            await self.nc.jetstream().publish(subjects.BILLING_TIER_CHANGED, encode(event))
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"tier change not published: {exc!r}") from exc

    async def probe(self, system: bool = False) -> None:
        """Raise (the reason) unless the connection answers a flush within 1 s."""
        nc, status = (self.sys_nc, self.sys_status) if system else (self.nc, self.status)
        problem = status.problem(nc)
        if problem is not None:
            raise ConnectionError(problem)
        await nc.flush(timeout=1)

    async def close(self) -> None:
        """Close both connections."""
        for nc in (self.nc, self.sys_nc):
            if not nc.is_closed:
                await nc.close()


def use_credentials(broker: Any, creds: Credentials) -> None:
    """Give the faststream broker the credentials read at start (from OpenBao).

    The broker is built with the app (its AsyncAPI document and routes exist before the
    lifespan), but tier-gate may learn its credentials only in the lifespan; faststream keeps
    nats-py's connect arguments in `_connection_kwargs` until `start()`.
    """
    kwargs: dict[str, Any] = broker._connection_kwargs
    kwargs["user_credentials"] = str(creds) if not isinstance(creds, RawCredentials) else creds
