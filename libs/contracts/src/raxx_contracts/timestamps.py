"""A timezone-aware datetime that keeps nanoseconds, for event times on the wire.

Alpaca stamps events with nanoseconds (RFC 3339 strings, or msgpack timestamps); Python's
`datetime` stops at microseconds. :class:`NanoDatetime` is a `datetime` subclass that carries the
sub-microsecond remainder, so a timestamp round-trips through the wire codec exactly.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = timedelta(0)


class NanoDatetime(datetime):
    """An aware UTC datetime with a `nanosecond` field (0-999) below its microseconds."""

    _nanosecond: int

    def __new__(cls, *args: Any, nanosecond: int = 0, **kwargs: Any) -> NanoDatetime:
        self = super().__new__(cls, *args, **kwargs)
        if self.tzinfo is None:
            raise ValueError("NanoDatetime must be timezone-aware")
        if not 0 <= nanosecond <= 999:
            raise ValueError("nanosecond must be in 0..999")
        self._nanosecond = nanosecond
        return self

    @property
    def nanosecond(self) -> int:
        """Nanoseconds below the microsecond (0-999)."""
        return self._nanosecond

    @classmethod
    def from_datetime(cls, value: datetime, nanosecond: int = 0) -> NanoDatetime:
        """Convert an aware datetime to UTC, keeping `nanosecond` (or its own, if it has one)."""
        if value.tzinfo is None:
            raise ValueError("naive datetime: a timezone is required")
        if isinstance(value, NanoDatetime) and not nanosecond:
            nanosecond = value.nanosecond
        u = value.astimezone(UTC)
        return cls(
            u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond,
            tzinfo=UTC, nanosecond=nanosecond,
        )  # fmt: skip

    @classmethod
    def from_epoch_ns(cls, ns: int) -> NanoDatetime:
        """Build from integer nanoseconds since the Unix epoch."""
        micros, nano = divmod(ns, 1000)
        return cls.from_datetime(_EPOCH + timedelta(microseconds=micros), nano)

    @classmethod
    def parse(cls, text: str) -> NanoDatetime:
        """Parse RFC 3339 with up to nine fractional digits."""
        m = _RFC3339.fullmatch(text.strip())
        if not m:
            raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
        frac = (m["frac"] or "").ljust(9, "0")
        tz = "+00:00" if m["tz"] in ("Z", "z") else m["tz"]
        base = datetime.fromisoformat(f"{m['base'].replace(' ', 'T')}.{frac[:6]}{tz}")
        return cls.from_datetime(base, int(frac[6:]))

    def epoch_ns(self) -> int:
        """Integer nanoseconds since the Unix epoch."""
        delta: timedelta = datetime.__sub__(self, _EPOCH)
        micros: int = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return micros * 1000 + self._nanosecond

    def rfc3339(self) -> str:
        """RFC 3339 in UTC with `Z`; nine fractional digits when nanoseconds are set."""
        u = self if self.utcoffset() == _ZERO else self.astimezone(UTC)
        base = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        if self._nanosecond:
            return f"{base}.{u.microsecond:06d}{self._nanosecond:03d}Z"
        if u.microsecond:
            return f"{base}.{u.microsecond:06d}Z"
        return f"{base}Z"

    def __reduce__(self) -> Any:  # pickling keeps the nanoseconds
        return (NanoDatetime.from_epoch_ns, (self.epoch_ns(),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NanoDatetime):
            return self.epoch_ns() == other.epoch_ns()
        if isinstance(other, datetime):
            return self._nanosecond == 0 and datetime.__eq__(self, other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.epoch_ns())

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate from RFC 3339 text, an aware datetime or epoch nanoseconds; dump as text."""
        return core_schema.no_info_plain_validator_function(
            _coerce,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.rfc3339(), when_used="json-unless-none"
            ),
        )


def _coerce(value: object) -> NanoDatetime:
    if isinstance(value, NanoDatetime):
        return value
    if isinstance(value, datetime):
        return NanoDatetime.from_datetime(value)
    if isinstance(value, str):
        return NanoDatetime.parse(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return NanoDatetime.from_epoch_ns(value)
    raise ValueError(f"expected an RFC 3339 timestamp, got {type(value).__name__}")


_last_second: list[object] = [None, ""]


def format_epoch_ns(ns: int) -> str:
    """RFC 3339 text (nine fractional digits, `Z`) of epoch nanoseconds; hot-path fast.

    Event times arrive nearly in order, so the date-and-second prefix is cached.
    """
    sec, frac = divmod(ns, 1_000_000_000)
    if _last_second[0] != sec:
        t = time.gmtime(sec)
        _last_second[0] = sec
        _last_second[1] = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
        )
    return f"{_last_second[1]}{frac:09d}Z"


def utc_now() -> NanoDatetime:
    """Now, as an aware UTC :class:`NanoDatetime`."""
    return NanoDatetime.from_datetime(datetime.now(UTC))
