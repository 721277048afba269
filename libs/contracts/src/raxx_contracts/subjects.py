"""NATS subject names. Publishers call the builders; subscribers use the patterns.

Every symbol is encoded with :func:`raxx_contracts.symbols.encode_symbol`, so a subject built
here never contains a wildcard that a caller did not ask for.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import NamedTuple

from raxx_contracts.enums import CHANNELS_BY_ASSET, AssetClass, Channel, Path
from raxx_contracts.errors import ContractError
from raxx_contracts.symbols import decode_symbol, encode_symbol

MD_PREFIX = "md"
INTEREST = "md.ctl.interest"
"""Root of the interest request subjects; a credential publishes only on its own
`md.ctl.interest.<tier>.<user token>` (see :func:`interest`), never on the bare root."""
INTEREST_ANY = f"{INTEREST}.*.*"
"""What the hub answers (queue group) and the settler observes: every user's request subject."""
BILLING_TIER_CHANGED = "billing.tier.changed"
BROKER_HANDOFF_EVENTS = "broker.handoff.events"

DEAD_LETTER_PREFIX = "dlq"
"""Root of dead-letter subjects: `dlq.<service>.<original subject>` (see :func:`dead_letter`)."""


def dead_letter(service: str, subject: str) -> str:
    """Where `service` parks a message from `subject` that it can never process."""
    if not service or any(c in service for c in " .*>"):
        raise ContractError(f"bad service name for a dead-letter subject: {service!r}")
    return f"{DEAD_LETTER_PREFIX}.{service}.{subject}"


SETTLES_STREAM = "SETTLES"
"""JetStream stream holding settles and batch markers; declared by eod-settler only."""
SETTLES_ANY = "md.settle.>"
SETTLE_STOCKS_ANY = "md.settle.stocks.>"
SETTLE_OPTIONS_ANY = "md.settle.options.>"
SETTLE_DONE_ANY = "md.settle.done.*"
SETTLES_STREAM_SUBJECTS = (SETTLE_STOCKS_ANY, SETTLE_OPTIONS_ANY, SETTLE_DONE_ANY)

CORPACTIONS_STREAM = "CORPACTIONS"
"""JetStream stream holding corporate actions; declared by eod-settler only."""
CORPACTIONS_ANY = "md.corpactions.>"
CORPACTIONS_STREAM_SUBJECTS = (CORPACTIONS_ANY,)

BILLING_STREAM = "BILLING"
"""JetStream stream holding `billing.tier.changed`."""

HELD_OPTIONS_BUCKET = "MBT_HELD_OPTIONS"
"""KV bucket MBT maintains: key = encoded OCC symbol, value = HeldOptionContract."""

USER_INBOX_ROOT = "_INBOX_U"

HUB_INTEREST_BUCKET = "MDH_INTEREST"
"""KV bucket market-data-hub owns. Other services may read exactly one record kind from it:
:func:`upstream_held_key` (value: :class:`raxx_contracts.UpstreamHeld`), the symbols Alpaca
acknowledged for the hub's single upstream connection, which is bounded by the plan's symbol
cap and holds only symbols users were allowed to lease."""


def upstream_held_key(asset: AssetClass) -> str:
    """Key of the leader's acknowledged upstream set for `asset` in :data:`HUB_INTEREST_BUCKET`."""
    return f"upstream.{asset}"


USER_TIERS_BUCKET = "TG_USER_TIERS"
"""KV bucket tier-gate owns (writes) and the hub watches: key = :func:`user_tier_key`, value =
the `TierChanged` tier-gate applied last for that user. The hub refuses an HTTP token whose
tier ranks above the user's current tier (a downgrade supersedes it at once). Entries expire
after the longest credential lifetime (a token issued before a change is dead by then)."""


def market(path: Path, asset: AssetClass, channel: Channel, symbol: str) -> str:
    """Subject of one market-data message, e.g. `md.rt.stocks.quotes.BRK_2EB`."""
    if channel not in CHANNELS_BY_ASSET[asset]:
        raise ContractError(f"channel {channel} does not exist for {asset}")
    return f"{MD_PREFIX}.{path}.{asset}.{channel}.{encode_symbol(symbol)}"


