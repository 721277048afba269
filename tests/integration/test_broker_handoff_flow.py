"""broker-handoff end to end: real OpenBao, PostgreSQL, nats-server and alpaca-sim.

The app runs in-process (so caplog sees every logger); httpx scripts the browser with
follow_redirects=False: our /connect -> the sim's /oauth/authorize -> our /callback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hvac
import nats
import psycopg
import pytest
from broker_handoff.app import create_app
from broker_handoff.deps import build_deps
from broker_handoff.domain import sha256_hex
from broker_handoff.service import HandoffService
from broker_handoff.settings import BrokerHandoffVault, Settings
from fastapi import FastAPI
from joserfc.jwk import RSAKey
from nats.js.errors import BadRequestError
from raxx_contracts import TierChanged, encode, subjects
from raxx_contracts.timestamps import NanoDatetime
from raxx_service_kit.jwt import sign

from tests.integration.fixtures.servers import AlpacaSim, Vault

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:8083/v1/broker/alpaca/callback"
ADMIN_TOKEN = "it-admin-token-" + uuid.uuid4().hex


@dataclass
class Harness:
    """One broker-handoff app wired to real servers, plus a scripted browser."""

    app: FastAPI
    api: httpx.AsyncClient
    browser: httpx.AsyncClient
    settings: Settings
    sim: AlpacaSim
    vault: Vault
    dsn: str
    nats_url: str
    key: Any
    responses: list[httpx.Response] = field(default_factory=list)

    @property
    def service(self) -> HandoffService:
        service: HandoffService = self.app.state.service
        return service

    def jwt(self, user: str) -> str:
        now = int(time.time())
        claims = {"iss": "raxx-identity", "aud": "raxx", "sub": user, "iat": now, "exp": now + 300}
        return sign(self.key, claims, algorithm="RS256")

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt(user)}"}

    async def call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        resp = await self.api.request(method, url, **kw)
        self.responses.append(resp)
        return resp

    async def set_tier(self, user: str, tier: str, version: int, wait: bool = True) -> None:
        nc = await nats.connect(self.nats_url)
        try:
            event = TierChanged(
                user_id=user,
                tier=tier,
                version=version,
                timestamp=NanoDatetime.from_datetime(dt.datetime.now(dt.UTC)),
            )
            await nc.jetstream().publish(subjects.BILLING_TIER_CHANGED, encode(event))
        finally:
            await nc.close()
        if wait:
            await until(lambda: self._tier_is(user, tier))

    async def _tier_is(self, user: str, tier: str) -> bool:
        return await self.service.deps.store.tier_of(user) == tier

    async def start_connect(self, user: str, env: str = "paper") -> str:
        """/connect -> sim authorize; returns the callback URL the sim redirects to."""
        r = await self.call(
            "GET",
            "/v1/broker/alpaca/connect",
            params={"consent": "true", "env": env},
            headers=self.auth(user),
        )
        assert r.status_code == 302, r.text
        authorize = r.headers["location"]
        assert authorize.startswith(f"{self.sim.url}/oauth/authorize?")
        r2 = await self.browser.get(authorize)
        self.responses.append(r2)
        assert r2.status_code == 302, r2.text
        callback = r2.headers["location"]
        assert callback.startswith(REDIRECT + "?")
        return callback

    async def connect(self, user: str, env: str = "paper") -> httpx.Response:
        return await self.call("GET", await self.start_connect(user, env))

    def stored_tokens(self, user: str) -> list[str]:
        """Every token of `user` anywhere below the service's prefix (grants and legacy)."""
        return [t for u, t in stored_grants(self.vault, self.settings.vault.prefix) if u == user]

    def stored_token(self, user: str) -> str | None:
        tokens = self.stored_tokens(user)
        assert len(tokens) <= 1, "more than one token stored for one user"
        return tokens[0] if tokens else None

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return list(conn.execute(sql.encode(), params).fetchall())


def stored_grants(vault: Vault, prefix: str) -> list[tuple[str, str]]:
    """(user_id, access_token) of every token stored below `prefix` (grants and legacy)."""
    client = hvac.Client(url=vault.addr, token=vault.token)
    kv = client.secrets.kv.v2
    found: list[tuple[str, str]] = []
    for directory in ("grants", "users"):
        try:
            keys = kv.list_secrets(path=f"{prefix}/{directory}", mount_point="secret")
        except hvac.exceptions.InvalidPath:
            continue
        for key in keys["data"]["keys"]:
            try:
                resp = kv.read_secret_version(
                    path=f"{prefix}/{directory}/{key}",
                    mount_point="secret",
                    raise_on_deleted_version=False,
                )
            except hvac.exceptions.InvalidPath:
                continue
            data = resp["data"]["data"] or {}
            found.append((str(data.get("user_id")), str(data.get("access_token"))))
    return found


