"""Entry point: `python -m eod_settler` (service), `run --date D` (one date),
`corpactions --date D` (one date's corporate actions), `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys

from eod_settler.errors import SettlerError
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
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"eod-settler: bad settings: {exc}", file=sys.stderr)
        return 78
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
    except SettlerError as exc:
        print(f"eod-settler: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


async def _migrate(settings: Settings) -> int:
    from eod_settler.adapters.postgres import Store

    store = await Store.open(settings.database_url)
    try:
        applied = await store.migrate()
    finally:
        await store.close()
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from eod_settler.app import create_app

    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
