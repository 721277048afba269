"""broker-handoff's HTTP surface on fakes: the flow, error bodies, /readyz, AsyncAPI."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from raxx_contracts import TierChanged, encode, subjects
from raxx_contracts.timestamps import NanoDatetime

from .fakes import PROVIDER, REDIRECT, Component


async def set_tier(c: Component, user: str, tier: str, version: int = 1) -> None:
    event = TierChanged(
        user_id=user,
        tier=tier,
        version=version,
        timestamp=NanoDatetime.from_datetime(dt.datetime.now(dt.UTC)),
    )
    await c.broker.publish(encode(event), subjects.BILLING_TIER_CHANGED)


async def connect(c: Component, user: str, env: str = "paper") -> httpx.Response:
    start = await c.api.get(
        "/v1/broker/alpaca/connect",
        params={"consent": "true", "env": env},
        headers=c.auth(user),
    )
    assert start.status_code == 302, start.text
    authorize = httpx.URL(start.headers["location"])
    assert str(authorize).startswith(f"{PROVIDER}/oauth/authorize?")
    state = authorize.params["state"]
    return await c.api.get(REDIRECT, params={"state": state, "code": "the-code"})


def error_body(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert set(body) == {"error", "message"}, body
    return body


async def test_status_of_an_unknown_user_is_free_and_not_connected(comp: Component) -> None:
    r = await comp.api.get("/v1/broker/alpaca", headers=comp.auth("u-new"))
    assert r.status_code == 200
    assert r.json() == {"connected": False, "eligible": False, "tier": "free"}


async def test_identity_refusals_are_401_with_the_one_error_body(comp: Component) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not.a.jwt"},
        comp.auth("u1", aud="someone-else"),
        comp.auth("u1", exp=1),
    ):
        r = await comp.api.get("/v1/broker/alpaca", headers=headers)
        assert r.status_code == 401
        assert error_body(r)["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"


async def test_unknown_routes_methods_and_bad_input_share_the_error_body(comp: Component) -> None:
    assert error_body(await comp.api.get("/nothing"))["error"] == "not_found"
    assert error_body(await comp.api.put("/v1/broker/alpaca"))["error"] == "method_not_allowed"
    r = await comp.api.post(
        "/v1/broker/alpaca/orders",
        content=b"{not json",
        headers={**comp.auth("u1"), "Idempotency-Key": "k"},
    )
    assert r.status_code == 400
    assert error_body(r)["error"] == "bad_request"
    r = await comp.api.post(
        "/admin/v1/broker/revoke-all", headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401


async def test_connect_callback_and_disconnect_keep_the_token_only_in_vault(
    comp: Component,
) -> None:
    user = "u-flow"
    await set_tier(comp, user, "pro_plus")
    done = await connect(comp, user)
    assert done.status_code == 200, done.text
    assert '<meta name="raxx-outcome" content="connected">' in done.text
    [token] = comp.vault.tokens()
    status = (await comp.api.get("/v1/broker/alpaca", headers=comp.auth(user))).json()
    assert status["connected"] is True
    account = await comp.api.get("/v1/broker/alpaca/account", headers=comp.auth(user))
    assert account.json()["status"] == "ACTIVE"
    bye = await comp.api.delete("/v1/broker/alpaca", headers=comp.auth(user))
    assert bye.json()["provider_revoke"] == "revoked"
    assert comp.vault.tokens() == []
    assert comp.oauth.revoked == [token]
    metrics = (await comp.api.get("/metrics")).text
    everything = [done.text, status.__repr__(), account.text, bye.text, metrics]
    everything += [repr(a) for a in comp.store.audits] + [repr(c) for c in comp.store.connections]
    assert not [t for t in everything if token in t]
    assert [(e.kind, e.env) for e in comp.events if e.user_id == user] == [
        ("connected", "paper"),
        ("disconnected", "paper"),
    ]


async def test_connect_refusals(comp: Component) -> None:
    r = await comp.api.get("/v1/broker/alpaca/connect", headers=comp.auth("u-free"))
    assert r.status_code == 400
    assert "consent=true" in error_body(r)["message"]
    r = await comp.api.get(
        "/v1/broker/alpaca/connect", params={"consent": "true"}, headers=comp.auth("u-free")
    )
    assert r.status_code == 403
    assert error_body(r)["error"] == "not_eligible"
    await set_tier(comp, "u-pp", "pro_plus")
    r = await comp.api.get(
        "/v1/broker/alpaca/connect",
        params={"consent": "true", "redirect_uri": "https://evil.example/cb"},
        headers=comp.auth("u-pp"),
    )
    assert r.status_code == 400
    assert error_body(r)["error"] == "redirect_uri_not_allowed"


async def test_vault_down_at_the_callback_is_a_503_page_and_nothing_is_recorded(
    comp: Component,
) -> None:
    user = "u-vault"
    await set_tier(comp, user, "pro_plus")
    comp.vault.down = True
    r = await connect(comp, user)
    assert r.status_code == 503
    assert '<meta name="raxx-outcome" content="vault_unavailable">' in r.text
    assert int(r.headers["retry-after"]) > 0
    assert comp.store.connections == {}
    assert comp.oauth.revoked == ["tok-1"]  # the issued token was revoked at once


async def test_database_down_is_503_with_retry_after(comp: Component) -> None:
    comp.store.down = True
    r = await comp.api.get("/v1/broker/alpaca", headers=comp.auth("u1"))
    assert r.status_code == 503
    assert error_body(r)["error"] == "database_unavailable"
    assert int(r.headers["retry-after"]) >= 1


async def test_readyz_has_the_kit_shape(comp: Component) -> None:
    r = await comp.api.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert {"database", "vault", "nats", "task:reconciler"} <= set(body["checks"])
    assert all(set(c) == {"ok", "reason", "critical"} for c in body["checks"].values())
    comp.vault.down = True
    comp.store.down = True
    r = await comp.api.get("/readyz")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    body = r.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["vault"]["ok"] is False
    assert body["checks"]["database"]["ok"] is False
    assert (await comp.api.get("/healthz")).json() == {"status": "ok"}
    assert "bh_up 1.0" in (await comp.api.get("/metrics")).text


async def test_the_asyncapi_document_names_every_subject(comp: Component) -> None:
    r = await comp.api.get("/asyncapi.json")
    assert r.status_code == 200
    doc = r.json()
    addresses = {c["address"].split(":")[0] for c in doc["channels"].values()}
    assert subjects.BILLING_TIER_CHANGED in addresses  # subscribed
    assert subjects.BROKER_HANDOFF_EVENTS in addresses  # published
    schemas = set(doc["components"]["schemas"])
    assert any("TierChanged" in s for s in schemas)
    assert any("HandoffEvent" in s for s in schemas)
    assert (await comp.api.get("/docs/asyncapi")).status_code == 200
