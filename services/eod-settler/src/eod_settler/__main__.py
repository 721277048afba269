"""Entry point: `python -m eod_settler` (service), `run --date D` (one date),
`corpactions --date D` (one date's corporate actions), `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys

from raxx_service_kit.errors import ServiceError
from raxx_service_kit.serve import configure_logging, serve

from eod_settler.errors import describe, exit_code
from eod_settler.settings import Settings


def _date(text: str) -> dt.date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command."""
    parser = argparse.ArgumentParser(prog="eod_settler", description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("serve", help="run the service (default): API, scheduler, relay, listener")
    run = sub.add_parser("run", help="settle one past date now and publish it")
    run.add_argument("--date", required=True, type=_date, help="YYYY-MM-DD")
    corp = sub.add_parser(
        "corpactions", help="publish one date's corporate actions now (re-runnable)"
    )
    corp.add_argument("--date", required=True, type=_date, help="YYYY-MM-DD")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"eod-settler: bad settings: {exc}", file=sys.stderr)
        return 78
    configure_logging(settings.log_level)
    logging.getLogger("eod_settler").info(
        "ALPACA_PLAN=%s: bars feed %s, options feed %s, REST %.0f/min",
        settings.alpaca_plan, settings.alpaca_feed,
        settings.alpaca_options_feed, settings.rest_rate_per_min,
    )  # fmt: skip
    try:
        if args.cmd == "run":
            from eod_settler.cli import run_date

            return asyncio.run(run_date(settings, args.date))
        if args.cmd == "corpactions":
            from eod_settler.cli import run_corpactions

            return asyncio.run(run_corpactions(settings, args.date))
        if args.cmd == "migrate":
            return asyncio.run(_migrate(settings))
        return _serve(settings)
    except ServiceError as exc:
        print(f"eod-settler: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130


async def _migrate(settings: Settings) -> int:
    from eod_settler.adapters.postgres import apply_migrations

    applied = await apply_migrations(settings.database_url)
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    return 0


def _serve(settings: Settings) -> int:
    from eod_settler.app import create_app

    return serve(create_app(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
