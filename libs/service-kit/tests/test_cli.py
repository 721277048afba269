"""run_cli: the one entry-point policy (default command, exit codes, no traceback)."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest
from pydantic import Field
from raxx_service_kit.cli import EX_CONFIG, Command, iso_date, run_cli
from raxx_service_kit.errors import ConfigError, RetryableError
from raxx_service_kit.settings import ServiceSettings, service_config


class CliSettings(ServiceSettings):
    model_config = service_config("CLITEST_")
    limit: int = Field(default=1, ge=1)


def _date_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", required=True, type=iso_date)


def _run(argv: list[str], seen: list[object]) -> int:
    def serve(s: CliSettings, _a: argparse.Namespace) -> int:
        seen.append("serve")
        return 0

    def one(s: CliSettings, a: argparse.Namespace) -> int:
        seen.append(a.date)
        return 3

    def config(s: CliSettings, _a: argparse.Namespace) -> int:
        raise ConfigError("CLITEST_X must differ", log_detail="x=1")

    def down(s: CliSettings, _a: argparse.Namespace) -> int:
        raise RetryableError("the store is unavailable", log_detail="refused")

    def interrupted(s: CliSettings, _a: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    return run_cli(
        "cli-test", "doc", argv,
        settings=lambda _args: CliSettings(),
        on_start=lambda s: seen.append(("started", s.limit)),
        commands=[
            Command("serve", "the default", serve),
            Command("one", "one date", one, _date_arg),
            Command("config", "config error", config),
            Command("down", "retryable", down),
            Command("interrupted", "ctrl-c", interrupted),
        ],
    )  # fmt: skip


def test_the_first_command_is_the_default_and_arguments_reach_their_command() -> None:
    seen: list[object] = []
    assert _run([], seen) == 0
    assert _run(["one", "--date", "2024-03-01"], seen) == 3
    assert seen == [("started", 1), "serve", ("started", 1), dt.date(2024, 3, 1)]


def test_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["config"], []) == EX_CONFIG == 78
    assert capsys.readouterr().err == "cli-test: CLITEST_X must differ (x=1)\n"
    assert _run(["down"], []) == 1
    assert capsys.readouterr().err == "cli-test: the store is unavailable (refused)\n"
    assert _run(["interrupted"], []) == 130
    monkeypatch.setenv("CLITEST_LIMIT", "0")
    seen: list[object] = []
    assert _run([], seen) == 78
    assert seen == []  # no command ran with settings that do not validate
    err = capsys.readouterr().err
    assert err.startswith("cli-test: bad settings:")
    assert "Traceback" not in err


@pytest.mark.parametrize("text", ["2024-1-02", "20240102", "tomorrow"])
def test_iso_date_refuses_anything_but_yyyy_mm_dd(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        iso_date(text)
