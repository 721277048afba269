"""Entry point: `python -m md_replay` / `run` (the service), `archive --date D` (one session,
re-runnable and idempotent, with progress)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys

from raxx_service_kit.serve import configure_logging, serve

from md_replay.settings import Settings


def _date(text: str) -> dt.date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


async def archive(settings: Settings, date: dt.date) -> int:
    """Archive one session now and print progress lines."""
    from md_replay.metrics import Metrics
    from md_replay.runtime import open_runtime

    async with open_runtime(settings, Metrics()) as rt:
        manifest = await rt.archiver.archive(date, lambda line: print(line, flush=True))
    print(
        f"archived {date}: {manifest['messages']} messages, {manifest['bytes']} bytes",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command."""
    parser = argparse.ArgumentParser(prog="md_replay", description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("run", help="run the service (default)")
    arch = sub.add_parser("archive", help="archive one session now (re-runnable)")
    arch.add_argument("--date", required=True, type=_date, help="YYYY-MM-DD (America/New_York)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"md-replay: bad settings: {exc}", file=sys.stderr)
        return 78
    configure_logging(settings.log_level)
    if args.cmd == "archive":
        return asyncio.run(archive(settings, args.date))
    from md_replay.app import create_app

    return serve(create_app(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
