"""broker-handoff against a hostile client (issue 10.6, 10.7): real OpenBao, PostgreSQL, NATS.

- forged key ids cannot make every request refetch the identity JWKS;
- error replies are a code and a fixed message, whatever the request carried;
- the consent form cannot be posted from another site, and a one-time link works once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from raxx_service_kit.jwt import sign

from tests.integration import test_broker_handoff_flow as flow
from tests.integration.fixtures.servers import AlpacaSim, Vault
from tests.integration.test_broker_handoff_flow import (
    Harness,
    make_settings,
    new_user,
    open_harness,
    outcome,
)

pytestmark = pytest.mark.integration

bh = flow.bh
identity_key = flow.identity_key


class JwksServer:
    """A JWKS endpoint over real HTTP that counts how often it is fetched."""

    def __init__(self, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        owner = self
        self.fetches = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server(identity_key: Any) -> Iterator[JwksServer]:
    server = JwksServer({"keys": [identity_key.as_dict(private=False)]})
    yield server
    server.close()


@pytest.fixture
async def bh_http_jwks(
    tmp_path: Path,
    identity_key: Any,
    alpaca_sim: AlpacaSim,
    vault: Vault,
    postgres_dsn: str,
    nats_url: str,
    jwks_server: JwksServer,
) -> AsyncIterator[Harness]:
    settings = make_settings(
        tmp_path,
        identity_key,
        alpaca_sim,
        vault,
        postgres_dsn,
        nats_url,
        identity_jwks_url=jwks_server.url,
    )
    async for h in open_harness(settings, identity_key, alpaca_sim, vault, postgres_dsn, nats_url):
        yield h


def forged_token(kid: str) -> str:
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256"}, private=True)
    now = int(time.time())
    claims = {"iss": "raxx-identity", "aud": "raxx", "sub": "x", "iat": now, "exp": now + 300}
    return sign(key, claims, algorithm="RS256")


async def test_unknown_key_ids_do_not_refetch_the_jwks_each_time(
    bh_http_jwks: Harness, jwks_server: JwksServer
) -> None:
    h = bh_http_jwks
    user = new_user()
    assert (await h.call("GET", "/v1/broker/alpaca", headers=h.auth(user))).status_code == 200
    before = jwks_server.fetches
    assert before == 1
    tokens = [forged_token(f"kid-{uuid.uuid4().hex[:8]}") for _ in range(3)]
    for i in range(30):
        r = await h.call(
            "GET",
            "/v1/broker/alpaca",
            headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
        )
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
    # One refetch at most in the throttle window (30 s by default), not one per request.
    assert jwks_server.fetches - before <= 1
    # Genuine tokens still verify.
    assert (await h.call("GET", "/v1/broker/alpaca", headers=h.auth(user))).status_code == 200


async def test_error_replies_are_a_code_and_a_fixed_message(bh: Harness) -> None:
    user = new_user()
    probes = [
        await bh.call("GET", "/v1/broker/nothing-here"),
        await bh.call("PUT", "/v1/broker/alpaca"),
        await bh.call("GET", "/v1/broker/alpaca", headers={"Authorization": "Bearer x.y.z"}),
        await bh.call(
            "POST",
            "/v1/broker/alpaca/orders",
            content=b"{not json",
            headers={**bh.auth(user), "Idempotency-Key": "k"},
        ),
        await bh.call(
            "GET",
            "/v1/broker/alpaca/connect",
            params={"consent": "true", "env": "<script>x</script>"},
            headers=bh.auth(user),
        ),
    ]
    for r in probes:
        body = r.json()
        assert set(body) == {"error", "message"}, (r.status_code, body)
        for leak in ("Traceback", "Exception", "Error(", "<script>", "http://", "psycopg"):
            assert leak not in body["message"]
    # A callback with attacker-chosen text echoes none of it, in a page, not JSON.
    r = await bh.call(
        "GET",
        "/v1/broker/alpaca/callback",
        params={"state": "forged", "error": "<script>alert(1)</script>", "code": "c"},
    )
    assert outcome(r) == "invalid_state"
    assert "<script>" not in r.text
    assert "alert(1)" not in r.text


async def test_consent_cannot_be_posted_from_another_site_and_a_link_works_once(
    bh: Harness,
) -> None:
    user = new_user()
    await bh.set_tier(user, "pro_plus", 1)
    made = await bh.call("POST", "/v1/broker/alpaca/connect-link", headers=bh.auth(user))
    assert made.status_code == 201, made.text
    link = httpx.URL(made.json()["url"]).params["link"]
    form = {"link": link, "decision": "connect"}
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
    ):
        r = await bh.call("POST", "/v1/broker/alpaca/consent", data=form, headers=headers)
        assert r.status_code == 403
        assert outcome(r) == "cross_site_request"
        assert "set-cookie" not in r.headers
    # The refused posts did not use the link up; our own page's post does, once.
    own = {"Origin": "http://127.0.0.1:8083", "Sec-Fetch-Site": "same-origin"}
    r = await bh.call("POST", "/v1/broker/alpaca/consent", data=form, headers=own)
    assert r.status_code == 303
    assert "bh_flow_" in r.headers["set-cookie"]
    r = await bh.call("POST", "/v1/broker/alpaca/consent", data=form, headers=own)
    assert r.status_code == 400
    assert outcome(r) == "invalid_link"


async def test_links_need_an_eligible_identity_and_pages_cannot_be_framed(bh: Harness) -> None:
    free = new_user()
    r = await bh.call("POST", "/v1/broker/alpaca/connect-link", headers=bh.auth(free))
    assert r.status_code == 403
    assert r.json()["error"] == "not_eligible"
    assert (await bh.call("POST", "/v1/broker/alpaca/connect-link")).status_code == 401
    page = await bh.call("GET", "/v1/broker/alpaca/consent", params={"link": "guess"})
    assert page.status_code == 400
    assert outcome(page) == "invalid_link"
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
