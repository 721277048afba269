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
