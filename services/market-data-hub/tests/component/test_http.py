"""The hub's HTTP surface on `create_app` with fakes: tokens, error bodies, /readyz shape."""

from __future__ import annotations

from tests.support.hub_fakes import Env


async def test_no_token_is_401_with_the_one_error_body(env: Env) -> None:
    r = await env.client.get("/v1/stocks/AAPL/quotes/latest")
    assert r.status_code == 401
    assert set(r.json()) == {"error", "message"}
    assert r.json()["error"] == "unauthorized"
    assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_forged_expired_and_wrong_audience_tokens_are_refused_with_a_reason(
    env: Env, tmp_path: object
) -> None:
    good = env.tokens.token("u1", "pro")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    cases = {
        forged: "bad_signature",
        env.tokens.token("u1", "pro", ttl=-120): "expired",
        env.tokens.token("u1", "pro", aud="someone-else"): "wrong_aud",
        "not.a.jwt": "malformed",
    }
    for token, reason in cases.items():
        r = await env.client.get(
            "/v1/stocks/AAPL/quotes/latest", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 401, (reason, r.text)
        assert r.json()["error"] == "unauthorized"
        assert r.json()["reason"] == reason


async def test_unknown_tier_is_refused(env: Env) -> None:
    r = await env.client.get(
        "/v1/stocks/AAPL/quotes/latest", headers=env.tokens.headers("u1", "platinum")
    )
    assert r.status_code == 401
    assert set(r.json()) == {"error", "message"}


async def test_a_valid_token_reaches_the_endpoint(env: Env) -> None:
    r = await env.client.get(
        "/v1/stocks/AAPL/quotes/latest", headers=env.tokens.headers("u1", "pro")
    )
    assert r.status_code == 404, r.text  # the fake gateway has no quote
    assert r.json() == {"error": "not_found", "message": "no quote for AAPL on the rt path"}
    assert env.rest.calls == ["latest_quote"]
    r = await env.client.get(
        "/v1/stocks/AAPL/quotes/latest", headers=env.tokens.headers("u2", "free")
    )
    assert r.status_code == 404, r.text
    assert env.rest.calls[-1] == "quotes"  # free: the delayed path


async def test_bad_input_is_400_bad_request_for_domain_and_validation_errors(env: Env) -> None:
    pro = env.tokens.headers("u1", "pro")
    r = await env.client.get("/v1/stocks/aapl!/quotes/latest", headers=pro)
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"
    r = await env.client.get("/v1/stocks/AAPL/bars", params={"limit": "many"}, headers=pro)
    assert r.status_code == 400  # the kit's one validation policy (was 422)
    assert set(r.json()) == {"error", "message"}
    assert r.json()["error"] == "bad_request"
    r = await env.client.get("/v1/nothing")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


async def test_the_tier_rate_limit_answers_429_with_retry_after(env: Env) -> None:
    free = env.tokens.headers("u3", "free")
    statuses = []
    for _ in range(40):
        r = await env.client.get("/v1/stocks/AAPL/quotes/latest", headers=free)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"] == "rate_limited"
            assert int(r.headers["Retry-After"]) >= 1
            break
    assert statuses[-1] == 429


async def test_readyz_is_the_kits_shape_with_role_and_alpaca(env: Env) -> None:
    r = await env.client.get("/readyz")
    assert r.status_code == 503  # not started: no NATS connection
    body = r.json()
    assert body["status"] == "not_ready"
    assert set(body) == {"status", "checks", "role", "alpaca"}
    assert body["role"] == "follower"
    assert body["alpaca"]["plan"] == "basic"
    assert body["checks"]["nats"] == {"ok": False, "reason": "not connected yet", "critical": True}
    for check in body["checks"].values():
        assert set(check) == {"ok", "reason", "critical"}
    assert r.headers["Retry-After"]


async def test_healthz_and_metrics(env: Env) -> None:
    r = await env.client.get("/healthz")
    assert r.json()["status"] in {"ok", "wedged"}
    await env.client.get("/v1/stocks/AAPL/quotes/latest")  # one 401
    text = (await env.client.get("/metrics")).text
    assert 'mdh_http_requests_total{route="api",status="401"} 1.0' in text


async def test_asyncapi_names_every_subject_the_control_plane_uses(env: Env) -> None:
    doc = (await env.client.get("/asyncapi.json")).json()
    bound = {c["bindings"]["nats"]["subject"] for c in doc["channels"].values()}
    assert bound == {"md.ctl.interest.*.*"}  # the one subscriber; data publishing is raw nats
    (channel,) = doc["channels"].values()
    assert "_INBOX_U" in channel["description"]
