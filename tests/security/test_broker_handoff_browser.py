"""The OAuth handoff in a real browser (issue 10.7): headless Chromium against real servers.

broker-handoff runs as its own process (`python -m broker_handoff`, uvicorn, its access log in a
file), with PostgreSQL, OpenBao, nats-server and an alpaca-sim whose authorize endpoint approves
at once (as a victim already logged in at Alpaca would). The binding cookie keeps its default,
Secure: Chromium accepts Secure cookies from http://127.0.0.1, and the flow only completes if it
did.

Chromium comes from the OS (`apt-get install chromium`), never downloaded: `RAXX_CHROMIUM` names
the executable, else `chromium`, `chromium-browser` or `google-chrome` on PATH. Without one, the
module is skipped and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.async_api import Browser, Page, async_playwright
from psycopg import sql
from raxx_devstack import servers
from raxx_devstack.ports import free_port
from raxx_devstack.procs import ManagedProcess, http_ready

from tests.integration.fixtures.servers import Vault
from tests.integration.test_broker_handoff_flow import (
    ensure_billing_stream,
    seed_vault,
    stored_grants,
    until,
)

pytestmark = pytest.mark.integration

PRO_PLUS = "pro_plus"


def chromium_path() -> str | None:
    """The system Chromium: RAXX_CHROMIUM, else the usual names on PATH."""
    if explicit := os.environ.get("RAXX_CHROMIUM"):
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


CHROMIUM = chromium_path()
if CHROMIUM is None:
    pytest.skip(
        "no Chromium executable (set RAXX_CHROMIUM or install the OS package `chromium`); "
        "the browser tests of the OAuth handoff need one",
        allow_module_level=True,
    )


@dataclass
class Live:
    """broker-handoff as a process, and what it talks to."""

    url: str
    sim_url: str
    dsn: str
    vault: Vault
    prefix: str
    nats_url: str
    key: Any
    log_path: Path

    def jwt(self, user: str) -> str:
        from raxx_service_kit.jwt import sign

        now = int(time.time())
        claims = {"iss": "raxx-identity", "aud": "raxx", "sub": user, "iat": now, "exp": now + 300}
        return sign(self.key, claims, algorithm="RS256")

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt(user)}"}

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return list(conn.execute(query.encode(), params).fetchall())

    async def set_tier(self, user: str, tier: str) -> None:
        import datetime as dt

        import nats
        from raxx_contracts import TierChanged, encode, subjects
        from raxx_contracts.timestamps import NanoDatetime

        nc = await nats.connect(self.nats_url)
        try:
            event = TierChanged(
                user_id=user,
                tier=tier,
                version=1,
                timestamp=NanoDatetime.from_datetime(dt.datetime.now(dt.UTC)),
            )
            await nc.jetstream().publish(subjects.BILLING_TIER_CHANGED, encode(event))
        finally:
            await nc.close()

        async def applied() -> bool:
            return bool(self.rows("SELECT 1 FROM bh_user_tiers WHERE user_id = %s", user))

        await until(applied, within=20)

    async def status(self, user: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as api:
            resp = await api.get("/v1/broker/alpaca", headers=self.auth(user))
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str, vault: Vault, nats_url: str
) -> Iterator[Live]:
    from joserfc.jwk import RSAKey

    state = tmp_path_factory.mktemp("bh-browser")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    redirect = f"{base}/v1/broker/alpaca/callback"
    sim = servers.start_alpaca_sim(state / "sim", env={"SIM_OAUTH_REDIRECT_URIS": redirect})
    name = f"sec_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
    key = RSAKey.generate_key(2048, parameters={"kid": "sec-key", "alg": "RS256"}, private=True)
    jwks = state / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    prefix = f"raxx/broker-handoff-sec/{uuid.uuid4().hex}"
    seed_vault(vault, prefix)
    import asyncio

    asyncio.run(ensure_billing_stream(nats_url))
    env = {
        "BH_HTTP_PORT": str(port),
        "BH_DATABASE_URL": dsn,
        "BH_NATS_URL": nats_url,
        "BH_VAULT__ADDR": vault.addr,
        "BH_VAULT__TOKEN": vault.token,
        "BH_VAULT__PREFIX": prefix,
        "BH_ALPACA_OAUTH_URL": sim.url,
        "BH_ALPACA_TRADING_URL": sim.url,
        "BH_REDIRECT_URI": redirect,
        "BH_ALLOWED_REDIRECT_URIS": json.dumps([redirect]),
        "BH_IDENTITY_JWKS_URL": str(jwks),
        "BH_TIER_CONSUMER_DURABLE": f"bh-sec-{uuid.uuid4().hex[:10]}",
    }
    log_path = state / "broker-handoff.log"
    proc = ManagedProcess(
        "broker-handoff", [sys.executable, "-m", "broker_handoff"], log_path, env=env
    ).start()
    try:
        proc.wait_ready(http_ready(f"{base}/readyz"), timeout=60)
        yield Live(base, sim.url, dsn, vault, prefix, nats_url, key, log_path)
    finally:
        proc.stop()
        sim.stop()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM is not None
    async with async_playwright() as pw:
        # Root in a container cannot use Chromium's sandbox; nothing here is untrusted content.
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False
        )
        try:
            yield launched
        finally:
            await launched.close()


async def page_outcome(page: Page) -> str:
    value = await page.get_attribute('meta[name="raxx-outcome"]', "content")
    assert value is not None
    return value


def new_user(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:10]}"


async def test_a_person_connects_from_a_one_time_link_with_explicit_consent(
    live: Live, browser: Browser
) -> None:
    user = new_user("alice")
    await live.set_tier(user, PRO_PLUS)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        made = await api.post(
            "/v1/broker/alpaca/connect-link", params={"env": "paper"}, headers=live.auth(user)
        )
    assert made.status_code == 201, made.text
    link = made.json()["url"]
    assert link.startswith(f"{live.url}/v1/broker/alpaca/consent?link=")

    context = await browser.new_context()
    page = await context.new_page()
    set_cookies: list[str] = []

    async def on_response(response: Any) -> None:
        header = await response.header_value("set-cookie")
        if header and "bh_flow_" in header and "Max-Age=0" not in header:
            set_cookies.append(header)

    page.on("response", on_response)
    # Opening the link shows the consent step; it connects nothing by itself.
    await page.goto(link)
    assert await page_outcome(page) == "consent"
    text = await page.inner_text("main")
    assert "place orders" in text
    assert user in text
    assert (await live.status(user))["connected"] is False

    await page.click("button[value=connect]")
    await page.wait_for_selector('meta[name="raxx-outcome"][content="connected"]', state="attached")
    assert "connected" in (await page.inner_text("h1")).lower()
    assert page.url.startswith(f"{live.url}/v1/broker/alpaca/callback")

    # The cookie that bound the flow: HttpOnly, SameSite=Lax, Secure (and Chromium kept it on
    # http://127.0.0.1, or the callback would have refused).
    assert set_cookies, "the consent answer set no binding cookie"
    attrs = set_cookies[0].lower()
    assert "httponly" in attrs
    assert "samesite=lax" in attrs
    assert "secure" in attrs
    # Gone once used.
    assert not [c for c in await context.cookies() if c["name"].startswith("bh_flow_")]

    status = await live.status(user)
    assert status["connected"] is True
    assert status["env"] == "paper"
    assert [u for u, _ in stored_grants(live.vault, live.prefix)].count(user) == 1

    # The link worked once.
    await page.goto(link)
    assert await page_outcome(page) == "invalid_link"
    await context.close()

    # The process log (the kit's serve: no access log) has none of the one-time code, state
    # or link; it does log the service's own lines.
    log = live.log_path.read_text()
    assert "broker_handoff" in log or "raxx_service_kit" in log
    for secret_param in ("code=", "state=", "link="):
        assert secret_param not in log


async def test_a_victims_browser_landing_on_an_attackers_callback_connects_nothing(
    live: Live, browser: Browser
) -> None:
    attacker = new_user("mallory")
    await live.set_tier(attacker, PRO_PLUS)
    # The attacker starts the flow with their own credentials and keeps the authorize URL.
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        started = await api.get(
            "/v1/broker/alpaca/connect",
            params={"consent": "true", "env": "live"},
            headers=live.auth(attacker),
        )
    assert started.status_code == 302, started.text
    authorize = started.headers["location"]
    assert authorize.startswith(f"{live.sim_url}/oauth/authorize?")

    # The victim, logged in at Alpaca, opens it: Alpaca approves and redirects the victim's
    # browser (which never talked to Raxx) to the callback.
    victim = await browser.new_context()
    page = await victim.new_page()
    response = await page.goto(authorize)
    assert response is not None
    assert page.url.startswith(f"{live.url}/v1/broker/alpaca/callback")
    # Before the fix, this is where the attacker's Raxx account got the victim's Alpaca account.
    assert (await live.status(attacker))["connected"] is False
    assert response.status == 403
    assert await page_outcome(page) == "binding_mismatch"
    assert "different browser" in await page.inner_text("main")
    await victim.close()

    # The flow was bound to the attacker's own client, not to the victim's browser.
    assert "bh_flow_" in started.headers["set-cookie"]
    # Nothing is connected to the attacker's account, nothing is kept, and it is on record.
    assert attacker not in [u for u, _ in stored_grants(live.vault, live.prefix)]
    assert live.rows("SELECT 1 FROM bh_grants WHERE user_id = %s", attacker) == []
    audit = live.rows(
        "SELECT action, outcome, detail FROM bh_audit WHERE user_id = %s ORDER BY id", attacker
    )
    assert ("callback", "binding_mismatch", {"env": "live", "cookie": "missing"}) in audit
    # The state is spent: the attacker cannot complete it afterwards with their own cookie.
    assert live.rows("SELECT count(*) FROM bh_oauth_states WHERE user_id = %s", attacker) == [(0,)]


async def test_a_declined_authorization_can_be_retried_from_its_page(
    live: Live, browser: Browser
) -> None:
    user = new_user("bob")
    await live.set_tier(user, PRO_PLUS)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        link = (await api.post("/v1/broker/alpaca/connect-link", headers=live.auth(user))).json()[
            "url"
        ]
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(link)

    # Stand in for "Deny" at Alpaca: the consent answer is sent for real (its cookie kept), and
    # Alpaca's redirect comes back with error=access_denied instead of a code.
    async def deny(route: Any) -> None:
        answer = await route.fetch(max_redirects=0)
        state = httpx.URL(answer.headers["location"]).params["state"]
        callback = f"{live.url}/v1/broker/alpaca/callback"
        await route.fulfill(
            status=303,
            headers={
                "location": f"{callback}?error=access_denied&state={state}",
                "set-cookie": answer.headers["set-cookie"],
            },
        )

    await page.route(f"{live.url}/v1/broker/alpaca/consent", deny)
    await page.click("button[value=connect]")
    await page.wait_for_selector('meta[name="raxx-outcome"][content="declined"]', state="attached")
    await page.unroute(f"{live.url}/v1/broker/alpaca/consent")
    assert (await live.status(user))["connected"] is False
    await page.click("form[action='/v1/broker/alpaca/retry'] button")
    await page.wait_for_selector('meta[name="raxx-outcome"][content="connected"]', state="attached")
    assert (await live.status(user))["connected"] is True
    await context.close()
