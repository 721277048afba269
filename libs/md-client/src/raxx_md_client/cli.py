"""`raxx-md tail [--tier free] AAPL MSFT`: live quotes from a running dev stack;
`raxx-md replay --date D [--from T] [--speed N|max] AAPL`: a recorded session."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import logging
import os
import signal
import sys
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from raxx_contracts import (
    AssetClass,
    Bar,
    Channel,
    ErrorReply,
    InvalidSymbolError,
    OptionQuote,
    OptionTrade,
    Quote,
    ReplayProgress,
    Trade,
    TradingStatus,
    default_policy,
)
from raxx_contracts.replay import MAX_REPLAY_SPEED

from raxx_md_client.client import MdClient
from raxx_md_client.credentials import Credential, TierGateClient, TierGateError
from raxx_md_client.recovery import Gap, MdClientError
from raxx_md_client.replay import ReplayMessage, ReplayRefused

DEFAULT_TIER_GATE = os.environ.get("RAXX_MD_TIER_GATE", "http://127.0.0.1:8082")
DEFAULT_NATS = os.environ.get("RAXX_MD_NATS", "nats://127.0.0.1:14222")
NEW_YORK = ZoneInfo("America/New_York")


def _connection_args(p: argparse.ArgumentParser, channels_default: str) -> None:
    """What every subcommand needs to get a credential and data: tier, user, asset, channels,
    tier-gate, NATS, an identity, verbosity."""
    p.add_argument("--tier", default="free", choices=default_policy().tier_order)
    p.add_argument("--user", default=None, help="dev user id (default: dev-<login>)")
    p.add_argument("--asset", default="stocks", choices=[a.value for a in AssetClass])
    p.add_argument(
        "--channel", action="append", choices=[c.value for c in Channel],
        help=f"repeatable; default {channels_default}",
    )  # fmt: skip
    p.add_argument("--tier-gate", default=DEFAULT_TIER_GATE, help="tier-gate base URL")
    p.add_argument("--nats", default=DEFAULT_NATS, help="NATS URL")
    p.add_argument("--identity", default=None, help="use this identity JWT (not dev)")
    p.add_argument("-v", "--verbose", action="store_true")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raxx-md", description="Raxx market-data consumer client")
    sub = p.add_subparsers(dest="command", required=True)
    tail = sub.add_parser("tail", help="print live market data, one line per message")
    tail.add_argument("symbols", nargs="+", metavar="SYMBOL")
    _connection_args(tail, "quotes")
    rp = sub.add_parser("replay", help="replay a recorded session, one line per message")
    rp.add_argument("symbols", nargs="+", metavar="SYMBOL")
    rp.add_argument("--date", required=True, type=_date, help="session date YYYY-MM-DD")
    rp.add_argument(
        "--from", dest="start", default=None,
        help="start time: HH:MM[:SS] (America/New_York, on --date) or an ISO 8601 instant",
    )  # fmt: skip
    rp.add_argument("--speed", default="max", type=_speed, help="N times real time, or max")
    _connection_args(rp, "quotes and trades")
    return p


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a speed (N > 0 or max): {text!r}") from exc
    if not 0 < value <= MAX_REPLAY_SPEED:
        raise argparse.ArgumentTypeError(f"speed must be in (0, {MAX_REPLAY_SPEED:g}] or max")
    return value


def replay_start(date: dt.date, text: str | None) -> dt.datetime | None:
    """`--from`: a time of day in New York on `date`, or a full ISO 8601 instant."""
    if text is None:
        return None
    try:
        return dt.datetime.combine(date, dt.time.fromisoformat(text), NEW_YORK)
    except ValueError:
        pass
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"--from is neither HH:MM[:SS] nor an ISO instant: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=NEW_YORK)


def format_event(event: BaseModel | Gap, path: str) -> str:
    """One human line per message (and per gap that could not be filled)."""
    if isinstance(event, Gap):
        return (
            f"--:--:--  GAP      {event.subject} seq {event.from_seq}..{event.to_seq}"
            f" not recoverable ({event.reason})"
        )
    ts = getattr(event, "timestamp", None)
    clock = ts.strftime("%H:%M:%S.%f")[:-3] if ts is not None else "--:--:--"
    sym = f"{getattr(event, 'symbol', '?'):<8}"
    tag = f"[{path}]"
    if isinstance(event, Quote | OptionQuote):
        return (
            f"{clock}  {sym} quote  bid {event.bid_price} x {event.bid_size}"
            f"  ask {event.ask_price} x {event.ask_size}  {tag}"
        )
    if isinstance(event, Trade | OptionTrade):
        return f"{clock}  {sym} trade  {event.price} x {event.size}  {tag}"
    if isinstance(event, Bar):
        return (
            f"{clock}  {sym} bar    o {event.open} h {event.high} l {event.low} c {event.close}"
            f"  v {event.volume}  {tag}"
        )
    if isinstance(event, TradingStatus):
        return f"{clock}  {sym} status {event.status_code} {event.status_message}  {tag}"
    return f"{clock}  {sym} {event!r}"


def _err(text: str) -> None:
    print(f"raxx-md: {text}", file=sys.stderr)


async def _open(args: argparse.Namespace, user: str) -> tuple[TierGateClient, MdClient] | None:
    """A started client on a tier-gate credential for `user`; None once the error is said."""
    tg = TierGateClient(args.tier_gate)
    try:
        identity = args.identity or await tg.dev_identity(user, args.tier)
    except TierGateError as exc:
        if exc.code == "unreachable":
            _err(f"cannot reach tier-gate at {args.tier_gate}. Is the stack running (`make run`)?")
        elif exc.code == "not_found":
            _err("tier-gate is not in dev mode (TG_ENV=dev); pass --identity <JWT> instead")
        else:
            _err(str(exc))
        await tg.aclose()
        return None

    async def source(public_key: str) -> Credential:
        return await tg.issue(identity, public_key)

    client = MdClient(args.nats, source)
    try:
        await client.start()
    except TierGateError as exc:
        _err(str(exc))
        await tg.aclose()
        return None
    except Exception as exc:
        _err(f"cannot connect to NATS at {args.nats} ({exc}). Is the stack running (`make run`)?")
        await tg.aclose()
        return None
    return tg, client


async def _tail(args: argparse.Namespace) -> int:
    user = args.user or f"dev-{getpass.getuser()}"
    asset = AssetClass(args.asset)
    channels = [Channel(c) for c in (args.channel or ["quotes"])]
    opened = await _open(args, user)
    if opened is None:
        return 2
    tg, client = opened
    try:
        try:
            reply = await client.subscribe(args.symbols, asset=asset, channels=channels)
        except InvalidSymbolError as exc:
            _err(f"invalid symbol: {exc}")
            return 2
        path = client.credential.paths[asset].value
        _err(
            f"user {user} tier {client.tier}: {asset.value} {'/'.join(channels)} on the "
            f"{'real-time' if path == 'rt' else 'delayed'} path for {' '.join(args.symbols)}"
            " (Ctrl-C to stop)"
        )
        if reply is None:
            _err("warning: no answer from market-data-hub on md.ctl.interest; waiting anyway")
        elif isinstance(reply, ErrorReply):
            _err(f"hub refused: {reply.message}")
        else:
            for rej in reply.rejected:
                _err(f"{rej.symbol}: {rej.reason} ({rej.message})")
            if reply.pending:
                _err(f"not yet acknowledged by Alpaca: {' '.join(reply.pending)}")
        while True:
            try:
                event = await client.next()
            except MdClientError as exc:  # e.g. a read-back refused: say so, keep tailing
                _err(str(exc))
                continue
            path = client.credential.paths[asset].value
            print(format_event(event, path), flush=True)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        await tg.aclose()
    return 0


async def _replay(args: argparse.Namespace) -> int:
    try:
        start = replay_start(args.date, args.start)
    except ValueError as exc:
        _err(str(exc))
        return 2
    opened = await _open(args, args.user or f"dev-{getpass.getuser()}")
    if opened is None:
        return 2
    tg, client = opened
    asset = AssetClass(args.asset)
    channels = [Channel(c) for c in (args.channel or ["quotes", "trades"])]
    path = client.credential.paths[asset].value
    try:
        async for item in client.replay(
            args.date, args.symbols, asset=asset, channels=channels, start=start,
            speed=args.speed,
        ):  # fmt: skip
            if isinstance(item, ReplayMessage):
                if item.event is not None:
                    print(format_event(item.event, path), flush=True)
                else:
                    clock = dt.datetime.fromtimestamp(item.ts_ns / 1e9, dt.UTC)
                    print(f"{clock:%H:%M:%S.%f}  {item.subject}", flush=True)
            elif isinstance(item, ReplayProgress):
                if args.verbose:
                    _err(f"progress: {item.messages} messages")
            else:
                _err(f"end of replay ({item.reason}): {item.messages} messages")
                return 0 if item.reason == "complete" else 1
    except ReplayRefused as exc:
        _err(f"replay refused: {exc.code}: {exc.message}")
        return 2
    except InvalidSymbolError as exc:
        _err(f"invalid symbol: {exc}")
        return 2
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        await tg.aclose()
    return 1


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (`raxx-md`)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="raxx-md: %(levelname)s %(message)s",
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(_replay(args) if args.command == "replay" else _tail(args))
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        print("", file=sys.stderr)
        return 0
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
