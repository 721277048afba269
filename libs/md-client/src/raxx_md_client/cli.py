"""`raxx-md tail [--tier free] AAPL MSFT`: live quotes from a running dev stack."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys

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
    Trade,
    TradingStatus,
    default_policy,
)

from raxx_md_client.client import MdClient
from raxx_md_client.credentials import Credential, TierGateClient, TierGateError
from raxx_md_client.recovery import Gap, MdClientError

DEFAULT_TIER_GATE = os.environ.get("RAXX_MD_TIER_GATE", "http://127.0.0.1:8082")
DEFAULT_NATS = os.environ.get("RAXX_MD_NATS", "nats://127.0.0.1:14222")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raxx-md", description="Raxx market-data consumer client")
    sub = p.add_subparsers(dest="command", required=True)
    tail = sub.add_parser("tail", help="print live market data, one line per message")
    tail.add_argument("symbols", nargs="+", metavar="SYMBOL")
    tail.add_argument("--tier", default="free", choices=default_policy().tier_order)
    tail.add_argument("--user", default=None, help="dev user id (default: dev-<login>)")
    tail.add_argument("--asset", default="stocks", choices=[a.value for a in AssetClass])
    tail.add_argument(
        "--channel", action="append", choices=[c.value for c in Channel],
        help="repeatable; default quotes",
    )  # fmt: skip
    tail.add_argument("--tier-gate", default=DEFAULT_TIER_GATE, help="tier-gate base URL")
    tail.add_argument("--nats", default=DEFAULT_NATS, help="NATS URL")
    tail.add_argument("--identity", default=None, help="use this identity JWT (not dev)")
    tail.add_argument("-v", "--verbose", action="store_true")
    return p


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


async def _tail(args: argparse.Namespace) -> int:
    tg = TierGateClient(args.tier_gate)
    user = args.user or f"dev-{getpass.getuser()}"
    asset = AssetClass(args.asset)
    channels = [Channel(c) for c in (args.channel or ["quotes"])]
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
        return 2

    async def source(public_key: str) -> Credential:
        return await tg.issue(identity, public_key)

    client = MdClient(args.nats, source)
    try:
        await client.start()
    except TierGateError as exc:
        _err(str(exc))
        await tg.aclose()
        return 2
    except Exception as exc:
        _err(f"cannot connect to NATS at {args.nats} ({exc}). Is the stack running (`make run`)?")
        await tg.aclose()
        return 2
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


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (`raxx-md`)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="raxx-md: %(levelname)s %(message)s",
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(_tail(args))
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