def rt(asset: AssetClass, channel: Channel, symbol: str) -> str:
    """Real-time subject for `symbol`."""
    return market(Path.RT, asset, channel, symbol)


def delayed(asset: AssetClass, channel: Channel, symbol: str) -> str:
    """Delayed-path subject for `symbol`."""
    return market(Path.DELAYED, asset, channel, symbol)


def market_pattern(
    path: Path | None = None,
    asset: AssetClass | None = None,
    channel: Channel | None = None,
    symbol: str | None = None,
) -> str:
    """Subscription pattern; each omitted part is a `*` wildcard token."""
    parts = [
        MD_PREFIX,
        str(path) if path else "*",
        str(asset) if asset else "*",
        str(channel) if channel else "*",
        encode_symbol(symbol) if symbol is not None else "*",
    ]
    return ".".join(parts)


def path_root(path: Path, asset: AssetClass | None = None) -> str:
    """`md.rt.>`, `md.delayed.stocks.>` and the like (for permissions and streams)."""
    return f"{MD_PREFIX}.{path}.{asset}.>" if asset else f"{MD_PREFIX}.{path}.>"


class MarketSubject(NamedTuple):
    """A parsed market-data subject."""

    path: Path
    asset: AssetClass
    channel: Channel
    symbol: str


def parse_market(subject: str) -> MarketSubject:
    """Parse a subject built by :func:`market`; raise ContractError for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != MD_PREFIX:
        raise ContractError(f"not a market-data subject: {subject!r}")
    try:
        path, asset, channel = Path(parts[1]), AssetClass(parts[2]), Channel(parts[3])
    except ValueError as exc:
        raise ContractError(f"not a market-data subject: {subject!r}") from exc
    if channel not in CHANNELS_BY_ASSET[asset]:
        raise ContractError(f"channel {channel} does not exist for {asset}")
    return MarketSubject(path, asset, channel, decode_symbol(parts[4]))


def to_delayed(rt_subject: str) -> str:
    """The delayed twin of a real-time subject (same tail)."""
    if not rt_subject.startswith(f"{MD_PREFIX}.{Path.RT}."):
        raise ContractError(f"not a real-time subject: {rt_subject!r}")
    return f"{MD_PREFIX}.{Path.DELAYED}.{rt_subject[len(MD_PREFIX) + len(Path.RT) + 2 :]}"


def settle(asset: AssetClass, date: dt.date, symbol: str) -> str:
    """`md.settle.<asset>.<YYYY-MM-DD>.<SYM>`."""
    return f"{MD_PREFIX}.settle.{asset}.{date.isoformat()}.{encode_symbol(symbol)}"


def settle_done(date: dt.date) -> str:
    """`md.settle.done.<YYYY-MM-DD>`: batch-complete marker."""
    return f"{MD_PREFIX}.settle.done.{date.isoformat()}"


def settle_msg_id(date: dt.date, symbol: str, revision: int) -> str:
    """JetStream `Nats-Msg-Id` for one settle revision: dedup key (date, symbol, revision)."""
    return f"settle:{date.isoformat()}:{encode_symbol(symbol)}:{revision}"


def corpactions(date: dt.date, symbol: str) -> str:
    """`md.corpactions.<YYYY-MM-DD>.<SYM>`: corporate actions of `symbol` effective on `date`."""
    return f"{MD_PREFIX}.corpactions.{date.isoformat()}.{encode_symbol(symbol)}"


def corpaction_msg_id(date: dt.date, symbol: str, action_id: str, revision: int) -> str:
    """`Nats-Msg-Id` of one action revision: dedup key (date, symbol, action id, revision)."""
    digest = hashlib.sha256(action_id.encode()).hexdigest()[:32]
    return f"corpaction:{date.isoformat()}:{encode_symbol(symbol)}:{digest}:{revision}"


def user_token(user_id: str) -> str:
    """A stable subject token for a user id (any characters), unguessable from outside."""
    digest = hashlib.sha256(user_id.encode()).digest()[:15]
    return base64.b32encode(digest).decode().rstrip("=")


def user_tier_key(user_id: str) -> str:
    """Key of a user's entry in :data:`USER_TIERS_BUCKET` (a valid KV key for any user id)."""
    return user_token(user_id)


