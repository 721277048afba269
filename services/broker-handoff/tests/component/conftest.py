"""The component fixture: `create_app` on the fakes of `fakes.py`, TestNatsBroker, ASGI."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from broker_handoff.app import create_app
from broker_handoff.deps import Deps
from faststream.nats import TestNatsBroker
from joserfc.jwk import KeySet, OKPKey
from raxx_contracts import HandoffEvent, subjects
from raxx_service_kit.clock import ManualClock
from raxx_service_kit.jwt import JwtVerifier

from .fakes import (
    Component,
    FakeOAuth,
    FakeStore,
    FakeTrading,
    FakeVault,
    component_settings,
)


@pytest.fixture
async def comp() -> AsyncIterator[Component]:
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "comp"}, private=True)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    store, vault, oauth = FakeStore(clock), FakeVault(), FakeOAuth()
    settings = component_settings()
    deps = Deps(
        store=store,  # type: ignore[arg-type]
        vault=vault,  # type: ignore[arg-type]
        oauth=oauth,  # type: ignore[arg-type]
        trading=FakeTrading(),  # type: ignore[arg-type]
        identity=JwtVerifier(
            issuer=settings.identity_issuer,
            audience=settings.identity_audience,
            keys=KeySet([key]),
        ),
        clock=clock,
    )
    app = create_app(settings, deps)
    events: list[HandoffEvent] = []

    @app.state.broker.subscriber(subjects.BROKER_HANDOFF_EVENTS)
    async def seen(event: HandoffEvent) -> None:
        events.append(event)

    async with (
        TestNatsBroker(app.state.broker) as broker,
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1:8083",
            follow_redirects=False,
        ) as api,
    ):
        yield Component(app, api, store, vault, oauth, clock, key, broker, events)
