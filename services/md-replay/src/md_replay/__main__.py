"""Entry point: `python -m md_replay` / `run` (the service), `archive --date D` (one session,
re-runnable and idempotent, with progress)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys

from raxx_service_kit.cli import Command, iso_date, run_cli
from raxx_service_kit.serve import serve

from md_replay.settings import Settings


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


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from md_replay.app import create_app

    return serve(create_app(settings), settings)


def _date_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--date", required=True, type=iso_date, help="YYYY-MM-DD (America/New_York)"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command (the kit's exit codes: 78 bad settings)."""
    return run_cli(
        "md-replay", __doc__, argv,
        settings=lambda _args: Settings(),
        commands=[
            Command("run", "run the service (default)", _run),
            Command(
                "archive", "archive one session now (re-runnable)",
                lambda settings, args: asyncio.run(archive(settings, args.date)), _date_argument,
            ),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
