"""tier-gate's HTTP surface on fakes: issuance, the kit's error body, /readyz, /metrics."""

from __future__ import annotations

import asyncio

from raxx_service_kit.http import Readiness

from .conftest import Running


async def test_dev_identity_then_token_issues_a_credential_for_the_stored_tier(
    running: Running,
) -> None:
    ident = await running.identity("alice", "pro")
    assert running.bus.published[-1].tier == "pro"  # announced as billing would
    resp = await running.http.post("/v1/tokens", headers={"Authorization": f"Bearer {ident}"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["tier"] == "pro"
    assert body["nats"]["creds"].startswith("-----BEGIN NATS USER JWT-----")
    assert set(body["subjects"]) >= {"subscribe", "publish", "interest", "inbox_prefix"}
    assert len(running.db.creds) == 1  # recorded before it was handed out
    jwks = (await running.http.get("/.well-known/jwks.json")).json()
    assert jwks["keys"][0]["alg"] == "EdDSA"


async def test_identity_errors_are_401_with_a_reason_in_the_kit_body(running: Running) -> None:
    resp = await running.http.post("/v1/tokens")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.json() == {
        "error": "unauthorized",
        "message": "Authorization: Bearer <identity JWT> is required",
        "reason": "missing",
    }
    resp = await running.http.post("/v1/tokens", headers={"Authorization": "Bearer a.b.c"})
    assert (resp.status_code, resp.json()["reason"]) == (401, "malformed")
    failures = running.runtime.metrics.registry.get_sample_value(
        "tg_issuance_failures_total", {"reason": "malformed"}
    )
    assert failures == 1.0


async def test_bad_bodies_are_400_and_unknown_routes_404_405(running: Running) -> None:
    ident = await running.identity("bob", "free")
    auth = {"Authorization": f"Bearer {ident}"}
    resp = await running.http.post("/v1/tokens", headers=auth, content="[1, 2")
    assert (resp.status_code, resp.json()["error"]) == (400, "bad_request")
    resp = await running.http.post("/v1/tokens", headers=auth, json={"public_key": "Ubogus"})
    assert (resp.status_code, resp.json()["error"]) == (400, "bad_request")
    resp = await running.http.post("/dev/identity", json={"user": 5})
    assert resp.status_code == 400  # the kit's one validation policy (never 422)
    assert set(resp.json()) == {"error", "message"}
    resp = await running.http.post("/dev/identity", json={"user": "x", "tier": "gold"})
    assert (resp.status_code, resp.json()["error"]) == (400, "bad_request")
    assert (await running.http.get("/nope")).json() == {
        "error": "not_found",
        "message": "no such route",
    }
    assert (await running.http.delete("/v1/tokens")).status_code == 405


async def test_public_key_of_another_user_is_409(running: Running) -> None:
    from tier_gate import natsjwt

    pub = natsjwt.public_key(natsjwt.new_seed("user"))
    for user, status in (("carol", 200), ("mallory", 409)):
        ident = await running.identity(user, "free")
        resp = await running.http.post(
            "/v1/tokens", headers={"Authorization": f"Bearer {ident}"}, json={"public_key": pub}
        )
        assert resp.status_code == status, resp.text
    assert resp.json()["error"] == "public_key_taken"


async def test_database_down_is_503_with_retry_after_and_readyz_not_ready(
    running: Running,
) -> None:
    ident = await running.identity("dave", "free")
    running.db.down = True
    resp = await running.http.post("/v1/tokens", headers={"Authorization": f"Bearer {ident}"})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    assert resp.json()["error"] == "database_unavailable"
    assert "fake" not in resp.json()["message"]  # the log detail stays in the log
    ready = await running.http.get("/readyz")
    assert ready.status_code == 503
    body = Readiness.model_validate(ready.json())
    assert body.status == "not_ready"
    assert body.checks["postgres"].critical
    assert not body.checks["postgres"].ok


async def test_readyz_is_the_kit_shape_and_nats_only_degrades(running: Running) -> None:
    ready = await running.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert set(body) == {"status", "checks"}
    assert {"postgres", "identity-keys", "nats", "nats-system", "openbao"} <= set(body["checks"])
    assert all(set(c) == {"ok", "reason", "critical"} for c in body["checks"].values())
    running.bus.up = False
    for _ in range(100):  # the probes run every 50 ms; bounded wait for the next result
        body = (await running.http.get("/readyz")).json()
        if not body["checks"]["nats"]["ok"]:
            break
        await asyncio.sleep(0.02)
    assert body["status"] == "degraded"
    assert "tier changes" in body["checks"]["nats"]["reason"]
    assert (await running.http.get("/healthz")).json() == {"status": "ok"}


async def test_metrics_are_the_apps_own(running: Running) -> None:
    ident = await running.identity("erin", "free")
    await running.http.post("/v1/tokens", headers={"Authorization": f"Bearer {ident}"})
    text = (await running.http.get("/metrics")).text
    assert 'tg_credentials_issued_total{tier="free"} 1.0' in text
    assert "tg_issuance_seconds_bucket" in text
