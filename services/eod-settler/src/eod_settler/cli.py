"""`python -m eod_settler run --date YYYY-MM-DD`: settle one date with progress on the terminal."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from types import TracebackType
from typing import Any

from raxx_service_kit.errors import ServiceError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from eod_settler.corpactions import CorpActionsReport
from eod_settler.errors import describe, exit_code
from eod_settler.metrics import Metrics
from eod_settler.runtime import Deps, Runtime
from eod_settler.service import RunReport
from eod_settler.settings import Settings

log = logging.getLogger("eod_settler.cli")
CLI_ATTEMPTS = 3
"""Start-up attempts of a one-shot command: a database or bus that is down is reported in
about two seconds, not after the service's patient retries."""


class RichProgress:
    """A rich progress bar (TTY)."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), transient=False,
        )  # fmt: skip
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()

    def start(self, phase: str, total: int) -> None:
        """A phase begins."""
        self._task = self._bar.add_task(phase, total=total)

    def advance(self, n: int) -> None:
        """More symbols done."""
        if self._task is not None:
            self._bar.advance(self._task, n)


class LogProgress:
    """Plain log lines (not a TTY): one per batch."""

    def __init__(self) -> None:
        self._done = 0
        self._total = 0

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def start(self, phase: str, total: int) -> None:
        """A phase begins."""
        self._done, self._total = 0, total
        log.info("%s: %d symbols", phase, total)

    def advance(self, n: int) -> None:
        """More symbols done."""
        self._done += n
        log.info("progress %d/%d symbols", self._done, self._total)


def summary(r: RunReport) -> str:
    """One line describing a run."""
    return (
        f"{r.date.isoformat()}: {r.count} settles in the date's set; this run wrote {r.written}"
        f" (revised {r.revised}, stale {r.stale}), unchanged {r.unchanged},"
        f" missing {len(r.missing)}; published {r.published} messages;"
        f" {r.rest_requests} REST requests; {r.seconds:.2f} s"
        + (
            "; written by source/feed: "
            + ", ".join(f"{k} {v}" for k, v in sorted(r.sources.items()))
            if r.sources
            else ""
        )
    )


async def run_date(settings: Settings, date: dt.date, deps: Deps | None = None) -> int:
    """Settle `date` and wait until it is published; returns the process exit code."""
    tty = sys.stderr.isatty()
    rt = await Runtime.open(settings, Metrics(), deps, attempts=CLI_ATTEMPTS)
    try:
        progress: RichProgress | LogProgress = RichProgress() if tty else LogProgress()
        with progress:
            report = await rt.settler.run(date, progress)
    except ServiceError as exc:
        print(f"eod-settler: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)
    finally:
        await rt.close()
    print(summary(report))
    if report.missing:
        print(
            f"no print and no previous settle (nothing published): {', '.join(report.missing)}",
            file=sys.stderr,
        )
    return 0


def corpactions_summary(r: CorpActionsReport) -> str:
    """One line describing a corporate-actions run."""
    if not r.trading_day:
        return f"{r.date.isoformat()}: not a trading day; no corporate actions published"
    return (
        f"{r.date.isoformat()}: {r.actions} corporate actions for {r.symbols} symbols;"
        f" this run wrote {r.written} (revised {r.revised}), unchanged {r.unchanged};"
        f" published {r.published} messages; {r.rest_requests} REST requests; {r.seconds:.2f} s"
    )


async def run_corpactions(settings: Settings, date: dt.date, deps: Deps | None = None) -> int:
    """Publish `date`'s corporate actions and wait until they are on the stream."""
    tty = sys.stderr.isatty()
    rt = await Runtime.open(settings, Metrics(), deps, attempts=CLI_ATTEMPTS)
    try:
        progress: RichProgress | LogProgress = RichProgress() if tty else LogProgress()
        with progress:
            report = await rt.corpactions.run(date, progress)
    except ServiceError as exc:
        print(f"eod-settler: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)
    finally:
        await rt.close()
    print(corpactions_summary(report))
    return 0