def outcome(resp: httpx.Response) -> str:
    """What a browser page says happened (its `raxx-outcome` meta tag)."""
    assert resp.headers["content-type"].startswith("text/html"), resp.text
    match = re.search(r'<meta name="raxx-outcome" content="([^"]*)">', resp.text)
    assert match, resp.text
    return match.group(1)


async def until(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def ensure_billing_stream(nats_url: str) -> None:
    """Tier-gate declares BILLING in production; tests declare it themselves."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        try:
            await js.add_stream(
                name=subjects.BILLING_STREAM, subjects=[subjects.BILLING_TIER_CHANGED]
            )
        except BadRequestError:
            await js.stream_info(subjects.BILLING_STREAM)  # exists with another config: fine
    finally:
        await nc.close()


def seed_vault(vault: Vault, prefix: str) -> None:
    client = hvac.Client(url=vault.addr, token=vault.token)
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(
        path=f"{prefix}/oauth-client",
        secret={"client_secret": "sim-client-secret"},
        mount_point="secret",
    )
    kv.create_or_update_secret(
        path=f"{prefix}/admin",
        secret={"token_sha256": sha256_hex(ADMIN_TOKEN)},
        mount_point="secret",
    )


def make_settings(
    tmp_path: Path,
    key: Any,
    sim: AlpacaSim,
    vault: Vault,
    dsn: str,
    nats_url: str,
    **overrides: Any,
) -> Settings:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "database_url": dsn,
        "vault": BrokerHandoffVault(
            addr=vault.addr, token=vault.token, prefix=f"raxx/broker-handoff-it/{uuid.uuid4().hex}"
        ),
        "alpaca_oauth_url": sim.url,
        "alpaca_trading_url": sim.url,
        "redirect_uri": REDIRECT,
        "allowed_redirect_uris": [REDIRECT],
        "identity_jwks_url": str(jwks),
        "tier_consumer_durable": f"bh-it-{uuid.uuid4().hex[:10]}",
        "alpaca_timeout_seconds": 5.0,
        # httpx (Python's cookie jar) never sends a Secure cookie over http; browsers do on
        # 127.0.0.1 (tests/security drives Chromium with the default, Secure on).
        "cookie_secure": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def identity_key() -> Any:
    return RSAKey.generate_key(2048, parameters={"kid": "it-key", "alg": "RS256"}, private=True)


async def open_harness(
    settings: Settings, key: Any, sim: AlpacaSim, vault: Vault, dsn: str, nats_url: str
) -> AsyncIterator[Harness]:
    await ensure_billing_stream(nats_url)
    seed_vault(vault, settings.vault.prefix)
    app = create_app(settings, build_deps(settings))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1:8083",
            follow_redirects=False,
        ) as api,
        httpx.AsyncClient(follow_redirects=False, timeout=10) as browser,
    ):
        yield Harness(app, api, browser, settings, sim, vault, dsn, nats_url, key)


@pytest.fixture
async def bh(
    tmp_path: Path,
    identity_key: Any,
    alpaca_sim: AlpacaSim,
    vault: Vault,
    postgres_dsn: str,
    nats_url: str,
) -> AsyncIterator[Harness]:
    settings = make_settings(tmp_path, identity_key, alpaca_sim, vault, postgres_dsn, nats_url)
    async for h in open_harness(settings, identity_key, alpaca_sim, vault, postgres_dsn, nats_url):
        yield h


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# The whole flow, and the token never leaking anywhere but Vault.
# ---------------------------------------------------------------------------------------------

LOGGERS = (
    "",
    "httpx",
    "httpcore",
    "authlib",
    "urllib3",
    "hvac",
    "alpaca",
    "broker_handoff",
    "psycopg",
    "nats",
    "fastapi",
    "uvicorn",
)


async def test_whole_flow_keeps_the_token_only_in_vault(
    bh: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)

    r = await bh.connect(user)
    assert r.status_code == 200, r.text
    assert outcome(r) == "connected"
    token = bh.stored_token(user)
    assert token

    status = (await bh.call("GET", "/v1/broker/alpaca", headers=bh.auth(user))).json()
    assert status["connected"] is True
    assert status["env"] == "paper"

    account = await bh.call("GET", "/v1/broker/alpaca/account", headers=bh.auth(user))
    assert account.status_code == 200, account.text
    assert account.json()["status"] == "ACTIVE"

    order = {"symbol": "AAPL", "side": "buy", "qty": "1"}
    headers = {**bh.auth(user), "Idempotency-Key": "order-1"}
    first = await bh.call("POST", "/v1/broker/alpaca/orders", json=order, headers=headers)
    assert first.status_code == 201, first.text
    again = await bh.call("POST", "/v1/broker/alpaca/orders", json=order, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    # The provider holds exactly one order for that client_order_id.
    sim_orders = (
        await bh.browser.get(
            f"{bh.sim.url}/v2/orders",
            params={"status": "all"},
            headers={"Authorization": f"Bearer {token}"},
        )
    ).json()
    coid = first.json()["order"]["client_order_id"]
    assert [o["client_order_id"] for o in sim_orders].count(coid) == 1

    bye = await bh.call("DELETE", "/v1/broker/alpaca", headers=bh.auth(user))
    assert bye.status_code == 200, bye.text
    assert bye.json()["provider_revoke"] == "revoked"
    assert bh.stored_token(user) is None
    # Revoked at the provider: the old token no longer works there.
    gone = await bh.browser.get(
        f"{bh.sim.url}/v2/account", headers={"Authorization": f"Bearer {token}"}
    )
    assert gone.status_code in (401, 403)
    metrics = await bh.call("GET", "/metrics")

    # -- the scan ---------------------------------------------------------------------------
    texts = []
    for rec in caplog.records:
        texts.append(rec.getMessage())
        if rec.exc_info:
            texts.append(logging.Formatter().formatException(rec.exc_info))
        if rec.exc_text:
            texts.append(rec.exc_text)
    assert len(texts) > 10  # the loggers were really captured
    for resp in bh.responses:
        texts.append(resp.text)
        texts.append(str(resp.headers))
    texts.append(metrics.text)
    tables = [
        t
        for (t,) in bh.rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    ]
    assert {"bh_connections", "bh_audit", "bh_orders", "bh_oauth_states"} <= set(tables)
    for table in tables:
        for (row,) in bh.rows(f"SELECT row_to_json(t)::text FROM {table} t"):  # noqa: S608
            texts.append(row)
    leaks = [t for t in texts if token in t]
    assert leaks == []
    assert user not in metrics.text

    audit = [
        (a, o)
        for (a, o) in bh.rows(
            "SELECT action, outcome FROM bh_audit WHERE user_id = %s ORDER BY id", user
        )
    ]
    assert ("consent", "granted") in audit
    assert ("connect", "connected") in audit
    assert ("order", "placed") in audit
    assert ("disconnect", "done") in audit


async def test_reconnecting_replaces_the_grant_and_revokes_the_old_token(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    assert outcome(await bh.connect(user)) == "connected"
    first = bh.stored_token(user)
    assert outcome(await bh.connect(user, env="live")) == "connected"
    second = bh.stored_token(user)  # exactly one token is kept
    assert second
    assert second != first
    old = await bh.browser.get(
        f"{bh.sim.url}/v2/account", headers={"Authorization": f"Bearer {first}"}
    )
    assert old.status_code in (401, 403)
    assert (await bh.call("GET", "/v1/broker/alpaca/account", headers=bh.auth(user))).is_success
    statuses = sorted(
        s for (s,) in bh.rows("SELECT status FROM bh_grants WHERE user_id = %s", user)
    )
    assert statuses == ["active", "destroyed"]
    text = (await bh.call("GET", "/metrics")).text
    assert "bh_orphan_secrets_destroyed_total 0.0" in text


async def test_audit_log_is_append_only(bh: Harness) -> None:
    user = new_user()
    await bh.call("GET", "/v1/broker/alpaca/connect", headers=bh.auth(user))  # refused: audited
    assert bh.rows("SELECT count(*) FROM bh_audit WHERE user_id = %s", user)[0][0] >= 1
    for sql in ("UPDATE bh_audit SET outcome = 'x'", "DELETE FROM bh_audit", "TRUNCATE bh_audit"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            bh.rows(sql)


# ---------------------------------------------------------------------------------------------
# Refusals before anything leaves the service.
# ---------------------------------------------------------------------------------------------


async def test_connect_without_consent_is_400_and_explains(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    r = await bh.call("GET", "/v1/broker/alpaca/connect", headers=bh.auth(user))
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"
    assert "consent=true" in r.json()["message"]


async def test_connect_needs_a_valid_identity(bh: Harness) -> None:
    r = await bh.call("GET", "/v1/broker/alpaca/connect", params={"consent": "true"})
    assert r.status_code == 401
    r = await bh.call(
        "GET",
        "/v1/broker/alpaca/connect",
        params={"consent": "true"},
        headers={"Authorization": "Bearer forged.jwt.value"},
    )
    assert r.status_code == 401


@pytest.mark.parametrize("tier", [None, "free", "pro"])
async def test_ineligible_tiers_cannot_connect(bh: Harness, tier: str | None) -> None:
    user = new_user()
    if tier:
        await bh.set_tier(user, tier, 1)
    r = await bh.call(
        "GET", "/v1/broker/alpaca/connect", params={"consent": "true"}, headers=bh.auth(user)
    )
    assert r.status_code == 403
    assert r.json()["error"] == "not_eligible"


async def test_a_redirect_uri_off_the_allow_list_is_refused_before_leaving(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    r = await bh.call(
        "GET",
        "/v1/broker/alpaca/connect",
        headers=bh.auth(user),
        params={"consent": "true", "redirect_uri": "https://evil.example/cb"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "redirect_uri_not_allowed"
    assert "location" not in r.headers
    assert bh.rows("SELECT count(*) FROM bh_oauth_states")[0][0] == 0


# ---------------------------------------------------------------------------------------------
# States: single use, forged, expired.
# ---------------------------------------------------------------------------------------------


async def test_a_replayed_state_is_400(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    callback = await bh.start_connect(user)
    assert (await bh.call("GET", callback)).status_code == 200
    replay = await bh.call("GET", callback)
    assert replay.status_code == 400
    assert outcome(replay) == "invalid_state"


async def test_a_forged_or_missing_state_is_400(bh: Harness) -> None:
    for params in ({"code": "c", "state": "forged"}, {"code": "c"}):
        r = await bh.call("GET", "/v1/broker/alpaca/callback", params=params)
        assert r.status_code == 400
        assert outcome(r) == "invalid_state"


async def test_an_expired_state_is_400(
    tmp_path: Path,
    identity_key: Any,
    alpaca_sim: AlpacaSim,
    vault: Vault,
    postgres_dsn: str,
    nats_url: str,
) -> None:
    settings = make_settings(
        tmp_path,
        identity_key,
        alpaca_sim,
        vault,
        postgres_dsn,
        nats_url,
        oauth_state_ttl_seconds=1,
    )
    async for h in open_harness(settings, identity_key, alpaca_sim, vault, postgres_dsn, nats_url):
        user = new_user()
        await h.set_tier(user, "pro_plus", 1)
        callback = await h.start_connect(user)
        await asyncio.sleep(1.2)
        r = await h.call("GET", callback)
        assert r.status_code == 400
        assert outcome(r) == "expired"
        assert h.stored_token(user) is None


# ---------------------------------------------------------------------------------------------
# Faults: provider refusal during the exchange; Vault down.
# ---------------------------------------------------------------------------------------------


async def test_a_provider_refusal_at_exchange_explains_and_a_new_connect_works(
    bh: Harness,
) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    first = await bh.start_connect(user)
    second = await bh.start_connect(user)
    used_code = httpx.URL(first).params["code"]
    assert (await bh.call("GET", first)).status_code == 200
    # A valid state with a code the provider has already redeemed: invalid_grant.
    state2 = httpx.URL(second).params["state"]
    r = await bh.call(
        "GET", "/v1/broker/alpaca/callback", params={"code": used_code, "state": state2}
    )
    assert r.status_code == 400
    assert outcome(r) == "provider_rejected"
    assert 'action="/v1/broker/alpaca/retry"' in r.text  # the same browser may try again
    # That state cannot complete again (its code is spent): it only offers the retry.
    again = await bh.call("GET", second)
    assert again.status_code == 400
    assert outcome(again) == "provider_rejected"
    # ... but a new connect works.
    assert (await bh.connect(user)).status_code == 200


async def test_a_user_who_declines_at_the_provider_gets_a_plain_400(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    callback = httpx.URL(await bh.start_connect(user))
    r = await bh.call(
        "GET",
        "/v1/broker/alpaca/callback",
        params={"state": callback.params["state"], "error": "access_denied"},
    )
    assert r.status_code == 400
    assert outcome(r) == "declined"
    assert "access_denied" not in r.text  # nothing the request carries is echoed


async def test_vault_down_at_callback_is_503_and_nothing_half_written(
    tmp_path: Path,
    identity_key: Any,
    alpaca_sim: AlpacaSim,
    postgres_dsn: str,
    nats_url: str,
) -> None:
    from raxx_devstack import servers

    bao = servers.start_openbao(tmp_path / "bao")
    own_vault = Vault(bao.url, bao.extra["token"])
    try:
        settings = make_settings(
            tmp_path, identity_key, alpaca_sim, own_vault, postgres_dsn, nats_url
        )
        async for h in open_harness(
            settings, identity_key, alpaca_sim, own_vault, postgres_dsn, nats_url
        ):
            user = new_user()
            await h.set_tier(user, "pro_plus", 1)
            callback = await h.start_connect(user)
            bao.stop()
            r = await h.call("GET", callback)
            assert r.status_code == 503
            assert outcome(r) == "vault_unavailable"
            assert r.headers["retry-after"].isdigit()
            assert h.rows("SELECT count(*) FROM bh_connections")[0][0] == 0
            status = await h.call("GET", "/v1/broker/alpaca", headers=h.auth(user))
            assert status.json()["connected"] is False
            ready = await h.call("GET", "/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "not_ready"
            assert ready.json()["checks"]["vault"]["ok"] is False
            outcomes = [
                o
                for (o,) in h.rows(
                    "SELECT outcome FROM bh_audit WHERE user_id = %s AND action = 'connect'", user
                )
            ]
            assert outcomes == ["vault_unavailable"]
    finally:
        bao.stop()


# ---------------------------------------------------------------------------------------------
# Use: orders are idempotent; the tier is checked on every use.
# ---------------------------------------------------------------------------------------------


async def test_orders_need_an_idempotency_key_and_refuse_its_reuse_for_another_order(
    bh: Harness,
) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    assert (await bh.connect(user)).status_code == 200
    order = {"symbol": "MSFT", "side": "buy", "qty": "2"}
    r = await bh.call("POST", "/v1/broker/alpaca/orders", json=order, headers=bh.auth(user))
    assert r.status_code == 400
    assert "Idempotency-Key" in r.json()["message"]
    headers = {**bh.auth(user), "Idempotency-Key": "k-1"}
    assert (
        await bh.call("POST", "/v1/broker/alpaca/orders", json=order, headers=headers)
    ).status_code == 201
    other = {**order, "qty": "3"}
    r = await bh.call("POST", "/v1/broker/alpaca/orders", json=other, headers=headers)
    assert r.status_code == 409
    # client_order_id in the body works as the key too, and concurrent retries place once.
    body = {**order, "client_order_id": "body-key"}
    results = await asyncio.gather(
        *[
            bh.call("POST", "/v1/broker/alpaca/orders", json=body, headers=bh.auth(user))
            for _ in range(4)
        ]
    )
    ok = [x for x in results if x.status_code in (200, 201)]
    assert [x.status_code for x in results].count(201) == 1
    assert len({x.json()["order"]["id"] for x in ok}) == 1


async def test_use_rechecks_the_tier_every_time(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    assert (await bh.connect(user)).status_code == 200
    # Tier drops in the projection without the event path (e.g. the consumer lagging).
    await bh.service.deps.store.apply_tier(user, "pro", 99, dt.datetime.now(dt.UTC))
    r = await bh.call("GET", "/v1/broker/alpaca/account", headers=bh.auth(user))
    assert r.status_code == 403
    order = {"symbol": "AAPL", "side": "buy", "qty": "1"}
    r = await bh.call(
        "POST",
        "/v1/broker/alpaca/orders",
        json=order,
        headers={**bh.auth(user), "Idempotency-Key": "x"},
    )
    assert r.status_code == 403


async def test_account_when_not_connected_is_409(bh: Harness) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    r = await bh.call("GET", "/v1/broker/alpaca/account", headers=bh.auth(user))
    assert r.status_code == 409
    assert r.json()["error"] == "not_connected"


async def test_health_ready_metrics(bh: Harness) -> None:
    assert (await bh.call("GET", "/healthz")).status_code == 200

    async def ready() -> bool:  # the tier consumer binds shortly after start
        return (await bh.call("GET", "/readyz")).status_code == 200

    await until(ready)
    text = (await bh.call("GET", "/metrics")).text
    assert "bh_up 1.0" in text
