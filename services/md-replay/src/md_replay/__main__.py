"""Entry point: `python -m md_replay` / `run` (the service), `archive --date D` (one session,
re-runnable and idempotent, with progress)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys

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
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"md-replay: bad settings: {exc}", file=sys.stderr)
        return 78
    if args.cmd == "archive":
        return asyncio.run(archive(settings, args.date))
    import uvicorn

    from md_replay.app import create_app

    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
