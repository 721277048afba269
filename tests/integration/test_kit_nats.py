"""raxx_service_kit.nats against a real nats-server: connect, status, unreachable at start."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from raxx_service_kit.errors import RetryableError
from raxx_service_kit.nats import ConnectionStatus, connect, credentials, creds_text
from raxx_service_kit.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_connect_uses_the_shared_options_and_reports_status(nats_url: str) -> None:
    status = ConnectionStatus("kit-test")
    nc = await connect(ServiceSettings(nats_url=nats_url), "kit-test", status=status)
    try:
        assert nc.options["ping_interval"] == 2
        assert nc.options["max_reconnect_attempts"] == -1
        assert status.check(nc).ok
        sub = await nc.subscribe("kit.echo")
        await nc.publish("kit.echo", b"hi")
        assert (await sub.next_msg(timeout=2)).data == b"hi"
    finally:
        await nc.close()
    check = status.check(nc)
    assert not check.ok
    assert check.reason is not None
    assert check.reason.startswith("closed")


async def test_unreachable_at_start_is_retryable() -> None:
    settings = ServiceSettings(nats_url="nats://127.0.0.1:9")
    with pytest.raises(RetryableError) as info:
        await connect(settings, "kit-test", connect_timeout=1, first_connect_timeout=2)
    assert info.value.code == "nats_unavailable"
    assert "127.0.0.1" not in info.value.message


def test_creds_from_settings_and_text() -> None:
    text = creds_text("eyJ.jwt.sig", "SUAEXAMPLESEED")
    assert "-----BEGIN NATS USER JWT-----\neyJ.jwt.sig\n" in text
    assert "-----BEGIN USER NKEY SEED-----\nSUAEXAMPLESEED\n" in text
    assert credentials(ServiceSettings()) is None
    raw = credentials(ServiceSettings(nats_creds_text=SecretStr(text)))
    assert raw is not None
    assert str(raw) == text
