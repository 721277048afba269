"""Every service's `python -m <package>` entry point, written once.

    def main(argv: list[str] | None = None) -> int:
        return run_cli(
            "eod-settler", __doc__, argv,
            settings=lambda _args: Settings(),
            commands=[
                Command("serve", "run the service (default)", _serve),
                Command("migrate", "apply database migrations and exit", _migrate),
            ],
        )

The first command is the default (no subcommand given). The one exit-code policy:

- settings that do not validate (pydantic's `ValidationError` is a `ValueError`) or a
  `ConfigError` → `<service>: bad settings: ...` on stderr, exit 78 (EX_CONFIG, sysexits.h);
- any other `ServiceError` → `<service>: <message> (<log detail>)`, exit `exc.exit_code` when the
  class names one (`ConfigError`: 78), else 1; never a traceback for an error raised on purpose;
- Ctrl-C during a one-shot command → 130.

Logging is configured (the kit's format, `settings.log_level`) before a command runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from raxx_service_kit.errors import ConfigError, ServiceError
from raxx_service_kit.serve import configure_logging
from raxx_service_kit.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)

EX_CONFIG = 78
"""Exit code of a configuration the process cannot run with (sysexits.h)."""


@dataclass(frozen=True)
class Command(Generic[S]):
    """One subcommand: `run(settings, args)` returns the exit code; `arguments(parser)` adds its
    options."""

    name: str
    help: str
    run: Callable[[S, argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


def iso_date(text: str) -> dt.date:
    """An argparse `type=` for `YYYY-MM-DD` (exactly; `2024-1-2` or a week date is refused)."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def describe(exc: ServiceError) -> str:
    """An error for the operator's terminal: the public message and the logged detail."""
    return f"{exc.message} ({exc.log_detail})" if exc.log_detail else exc.message


def exit_code(exc: ServiceError) -> int:
    """The exit code of an error: the class's `exit_code` when it names one, else 1."""
    code = getattr(exc, "exit_code", 1)
    return code if isinstance(code, int) else 1


def parser(
    prog: str, description: str | None, commands: Sequence[Command[S]]
) -> argparse.ArgumentParser:
    """The argument parser of `commands` (subcommand in `args.cmd`; None: the default)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    sub = p.add_subparsers(dest="cmd")
    for command in commands:
        one = sub.add_parser(command.name, help=command.help)
        if command.arguments is not None:
            command.arguments(one)
    return p


def run_cli(
    service: str,
    description: str | None,
    argv: Sequence[str] | None,
    *,
    settings: Callable[[argparse.Namespace], S],
    commands: Sequence[Command[S]],
    on_start: Callable[[S], None] | None = None,
) -> int:
    """Parse `argv`, build the settings, configure logging and run the chosen command.

    `service` names the process on stderr (`eod-settler: ...`); the program name is its
    package (`eod_settler`). `on_start(settings)` runs after logging is configured (a start-up
    log line)."""
    if not commands:
        raise ValueError("run_cli needs at least one command")
    args = parser(service.replace("-", "_"), description, commands).parse_args(argv)
    chosen = next((c for c in commands if c.name == args.cmd), commands[0])
    try:
        built = settings(args)
    except (ValueError, ConfigError) as exc:
        print(f"{service}: bad settings: {exc}", file=sys.stderr)
        return EX_CONFIG
    configure_logging(built.log_level)
    if on_start is not None:
        on_start(built)
    try:
        return chosen.run(built, args)
    except ServiceError as exc:
        print(f"{service}: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
