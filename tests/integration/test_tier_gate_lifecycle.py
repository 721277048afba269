"""Credential lifecycle against the real server: expiry, forgery, downgrade revocation."""

from __future__ import annotations

import asyncio
import time

import httpx
import nats
import nats.errors
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from nats.aio.client import RawCredentials
from raxx_contracts import AssetClass, Channel, subjects
from raxx_service_kit.nats import creds_text
from tier_gate import natsjwt

from tests.integration.fixtures_tier_gate import (
    StackFactory,
    TierGateStack,
    Violations,
    tier_gate_stack,
    tier_gate_stack_factory,
    unique_user,
)

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack", "tier_gate_stack_factory"]

AAPL_RT = subjects.rt(AssetClass.STOCKS, Channel.QUOTES, "AAPL")


async def _refused(stack: TierGateStack, creds: str) -> str:
    try:
        nc = await stack.connect_user(creds, connect_timeout=2)
    except Exception as exc:  # nats-py raises several types here
        return f"{exc} {exc!r}"
    await nc.close()
    pytest.fail("the server accepted the connection")


async def test_credential_is_cut_off_at_expiry_and_refused_afterwards(
    tier_gate_stack_factory: StackFactory,
) -> None:
    stack = await tier_gate_stack_factory(credential_ttl=2)
    tok = await stack.token(unique_user(), "pro")
    assert tok["ttl_seconds"] == 2
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    nc = await stack.connect_user(tok["nats"]["creds"], closed_cb=on_closed)
    await asyncio.wait_for(closed.wait(), 6)
    assert "expired" in str(nc.last_error).lower() or nc.is_closed
    await asyncio.sleep(1.1)
    assert "uthorization" in await _refused(stack, tok["nats"]["creds"])


