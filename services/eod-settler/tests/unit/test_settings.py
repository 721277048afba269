import pytest
from eod_settler.settings import Settings
from pydantic import SecretStr, ValidationError


def test_symbols_from_csv_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EOD_SYMBOLS", "AAPL, BRK.B ,MSFT")
    monkeypatch.setenv("EOD_VAULT__ADDR", "http://127.0.0.1:1")
    s = Settings()
    assert s.symbols == ["AAPL", "BRK.B", "MSFT"]
    assert s.vault.addr == "http://127.0.0.1:1"
    assert s.http_port == 8084
    assert s.rest_rate_per_min == 200


def test_prod_refuses_dev_only_key_and_fault_point() -> None:
    with pytest.raises(ValidationError):
        Settings(env="prod", alpaca_key_id=SecretStr("k"), alpaca_secret_key=SecretStr("s"))
    with pytest.raises(ValidationError):
        Settings(env="prod", fault_point="after_write")


def test_dedup_window_at_least_two_days() -> None:
    with pytest.raises(ValidationError):
        Settings(dedup_window_seconds=3600)


def test_defaults_are_make_runs_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an env file the settler reaches `make run`'s stack (it used to default to
    PostgreSQL 5432 and NATS 4222, so `python -m eod_settler run` timed out)."""
    import os

    for key in [k for k in os.environ if k.startswith("EOD_") or k == "RAXX_PORT_OFFSET"]:
        monkeypatch.delenv(key)
    s = Settings()
    assert s.database_url == "postgresql://postgres@127.0.0.1:15432/eod_settler"
    assert s.nats_url == "nats://127.0.0.1:14222"
    assert s.vault.addr == "http://127.0.0.1:18200"
    assert s.vault.path == "raxx/alpaca/market-data"
    assert s.http_port == 8084
    monkeypatch.setenv("RAXX_PORT_OFFSET", "100")
    assert Settings().database_url == "postgresql://postgres@127.0.0.1:15532/eod_settler"
