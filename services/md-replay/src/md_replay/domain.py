"""Pure replay logic: session windows, what a caller may see, request bounds, frames, pacing.

No IO. A session is the America/New_York calendar day `D` (the whole day's tape, extended hours
included); a day without trading archives as an empty, complete session.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from raxx_contracts import AssetClass, Path, ReplayRequest, TierPolicy, subjects

from md_replay.errors import ReplayError

NY = ZoneInfo("America/New_York")
NS = 1_000_000_000

Record = tuple[str, int, int, bytes]
"""(public rt subject, stream sequence, publish time ns, payload) as recorded."""


def session_window(date: dt.date) -> tuple[int, int]:
    """[start, end) of session `date` in ns since the epoch."""
    start = dt.datetime.combine(date, dt.time(0), NY)
    end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(0), NY)
    return int(start.timestamp()) * NS, int(end.timestamp()) * NS


def session_date(ns: int) -> dt.date:
    """The session date an instant belongs to."""
    return dt.datetime.fromtimestamp(ns // NS, NY).date()  # integer: no float rounding


def check_date(date: dt.date, now_ns: int, retention_days: int) -> None:
    """Refuse a date in the future or older than the retention."""
    today = session_date(now_ns)
    if date > today:
        raise ReplayError("unknown_date", f"{date} is not a past or current session")
    if (today - date).days > retention_days:
        raise ReplayError(
            "outside_retention", f"{date} is older than the archive keeps ({retention_days} days)"
        )


def visible_until(
    policy: TierPolicy, tier: str, asset: AssetClass, now_ns: int, delay_s: float
) -> int:
    """The newest publish instant `tier` may see on `asset` now: its delay applies to replays
    exactly as to live data (a delayed tier never gets anything younger than the delay)."""
    if policy.stream_path(tier, asset) is Path.DELAYED:
        return now_ns - int(delay_s * NS)
    return now_ns


def public_subjects(req: ReplayRequest) -> set[str]:
    """The real-time subjects (as recorded) a request covers."""
    return {subjects.rt(req.asset_class, ch, sym) for sym in req.symbols for ch in req.channels}


def deliver_subject(subject: str, path: Path) -> str:
    """A recorded rt subject as the caller's tier sees it live (its own path)."""
    return subjects.to_delayed(subject) if path is Path.DELAYED else subject


def frames(
    records: Iterable[Record], max_records: int, max_bytes: int, span_ns: int | None
) -> Iterator[list[Record]]:
    """Group records in order: at most `max_records` / `max_bytes` per frame and, when pacing,
    at most `span_ns` of original time (so a frame is due all at once)."""
    batch: list[Record] = []
    size = 0
    first_ts = 0
    for rec in records:
        n = len(rec[3]) + len(rec[0]) + 22
        if batch and (
            len(batch) >= max_records
            or size + n > max_bytes
            or (span_ns is not None and rec[2] - first_ts > span_ns)
        ):
            yield batch
            batch, size = [], 0
        if not batch:
            first_ts = rec[2]
        batch.append(rec)
        size += n
    if batch:
        yield batch


@dataclass
class Pacer:
    """When a record is due at N x real time: its original offset from the first record
    divided by `speed`, from the moment the replay started (monotonic seconds)."""

    speed: float
    origin_ns: int
    started: float

    def due(self, ts_ns: int) -> float:
        """Monotonic time at which the record published at `ts_ns` is due."""
        return self.started + (ts_ns - self.origin_ns) / NS / self.speed


class UserRate:
    """Requests per user in a sliding minute (bounded memory: only users seen lately)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}

    def allow(self, user: str, now: float) -> bool:
        """Count one request of `user` at `now` (monotonic s); False when over the rate."""
        q = self._seen.setdefault(user, deque())
        while q and q[0] <= now - 60.0:
            q.popleft()
        if len(q) >= self.per_minute:
            return False
        q.append(now)
        if len(self._seen) > 10_000:
            self._seen = {u: d for u, d in self._seen.items() if d and d[-1] > now - 60.0}
        return True
