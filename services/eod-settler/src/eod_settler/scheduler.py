"""The supervised scheduler: settle every session at close + lag, catch up after downtime."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from zoneinfo import ZoneInfo

from raxx_service_kit.clock import Clock

from eod_settler import domain
from eod_settler.adapters.postgres import Store
from eod_settler.corpactions import CorpActionsRun
from eod_settler.domain import Session
from eod_settler.metrics import Metrics
from eod_settler.service import Settler
from eod_settler.settings import Settings

log = logging.getLogger(__name__)


class Scheduler:
    """Runs due, incomplete sessions; keeps the batch-late gauges current."""

    def __init__(
        self,
        settings: Settings,
        settler: Settler,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        corpactions: CorpActionsRun | None = None,
    ) -> None:
        self._corpactions = corpactions
        self._s = settings
        self._settler = settler
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._tz = ZoneInfo(settings.timezone)
        self._sessions: list[Session] = []
        self._fetched_for: dt.date | None = None

    async def _calendar(self, today: dt.date) -> list[Session]:
        if self._fetched_for != today:
            self._sessions = await self._settler.sessions(
                today - dt.timedelta(days=14), today + dt.timedelta(days=14)
            )
            self._fetched_for = today
        return self._sessions

    async def tick(self) -> float:
        """One pass: settle what is due and incomplete; returns seconds until the next pass."""
        now = self._clock.now()
        today = now.astimezone(self._tz).date()
        sessions = await self._calendar(today)
        lag = self._s.settle_lag_seconds
        due = sorted((s for s in sessions if s.due_at(lag) <= now), key=lambda s: s.date)
        for session in due[-self._s.catchup_sessions :] if self._s.catchup_sessions else []:
            if not await self._store.is_complete(session.date):
                log.info("settling %s (due %s)", session.date, session.due_at(lag).isoformat())
                report = await self._settler.run(session.date)
                log.info(
                    "settled %s: count=%d written=%d stale=%d missing=%d in %.1f s",
                    session.date, report.count, report.written, report.stale,
                    len(report.missing), report.seconds,
                )  # fmt: skip
        await self.reread(now, due)
        await self.update_late(now, due)
        nxt = domain.next_due_at(sessions, now, lag)
        corp_next = await self._corpactions_tick(now, today, sessions)
        wait = self._s.scheduler_poll_seconds
        for at in (nxt, corp_next):
            if at is not None:
                wait = min(wait, max(0.5, (at - now).total_seconds()))
        return wait

    def corpactions_at(self, day: dt.date) -> dt.datetime:
        """When `day`'s corporate actions are published (`EOD_CORPACTIONS_AT`, local time)."""
        return dt.datetime.combine(day, dt.time.fromisoformat(self._s.corpactions_at), self._tz)

    async def _corpactions_tick(
        self, now: dt.datetime, today: dt.date, sessions: list[Session]
    ) -> dt.datetime | None:
        """Publish today's corporate actions once, from `corpactions_at` until the close, on
        trading days only (the exchange calendar); returns the next such time."""
        if self._corpactions is None:
            return None
        session = next((s for s in sessions if s.date == today), None)
        if (
            session is not None
            and self.corpactions_at(today) <= now < session.close
            and not await self._store.corpactions_complete(today)
        ):
            report = await self._corpactions.run(today)
            log.info(
                "corporate actions %s: %d actions for %d symbols, %d new revisions",
                today, report.actions, report.symbols, report.written,
            )  # fmt: skip
        upcoming = [self.corpactions_at(s.date) for s in sessions]
        return min((t for t in upcoming if t > now), default=None)

    async def reread(self, now: dt.datetime, due: list[Session]) -> None:
        """The morning after a session: settle it again, once; a changed close is revision n+1.

        Re-running is idempotent (an unchanged close writes nothing, and a revision's Msg-Id is
        (date, symbol, revision)), so a crash between the run and the mark only repeats a no-op.
        """
        window = due[-self._s.catchup_sessions :] if self._s.catchup_sessions else []
        for session in window:
            at = domain.reread_due_at(session, self._s.reread_local_time, self._tz)
            if now < at or not await self._store.needs_reread(session.date):
                continue
            log.info("re-reading %s (late prints, corrections)", session.date)
            report = await self._settler.run(session.date)
            await self._store.mark_reread(session.date)
            self._metrics.rereads.labels("revised" if report.revised else "unchanged").inc()
            log.info(
                "re-read %s: revised=%d unchanged=%d", session.date, report.revised,
                report.unchanged,
            )  # fmt: skip

    async def update_late(self, now: dt.datetime, due: list[Session]) -> None:
        """Set `eod_batch_late{,_seconds}` for the latest due session."""
        if not due:
            self._metrics.batch_late.set(0)
            self._metrics.batch_late_seconds.set(0)
            return
        latest = due[-1]
        expected = latest.due_at(self._s.settle_lag_seconds) + dt.timedelta(
            seconds=self._s.late_grace_seconds
        )
        late = now > expected and not await self._store.is_complete(latest.date)
        self._metrics.batch_late.set(1 if late else 0)
        self._metrics.batch_late_seconds.set((now - expected).total_seconds() if late else 0)

    async def run_forever(self) -> None:
        """Loop forever (errors propagate to the supervisor, which restarts it)."""
        while True:  # noqa: ASYNC110 - sleeps until the next due time, not polling a flag
            await asyncio.sleep(await self.tick())
