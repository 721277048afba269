"""The CLI's edge: a database that is down is a clear, typed message and exit 1, not a bare
PoolTimeout (nothing listens on the port; no server needed)."""

from __future__ import annotations

import pytest
from eod_settler.__main__ import main
from raxx_devstack.ports import free_port


def test_database_down_is_named_not_a_pool_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("EOD_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/eod_settler")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert f"PostgreSQL at 127.0.0.1:{port}/eod_settler is unreachable" in err
    assert "EOD_DATABASE_URL" in err
    assert "refused" in err.lower()
    assert "PoolTimeout" not in err


def test_bad_settings_exit_78(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EOD_ENV", "prod")
    monkeypatch.setenv("EOD_FAULT_POINT", "after_write")
    assert main(["migrate"]) == 78
    assert "bad settings" in capsys.readouterr().err