def user_inbox_prefix(user_id: str) -> str:
    """The inbox prefix a user's client must use; its credential may read only below it."""
    return f"{USER_INBOX_ROOT}.{user_token(user_id)}"


_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_TIER_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _check_tier(tier: str) -> str:
    if not tier or not set(tier) <= _TIER_ALPHABET:
        raise ContractError(f"not a tier name usable in a subject: {tier!r}")
    return tier


def _check_user_token(token: str) -> str:
    if len(token) != 24 or not set(token) <= _TOKEN_ALPHABET:
        raise ContractError(f"not a user token: {token!r}")
    return token


def interest(tier: str, user_token_: str) -> str:
    """`md.ctl.interest.<tier>.<user token>`: the one subject a credential may request on.

    The tier's permission template lets a user publish only here, with its own token, so a
    responder learns who asks (and at which tier) from the subject the server let through.
    """
    return f"{INTEREST}.{_check_tier(tier)}.{_check_user_token(user_token_)}"


def interest_template(tier: str, tag: str) -> str:
    """The subject of :func:`interest` with the user token as a NATS template tag
    (`{{tag(<tag>)}}`), for a tier's scoped signing key."""
    return f"{INTEREST}.{_check_tier(tier)}.{{{{tag({tag})}}}}"


def user_inbox_template(tag: str) -> str:
    """`_INBOX_U.{{tag(<tag>)}}.>`: a user's own inbox, for a tier's scoped signing key."""
    return f"{USER_INBOX_ROOT}.{{{{tag({tag})}}}}.>"


class InterestSubject(NamedTuple):
    """A parsed interest request subject: who asks, at which tier."""

    tier: str
    user_token: str


def parse_interest(subject: str) -> InterestSubject:
    """Parse a subject built by :func:`interest`; raise ContractError for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:3]) != INTEREST:
        raise ContractError(f"not an interest subject: {subject!r}")
    return InterestSubject(_check_tier(parts[3]), _check_user_token(parts[4]))


def is_user_reply(reply: str, user_token_: str) -> bool:
    """Whether `reply` lies inside the user's own inbox space (`_INBOX_U.<token>.` + more)."""
    prefix = f"{USER_INBOX_ROOT}.{user_token_}."
    return (
        reply.startswith(prefix)
        and len(reply) > len(prefix)
        and not any(c in reply for c in " \t\r\n*>")
    )


# --- Gap-free delivery: capture streams, republish headers, recovery (issue 13) -------------

CAPTURE_PREFIX = "mdcap"
"""The hub publishes every market-data message on `mdcap.<path>.<asset>.<channel>.<SYM>` (only
the hub may). A capture stream per (path, asset) stores it and *republishes* it on the public
`md.<path>...` subject with the headers below, so a subscriber sees only what was stored (the
capture is as complete as what subscribers saw) and can detect a gap per subject."""

HDR_STREAM = "Nats-Stream"
HDR_SUBJECT = "Nats-Subject"
HDR_SEQUENCE = "Nats-Sequence"
HDR_LAST_SEQUENCE = "Nats-Last-Sequence"
"""Sequence of the previous message *on the same subject* in the same stream (0: none kept).
A consumer that last saw sequence `s` on a subject and then receives `Nats-Last-Sequence`
other than `s` has missed the messages in between; it recovers them from the stream with a
direct get (`next_by_subj` = the capture subject, from `s + 1`)."""
HDR_TIME_STAMP = "Nats-Time-Stamp"
HDR_NUM_PENDING = "Nats-Num-Pending"
HDR_SOURCE_SEQUENCE = "Raxx-Source-Sequence"
"""On the delayed path only: the real-time capture stream's sequence of the message this one
delays. The hub's delay line resumes after the one on the last message its delayed stream
stored, so what a NATS outage swallowed is released again, not skipped."""


