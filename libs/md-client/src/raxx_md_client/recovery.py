"""Gap detection and recovery from the capture streams (issue 13).

Every message on `md.<path>...` is republished by its capture stream with `Nats-Stream`,
`Nats-Sequence` and `Nats-Last-Sequence` (the sequence of the previous message *on the same
subject*). The gap rule: having delivered sequence `h` on a subject, a message whose
`Nats-Last-Sequence` is greater than `h` reveals that the messages on that subject in
`(h, last]` were missed; they are read back from the stream with a batch direct get
(`next_by_subj` = the capture subject, from `h + 1`) and delivered, in stream order, before the
message that revealed the gap. A message whose sequence is at or below `h` was already delivered
(duplicate) and is dropped. What cannot be read back any more (the stream no longer holds it)
is reported as a :class:`Gap` event and counted.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import dataclass
from typing import NamedTuple

from nats.aio.client import Client, Srv
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter, Histogram
from raxx_contracts import subjects


class MdClientError(RuntimeError):
    """Base of the typed errors md-client raises."""


class RecoveryDeniedError(MdClientError):
    """The server refused a read of a capture stream (the credential's tier may not read it).

    Raised by `MdClient.next()` (and the async iterator) where the missed range would have been
    delivered: the gap is not silently skipped."""

    def __init__(self, stream: str, subject: str, detail: str) -> None:
        super().__init__(f"reading {stream} for {subject} was refused by the server: {detail}")
        self.stream = stream
        self.subject = subject


class RecoveryError(MdClientError):
    """A direct get failed for another reason (timeout, no JetStream, stream missing)."""

    def __init__(self, stream: str, status: str, description: str) -> None:
        super().__init__(f"direct get on {stream} failed: {status} {description}")
        self.stream = stream
        self.status = status


class WindowExpiredError(MdClientError):
    """`subscribe(start=...)` asked for a time older than the capture window still holds."""

    def __init__(self, subject: str, start: dt.datetime, first_available: dt.datetime) -> None:
        super().__init__(
            f"{subject}: start {start.isoformat()} is outside the window (oldest kept message "
            f"is from {first_available.isoformat()})"
        )
        self.subject = subject
        self.start = start
        self.first_available = first_available


class GapReason(enum.StrEnum):
    """Why a gap could not be filled."""

    EXPIRED = "expired"
    """The stream no longer holds the range (older than the window)."""
    MISSING = "missing"
    """The previous message named by the header is not in the stream (deleted)."""
    FAILED = "failed"
    """The read failed (timeout, server error); see the log."""


@dataclass(frozen=True)
class Gap:
    """Messages on `subject` with stream sequences in `[from_seq, to_seq]` may be missing.

    Delivered in-band, where the missing messages would have been; the sequences are those of
    `stream` (`to_seq` 0: unknown, up to where delivery resumed; `subject` may be a wildcard
    subscription's pattern). Part of the range may have been on other subjects (a stream
    sequence is shared by all subjects of the stream), so this is an upper bound of the loss."""

    subject: str
    stream: str
    from_seq: int
    to_seq: int
    reason: GapReason


class ClientMetrics:
    """Prometheus metrics of one client, in the registry the application passes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.gaps = Counter(
            "raxx_md_client_gaps_total",
            "Gaps detected, by outcome (recovered, unrecoverable, denied)",
            ["outcome"],
            registry=self.registry,
        )
        self.recovered = Counter(
            "raxx_md_client_recovered_messages_total",
            "Messages read back from a capture stream and delivered",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "raxx_md_client_duplicates_dropped_total",
            "Messages dropped because their sequence was already delivered",
            registry=self.registry,
        )
        self.recovery_seconds = Histogram(
            "raxx_md_client_recovery_seconds",
            "Time to read back and deliver one missed range",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        for outcome in ("recovered", "unrecoverable", "denied"):
            self.gaps.labels(outcome)


class Stamp(NamedTuple):
    """The capture headers of one message (live republish or direct get); a tuple because one
    is built per message read back (tens of thousands per range)."""

    stream: str
    subject: str
    """The public subject (`md.<path>...`)."""
    seq: int
    last_seq: int | None
    """Live: the previous sequence on the subject (the gap rule). In a direct-get batch the
    server means the previous message of the batch; the client does not use it there."""
    time: str


def stamp(msg: Msg) -> Stamp | None:
    """The capture headers of `msg`, or None when it carries none (not from a capture stream)."""
    h = msg.headers
    if not h:
        return None
    seq = h.get(subjects.HDR_SEQUENCE)
    stream = h.get(subjects.HDR_STREAM)
    if seq is None or stream is None:
        return None
    cap = h.get(subjects.HDR_SUBJECT, "")
    subject = subjects.from_capture(cap) if cap.startswith(subjects.CAPTURE_PREFIX) else msg.subject
    last = h.get(subjects.HDR_LAST_SEQUENCE)
    return Stamp(stream, subject, int(seq), int(last) if last is not None else None,
                 h.get(subjects.HDR_TIME_STAMP, ""))  # fmt: skip


def parse_time(text: str) -> dt.datetime:
    """`Nats-Time-Stamp` (RFC 3339 with nanoseconds) as an aware datetime (microseconds)."""
    head, _, frac = text.rstrip("Z").partition(".")
    micros = (frac + "000000")[:6]
    return dt.datetime.fromisoformat(f"{head}.{micros}").replace(tzinfo=dt.UTC)


def rfc3339(when: dt.datetime) -> str:
    """A datetime as the RFC 3339 UTC text a direct get's `start_time` takes."""
    if when.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def batch_request(
    filter_subject: str, *, seq: int | None = None, start: dt.datetime | None = None, batch: int
) -> bytes:
    """Body of a batch direct get from `seq` (or from the time `start`) on `filter_subject`."""
    body: dict[str, object] = {"next_by_subj": filter_subject, "batch": batch}
    if start is not None:
        body["start_time"] = rfc3339(start)
    else:
        body["seq"] = max(1, seq or 1)
    return json.dumps(body).encode()


_ASCII_SPACE = " \t\n\r\x0b\x0c"
"""What `bytes.strip()` strips (nats-py strips names and values as bytes)."""


class FastHeadersClient(Client):
    """nats-py's client with a faster header parser (same result).

    Every market-data message now carries five capture headers, and nats-py 2.16 checks each
    header name with a per-character generator (`any(c.isspace() for c in key)`): measured as
    the largest single cost of reading a range back (about a third of the time). This parses
    the same `Name: Value` lines with the same rules (skip lines without a colon, non-ASCII
    names and names containing whitespace; strip; decode values with `replace`)."""

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep:
                continue
            if not (name.isascii() and name.isprintable() and " " not in name):
                name = name.strip(_ASCII_SPACE)  # the rare case: padded, or not a valid name
                if not name.isascii() or any(c.isspace() for c in name):
                    continue
            out[name] = value.strip(_ASCII_SPACE)
        return out

    async def _connect_to_server(self, s: Srv) -> None:
        """Close the previous attempt's socket before opening the next one.

        nats-py 2.16 keeps one `TcpTransport` per client and, on every reconnect attempt,
        `TcpTransport.connect` overwrites its stream writer without closing the old one. An
        attempt whose TCP connect succeeds but whose handshake fails (a server restarting, a
        cut proxy, a read error before INFO) is retried, so each such attempt leaked an open
        socket until the garbage collector found it (`ResourceWarning: unclosed transport`).
        A long-running client reconnecting through flaky links would accumulate them.
        `close()` is idempotent, so closing a writer nats-py already closed is harmless."""
        if self._transport is not None:
            self._transport.close()  # type: ignore[no-untyped-call]  # nats-py is untyped here
        await super()._connect_to_server(s)


class SequenceBook:
    """What was delivered: the highest stream sequence per public subject.

    Pure state; the client consults it for every message, live or recovered."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def is_duplicate(self, subject: str, seq: int) -> bool:
        """Whether `seq` on `subject` was already delivered."""
        h = self.last.get(subject)
        return h is not None and seq <= h

    def missing_after(self, subject: str, last_seq: int | None, floor: int = 0) -> int | None:
        """The first missed sequence to read back from, if `last_seq` reveals a gap.

        `floor` is the highest sequence delivered on the subscription (a wildcard's other
        subjects): a subject seen for the first time whose previous message is above it was
        published while we were subscribed, so we missed it."""
        if last_seq == 0 and subject in self.last:
            # Nothing before it is stored any more, yet we delivered an earlier one: the stream
            # dropped what followed ours (retention); reading back from there reports it.
            return self.last[subject] + 1
        h = self.last.get(subject, floor)
        if h <= 0 or last_seq is None or last_seq <= h:
            return None
        return h + 1

    def delivered(self, subject: str, seq: int) -> None:
        """Record that `seq` on `subject` was delivered."""
        if seq > self.last.get(subject, 0):
            self.last[subject] = seq

    def forget(self, keep: set[str]) -> None:
        """Drop subjects of streams that are no longer read (after a tier change)."""
        streams = {subjects.stream_of(p) for p in keep}
        for subject in [s for s in self.last if subjects.stream_of(s) not in streams]:
            del self.last[subject]