async def test_forged_and_self_signed_credentials_are_refused(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    user = unique_user()
    tok = await stack.token(user, "free")
    claims = natsjwt.decode(tok["nats"]["jwt"])
    seed = tok["nats"]["seed"]
    user_kp = natsjwt.keypair(seed)
    # 1. self-signed: the user signs its own JWT claiming the MD account
    self_signed = natsjwt.encode(claims, user_kp)
    # 2. forged: a fresh account key nobody registered signs a pro_plus-looking JWT
    rogue = natsjwt.keypair(natsjwt.new_seed("account"))
    forged = natsjwt.encode(claims, rogue)
    # 3. tampered: real signature, payload edited (exp pushed out)
    head, _body, sig = tok["nats"]["jwt"].split(".")
    edited = dict(claims, exp=claims["exp"] + 86400)
    tampered_body = natsjwt.encode(edited, user_kp).split(".")[1]
    tampered = f"{head}.{tampered_body}.{sig}"
    for bad in (self_signed, forged, tampered):
        assert "uthorization" in await _refused(stack, creds_text(bad, seed))
    # and the genuine one still works
    nc = await stack.connect_user(tok["nats"]["creds"])
    await nc.close()


async def test_downgrade_cuts_live_realtime_subscription_within_five_seconds(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    user = unique_user()
    await stack.publish_tier(user, "pro", version=1)
    for _ in range(50):
        tok = await stack.token(user)
        if tok["tier"] == "pro":
            break
        await asyncio.sleep(0.1)
    assert tok["tier"] == "pro"
    other = await stack.token(unique_user(), "pro")
    got: list[bytes] = []
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    nc = await stack.connect_user(tok["nats"]["creds"], closed_cb=on_closed)
    bystander = await stack.connect_user(other["nats"]["creds"])

    async def cb(msg: nats.aio.msg.Msg) -> None:
        got.append(msg.data)

    await nc.subscribe(AAPL_RT, cb=cb)
    await nc.flush()
    hub = await stack.hub_publisher()
    await hub.publish(AAPL_RT, b"1")
    await hub.flush()
    await asyncio.sleep(0.2)
    assert got == [b"1"]

    started = time.monotonic()
    await stack.publish_tier(user, "free", version=2)
    await asyncio.wait_for(closed.wait(), 5)
    elapsed = time.monotonic() - started
    assert "revoked" in str(nc.last_error).lower(), nc.last_error
    await hub.publish(AAPL_RT, b"2")
    await hub.flush()
    await asyncio.sleep(0.2)
    assert got == [b"1"]
    assert elapsed < 5
    assert bystander.is_connected  # other users unaffected
    # the old credential stays dead; a new one is free
    assert "uthorization" in await _refused(stack, tok["nats"]["creds"])
    fresh = await stack.token(user)
    assert fresh["tier"] == "free"
    metrics = (await stack.http.get("/metrics")).text
    assert "tg_credentials_revoked_total 1.0" in metrics
    await bystander.close()
    await hub.close()


async def test_billing_events_resolve_duplicates_and_reordering_by_version(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    user = unique_user()
    assert (await stack.token(user))["tier"] == "free"  # unknown user
    await stack.publish_tier(user, "pro_plus", version=5)
    await stack.publish_tier(user, "free", version=3)  # older: ignored
    await stack.publish_tier(user, "pro_plus", version=5)  # duplicate: ignored
    await stack.publish_tier(user, "bogus", version=9)  # unknown tier: dropped
    for _ in range(50):
        metrics = (await stack.http.get("/metrics")).text
        if 'reason="unknown_tier"' in metrics:
            break
        await asyncio.sleep(0.1)
    assert "tg_billing_events_applied_total 1.0" in metrics
    assert 'tg_billing_events_ignored_total{reason="stale_version"} 2.0' in metrics
    assert (await stack.token(user))["tier"] == "pro_plus"


async def test_revocations_survive_tier_gate_and_nats_restarts(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    user = unique_user()
    tok = await stack.token(user, "pro")
    await stack.identity(user, "free")  # dev route: downgrade, revokes the pro credential
    assert "uthorization" in await _refused(stack, tok["nats"]["creds"])
    await stack.stop_tier_gate()
    stack.restart_nats()  # MEMORY resolver: the server forgot the pushed revocations
    await stack.start_tier_gate()  # ... and tier-gate re-pushes them at start
    assert "uthorization" in await _refused(stack, tok["nats"]["creds"])


async def test_identity_errors_give_401_with_a_reason(tier_gate_stack: TierGateStack) -> None:
    stack = tier_gate_stack
    good = await stack.identity(unique_user(), "free")
    head, body, sig = good.split(".")
    bad_sig = f"{head}.{body}.{sig[:-4]}AAAA"
    from tier_gate import identity, keys
    from tier_gate.adapters.vault import Vault

    key = keys.okp_from_secret(await Vault(stack.settings.vault).read(keys.PATH_DEV_IDENTITY), "")
    wrong_aud = identity.dev_identity_token(
        key, user_id="x", tier="free", issuer="raxx-identity", audience="someone-else"
    )
    expired = identity.dev_identity_token(
        key, user_id="x", tier="free", issuer="raxx-identity", audience="raxx", ttl=-120
    )
    # ttl=-120: beyond the kit verifier's 30 s clock-skew leeway.
    cases = {bad_sig: "bad_signature", wrong_aud: "wrong_aud", expired: "expired",
             "garbage": "malformed"}  # fmt: skip
    for token, reason in cases.items():
        resp = await stack.http.post("/v1/tokens", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"] == "unauthorized"
        assert resp.json()["reason"] == reason
    resp = await stack.http.post("/v1/tokens")
    assert resp.status_code == 401
    assert resp.json()["reason"] == "missing"


async def test_client_supplied_public_key_gets_only_a_jwt_that_works_with_its_seed(
    tier_gate_stack: TierGateStack,
) -> None:
    stack = tier_gate_stack
    seed = natsjwt.new_seed("user")
    tok = await stack.token(unique_user(), "free", public_key=natsjwt.public_key(seed))
    assert tok["nats"]["seed"] is None
    assert tok["nats"]["creds"] is None
    assert natsjwt.decode(tok["nats"]["jwt"])["sub"] == natsjwt.public_key(seed)
    nc = await nats.connect(
        stack.nats_url,
        user_credentials=RawCredentials(creds_text(tok["nats"]["jwt"], seed)),
        allow_reconnect=False,
    )
    await nc.close()
    ident = await stack.identity(unique_user(), "free")
    resp = await stack.http.post(
        "/v1/tokens", headers={"Authorization": f"Bearer {ident}"}, json={"public_key": "Ubogus"}
    )
    assert resp.status_code == 400


async def test_http_token_verifies_against_published_jwks(tier_gate_stack: TierGateStack) -> None:
    stack = tier_gate_stack
    user = unique_user()
    tok = await stack.token(user, "pro")
    jwks = (await stack.http.get("/.well-known/jwks.json")).json()
    import warnings

    from joserfc.errors import SecurityWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        decoded = jwt.decode(tok["http_token"], KeySet.import_key_set(jwks), algorithms=["EdDSA"])
    assert decoded.claims["aud"] == "raxx-md-http"
    assert decoded.claims["iss"] == "raxx-tier-gate"
    assert decoded.claims["sub"] == user
    assert decoded.claims["tier"] == "pro"
    assert decoded.claims["exp"] > time.time()
    dev = await stack.http.get("/dev/identity/jwks.json")
    assert dev.status_code == 200


async def test_init_is_idempotent_and_dev_admin_reads_everything(
    tier_gate_stack: TierGateStack,
) -> None:
    from raxx_contracts import default_policy
    from tier_gate.adapters.vault import Vault
    from tier_gate.bootstrap import InitOptions, run_init

    stack = tier_gate_stack
    again = await run_init(
        Vault(stack.settings.vault), default_policy(),
        InitOptions(dev=True, out=stack.out / "again", nats_listen="127.0.0.1:1"),
    )  # fmt: skip
    assert (again.operator, again.md_account) == (stack.init.operator, stack.init.md_account)
    admin = await stack.service("dev-admin")
    info = await admin.jetstream().stream_info(subjects.BILLING_STREAM)
    assert info.config.name == subjects.BILLING_STREAM
    await admin.close()


async def test_readyz_and_metrics_are_served(tier_gate_stack: TierGateStack) -> None:
    stack = tier_gate_stack
    await stack.token(unique_user(), "free")
    ready = (await stack.http.get("/readyz")).json()
    assert ready["status"] == "ready", ready
    assert {"postgres", "identity-keys", "nats", "nats-system", "openbao"} <= set(ready["checks"])
    text = (await stack.http.get("/metrics")).text
    assert 'tg_credentials_issued_total{tier="free"} 1.0' in text
    assert "tg_issuance_seconds_bucket" in text
    assert "tg_revocation_pushes_total" in text
    _ = (httpx, nats.errors, Violations)


async def test_the_durable_the_old_pull_loop_created_is_resumed_after_the_upgrade(
    tier_gate_stack: TierGateStack,
) -> None:
    """Upgrading must not lose tier changes published while tier-gate was down: the pre-kit
    pull loop made the durable with this config, and the faststream consumer picks it up (same
    name, stream bound not re-declared) rather than starting a fresh one."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    stack = tier_gate_stack
    durable = stack.settings.billing_durable
    await stack.stop_tier_gate()
    nc = await stack.service("tier-gate")
    try:
        js = nc.jetstream()
        await js.delete_consumer(subjects.BILLING_STREAM, durable)
        stream_before = (await js.stream_info(subjects.BILLING_STREAM)).config
        old = await js.pull_subscribe(  # exactly what the old `billing_batches` did
            subjects.BILLING_TIER_CHANGED,
            durable=durable,
            stream=subjects.BILLING_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=20,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        await old.unsubscribe()  # (a durable outlives its subscription)
    finally:
        await nc.close()
    user = unique_user()
    await stack.publish_tier(user, "pro", version=7)  # while no tier-gate runs
    await stack.start_tier_gate()
    for _ in range(100):
        metrics = (await stack.http.get("/metrics")).text
        if "tg_billing_events_applied_total 1.0" in metrics:
            break
        await asyncio.sleep(0.1)
    assert "tg_billing_events_applied_total 1.0" in metrics
    assert (await stack.token(user))["tier"] == "pro"
    nc = await stack.service("dev-admin")
    try:
        js = nc.jetstream()
        names = [c.name for c in await js.consumers_info(subjects.BILLING_STREAM)]
        assert names.count(durable) == 1
        assert (await js.stream_info(subjects.BILLING_STREAM)).config == stream_before
    finally:
        await nc.close()