def capture_stream(path: Path, asset: AssetClass) -> str:
    """`MD_RT_STOCKS`, `MD_DELAYED_OPTIONS`, ...: one stream per (path, asset), so a tier's
    credential is allowed to read exactly the streams of the paths it may subscribe to."""
    return f"MD_{str(path).upper()}_{str(asset).upper()}"


CAPTURE_STREAMS = tuple(capture_stream(p, a) for p in Path for a in AssetClass)


def capture_root(path: Path, asset: AssetClass | None = None) -> str:
    """`mdcap.rt.stocks.>` (a capture stream's subjects) or `mdcap.rt.>`."""
    return f"{CAPTURE_PREFIX}.{path}.{asset}.>" if asset else f"{CAPTURE_PREFIX}.{path}.>"


def to_capture(subject: str) -> str:
    """`md.rt.stocks.quotes.X` -> `mdcap.rt.stocks.quotes.X` (also for patterns)."""
    if not subject.startswith(f"{MD_PREFIX}."):
        raise ContractError(f"not a market-data subject: {subject!r}")
    return f"{CAPTURE_PREFIX}.{subject[len(MD_PREFIX) + 1 :]}"


def from_capture(subject: str) -> str:
    """`mdcap.rt.stocks.quotes.X` -> `md.rt.stocks.quotes.X` (also for patterns)."""
    if not subject.startswith(f"{CAPTURE_PREFIX}."):
        raise ContractError(f"not a capture subject: {subject!r}")
    return f"{MD_PREFIX}.{subject[len(CAPTURE_PREFIX) + 1 :]}"


def stream_of(subject: str) -> str:
    """The capture stream holding a public or capture subject or pattern (`md.rt.stocks...`)."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] not in (MD_PREFIX, CAPTURE_PREFIX):
        raise ContractError(f"not a market-data subject: {subject!r}")
    try:
        return capture_stream(Path(parts[1]), AssetClass(parts[2]))
    except ValueError as exc:
        raise ContractError(f"not a market-data subject: {subject!r}") from exc


def direct_get(stream: str) -> str:
    """`$JS.API.DIRECT.GET.<stream>`: the stateless read a credential may use on the streams
    its tier may read (batch requests with `next_by_subj`, `start_time`, `batch`)."""
    return f"$JS.API.DIRECT.GET.{stream}"


# --- Replay of archived sessions (issue 13) ------------------------------------------------

REPLAY = "md.ctl.replay"
"""Root of replay request subjects; a credential publishes only on its own
`md.ctl.replay.<tier>.<user token>` (see :func:`replay`). The replay is delivered inside the
requester's own inbox (`_INBOX_U.<token>.`), which only that user may subscribe to."""
REPLAY_ANY = f"{REPLAY}.*.*"

ARCHIVE_BUCKET = "MD_ARCHIVE"
"""NATS Object Store bucket of the session archive in `make run` (Parquet, by date and symbol)."""


def replay(tier: str, user_token_: str) -> str:
    """`md.ctl.replay.<tier>.<user token>`: the one replay subject a credential may use."""
    return f"{REPLAY}.{_check_tier(tier)}.{_check_user_token(user_token_)}"


def replay_template(tier: str, tag: str) -> str:
    """The subject of :func:`replay` with the user token as a template tag."""
    return f"{REPLAY}.{_check_tier(tier)}.{{{{tag({tag})}}}}"


def parse_replay(subject: str) -> InterestSubject:
    """Parse a subject built by :func:`replay` (who asks, at which tier)."""
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:3]) != REPLAY:
        raise ContractError(f"not a replay subject: {subject!r}")
    return InterestSubject(_check_tier(parts[3]), _check_user_token(parts[4]))
