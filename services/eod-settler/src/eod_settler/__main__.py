"""Entry point: `python -m eod_settler` (service), `run --date D` (one date),
`corpactions --date D` (one date's corporate actions), `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from raxx_service_kit.cli import Command, iso_date, run_cli
from raxx_service_kit.serve import serve

from eod_settler.settings import Settings


def _date_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", required=True, type=iso_date, help="YYYY-MM-DD")


def _log_plan(settings: Settings) -> None:
    logging.getLogger("eod_settler").info(
        "ALPACA_PLAN=%s: bars feed %s, options feed %s, REST %.0f/min",
        settings.alpaca_plan, settings.alpaca_feed,
        settings.alpaca_options_feed, settings.rest_rate_per_min,
    )  # fmt: skip


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    from eod_settler.app import create_app

    return serve(create_app(settings), settings)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from eod_settler.cli import run_date

    return asyncio.run(run_date(settings, args.date))


def _corpactions(settings: Settings, args: argparse.Namespace) -> int:
    from eod_settler.cli import run_corpactions

    return asyncio.run(run_corpactions(settings, args.date))


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from eod_settler.adapters.postgres import apply_migrations

    applied = asyncio.run(apply_migrations(settings.database_url))
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command (the kit's exit codes: 78 bad settings)."""
    return run_cli(
        "eod-settler", __doc__, argv,
        settings=lambda _args: Settings(),
        on_start=_log_plan,
        commands=[
            Command("serve", "run the service (default): API, scheduler, relay, listener", _serve),
            Command("run", "settle one past date now and publish it", _run, _date_argument),
            Command(
                "corpactions", "publish one date's corporate actions now (re-runnable)",
                _corpactions, _date_argument,
            ),
            Command("migrate", "apply database migrations and exit", _migrate),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
