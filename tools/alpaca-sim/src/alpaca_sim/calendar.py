"""NYSE-like trading calendar: holidays and 13:00 early closes by the exchange's rules."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")
FIRST_YEAR = 2015
LAST_YEAR = 2030
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)

# One-off closures (national days of mourning and the like).
SPECIAL_CLOSURES = frozenset({date(2018, 12, 5), date(2025, 1, 9)})


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Saturday holidays move to Friday, Sunday holidays to Monday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def nyse_holidays(year: int) -> set[date]:
    """Full-day closures of one year."""
    days = {
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _easter(year) - timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, 0),  # Memorial Day
        _observed(date(year, 7, 4)),
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(date(year, 12, 25)),
    }
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:  # NYSE does not observe a Saturday New Year on Dec 31
        days.add(_observed(new_year))
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    days |= {d for d in SPECIAL_CLOSURES if d.year == year}
    return days


def nyse_early_closes(year: int) -> set[date]:
    """13:00 ET closes: July 3 (Mon-Thu), the day after Thanksgiving, Christmas Eve (Mon-Thu)."""
    days = {_nth_weekday(year, 11, 3, 4) + timedelta(days=1)}
    july3 = date(year, 7, 3)
    if july3.weekday() <= 3:
        days.add(july3)
    xmas_eve = date(year, 12, 24)
    if xmas_eve.weekday() <= 3:
        days.add(xmas_eve)
    return days


@dataclass(frozen=True)
class Session:
    """One trading day: its date and regular-session bounds (aware datetimes)."""

    day: date
    open: datetime
    close: datetime

    @property
    def early_close(self) -> bool:
        """True on a 13:00 close."""
        return self.close.astimezone(NY).time() == EARLY_CLOSE

    @property
    def minutes(self) -> int:
        """Regular-session length in minutes."""
        return int((self.close - self.open).total_seconds() // 60)


class TradingCalendar:
    """Trading days from 2015 to 2030 with NYSE holidays plus configured extras."""

    def __init__(
        self, extra_holidays: Iterable[date] = (), extra_half_days: Iterable[date] = ()
    ) -> None:
        self._extra_holidays = frozenset(extra_holidays)
        self._extra_half_days = frozenset(extra_half_days)

    @cached_property
    def _holidays(self) -> frozenset[date]:
        days: set[date] = set(self._extra_holidays)
        for year in range(FIRST_YEAR, LAST_YEAR + 1):
            days |= nyse_holidays(year)
        return frozenset(days)

    @cached_property
    def _half_days(self) -> frozenset[date]:
        days: set[date] = set(self._extra_half_days)
        for year in range(FIRST_YEAR, LAST_YEAR + 1):
            days |= nyse_early_closes(year)
        return frozenset(days - self._holidays)

    @cached_property
    def days(self) -> list[date]:
        """Every trading day, ascending."""
        out: list[date] = []
        day = date(FIRST_YEAR, 1, 1)
        end = date(LAST_YEAR, 12, 31)
        while day <= end:
            if day.weekday() < 5 and day not in self._holidays:
                out.append(day)
            day += timedelta(days=1)
        return out

    @cached_property
    def _index(self) -> dict[date, int]:
        return {d: i for i, d in enumerate(self.days)}

    def is_trading_day(self, day: date) -> bool:
        """Whether the market opens on `day`."""
        return day in self._index

    def index(self, day: date) -> int:
        """Position of a trading day in `days` (KeyError if not a trading day)."""
        return self._index[day]

    def session(self, day: date) -> Session:
        """Regular-session bounds of a trading day."""
        close = EARLY_CLOSE if day in self._half_days else REGULAR_CLOSE
        return Session(
            day,
            datetime.combine(day, REGULAR_OPEN, NY),
            datetime.combine(day, close, NY),
        )

    def days_between(self, start: date, end: date) -> list[date]:
        """Trading days in [start, end]."""
        lo = bisect.bisect_left(self.days, start)
        hi = bisect.bisect_right(self.days, end)
        return self.days[lo:hi]

    def previous_day(self, day: date) -> date | None:
        """The last trading day strictly before `day`."""
        i = bisect.bisect_left(self.days, day)
        return self.days[i - 1] if i > 0 else None

    def next_day(self, day: date) -> date | None:
        """The first trading day strictly after `day`."""
        i = bisect.bisect_right(self.days, day)
        return self.days[i] if i < len(self.days) else None

    def last_session_start_before(self, moment: datetime) -> Session | None:
        """The latest session that opened at or before `moment`."""
        day = moment.astimezone(NY).date()
        if self.is_trading_day(day) and self.session(day).open <= moment:
            return self.session(day)
        prev = self.previous_day(day)
        return self.session(prev) if prev else None

    def clock(self, now: datetime) -> dict[str, object]:
        """`/v2/clock` body for `now`."""
        local = now.astimezone(NY)
        today = local.date()
        is_open = False
        next_open_day: date | None = None
        if self.is_trading_day(today):
            s = self.session(today)
            is_open = s.open <= now < s.close
            next_open_day = today if now < s.open else self.next_day(today)
            next_close_day = today if now < s.close else self.next_day(today)
        else:
            next_open_day = self.next_day(today)
            next_close_day = next_open_day
        if next_open_day is None or next_close_day is None:
            raise ValueError(f"{now} is past the calendar's horizon ({LAST_YEAR})")
        return {
            "timestamp": local.isoformat(),
            "is_open": is_open,
            "next_open": self.session(next_open_day).open.isoformat(),
            "next_close": self.session(next_close_day).close.isoformat(),
        }

    def calendar_entry(self, day: date) -> dict[str, str]:
        """One `/v2/calendar` element."""
        s = self.session(day)
        settle = self.next_day(day) or day  # T+1
        return {
            "date": day.isoformat(),
            "open": s.open.strftime("%H:%M"),
            "close": s.close.strftime("%H:%M"),
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": settle.isoformat(),
        }
