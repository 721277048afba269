"""The NATS server, not md-replay, keeps a user to its own replay subject and its own inbox,
and md-replay's own identity can do its job with its least rights."""

from __future__ import annotations

import asyncio
import time

import pytest
from md_replay.app import Deps, create_app
from md_replay.archive import Archiver, read_manifest
from md_replay.domain import session_date
from md_replay.metrics import Metrics
from nats.js.api import StorageType, StreamConfig
from raxx_contracts import AssetClass, Path, ReplayEnd, subjects
from raxx_md_client import cli
from raxx_md_client.replay import replay

from tests.integration.fixtures_tier_gate import (
    TierGateStack,
    Violations,
    tier_gate_stack,
    tier_gate_stack_factory,
    unique_user,
)
from tests.integration.md_replay_fixtures import settings

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack", "tier_gate_stack_factory"]


async def test_replay_subjects_and_deliveries_are_private_to_the_user(
    tier_gate_stack: TierGateStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tier_gate_stack
    # The capture streams exist (declared by the hub's side in production; any JetStream
    # client here): md-replay reads them with its own identity.
    admin = await stack.service("settler")
    for asset in AssetClass:
        await admin.jetstream().add_stream(
            StreamConfig(
                name=subjects.capture_stream(Path.RT, asset),
                subjects=[subjects.capture_root(Path.RT, asset)],
                storage=StorageType.FILE,
                allow_direct=True,
            )
        )
    await admin.close()
    service_violations = Violations()
    svc = await stack.service("md-replay", error_cb=service_violations.cb)
    app = create_app(settings(stack.nats_url), Deps(nc=svc))
    alice, bob = unique_user("alice"), unique_user("bob")
    a_tok, b_tok = await stack.token(alice, "free"), await stack.token(bob, "free")
    a_token, b_token = subjects.user_token(alice), subjects.user_token(bob)
    violations = Violations()
    a = await stack.connect_user(
        a_tok["nats"]["creds"], violations, inbox_prefix=a_tok["subjects"]["inbox_prefix"]
    )
    b_violations = Violations()
    b = await stack.connect_user(
        b_tok["nats"]["creds"], b_violations, inbox_prefix=b_tok["subjects"]["inbox_prefix"]
    )
    async with app.router.lifespan_context(app):
        # Alice's own replay works end to end over md-replay's least-rights identity.
        items = [
            item
            async for item in replay(a, "free", a_token, session_date(time.time_ns()), ["AAPL"])
        ]
        assert isinstance(items[-1], ReplayEnd)
        assert items[-1].reason == "complete"
        assert not service_violations.errors
        # The CLI gets its own credential from tier-gate and runs the same replay.
        args = cli._parser().parse_args(
            ["replay", "--tier", "free", "--user", alice, "--tier-gate", stack.base_url,
             "--nats", stack.nats_url, "--date", str(session_date(time.time_ns())), "AAPL"]
        )  # fmt: skip
        assert await cli._replay(args) == 0
        assert "end of replay (complete): 0 messages" in capsys.readouterr().err
        # The archive with md-replay's own identity: object store put, list, get, delete.
        rt = app.state.md.replayer
        archiver = Archiver(rt.store, rt.reader, Metrics(), 30)
        day = session_date(time.time_ns())
        await rt.store.put("date=2000-01-01/stale.parquet", b"old")
        manifest = await archiver.archive(day, lambda _line: None)
        assert manifest["complete"] is True
        assert await read_manifest(rt.store, day) == manifest
        assert await archiver.prune(day) == 1
        assert await rt.store.keys("date=2000") == []
        assert not service_violations.errors, service_violations.errors
        # Another tier's subject, another user's subject and another user's deliveries.
        pro = subjects.replay("pro", a_token)
        bobs = subjects.replay("free", b_token)
        await a.publish(pro, b"{}")
        await a.publish(bobs, b"{}")
        await b.subscribe(f"{subjects.USER_INBOX_ROOT}.{a_token}.>")
        await a.flush()
        await b.flush()
        for _ in range(60):  # bounded poll: violations arrive asynchronously
            if violations.about(pro) and violations.about(bobs) and b_violations.errors:
                break
            await asyncio.sleep(0.05)
        assert violations.about(pro), violations.errors
        assert violations.about(bobs), violations.errors
        assert b_violations.about(f"{subjects.USER_INBOX_ROOT}.{a_token}.>"), b_violations.errors
    await a.close()
    await b.close()
    await svc.close()
