"""Simulated brokerage accounts: orders fill against the sim's live price."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from alpaca_sim.options import asset_id, is_occ

if TYPE_CHECKING:
    from alpaca_sim.state import SimState


class OrderError(Exception):
    """An order the broker refuses, with Alpaca's status and code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def _num(x: float) -> str:
    return f"{x:.10g}" if abs(x) < 1e15 else str(x)


@dataclass
class Position:
    """Holdings of one symbol."""

    symbol: str
    qty: float = 0.0
    cost: float = 0.0


@dataclass
class Account:
    """One simulated account."""

    id: str
    number: str
    cash: float
    created_at: datetime
    orders: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)


class Broker:
    """Accounts by id; the API key owns the account `settings.key`, OAuth users their own."""

    def __init__(self, sim: SimState) -> None:
        self.sim = sim
        self.accounts: dict[str, Account] = {}

    def account(self, account_id: str) -> Account:
        """The account, opened with the starting cash on first use."""
        acct = self.accounts.get(account_id)
        if acct is None:
            num = "PA" + str(uuid.uuid5(uuid.NAMESPACE_OID, account_id).int)[:10]
            acct = Account(account_id, num, self.sim.settings.starting_cash, datetime.now(UTC))
            self.accounts[account_id] = acct
        return acct

    def _price(self, symbol: str, side: str) -> float:
        st = self.sim.live.state(symbol)
        if side == "buy":
            return st.ask or st.price
        return st.bid or st.price

    def submit(self, acct: Account, body: dict[str, Any]) -> dict[str, Any]:
        """Validate, record and (when marketable) fill an order; return it in Alpaca's shape."""
        symbol = str(body.get("symbol") or "").upper()
        side = body.get("side")
        otype = body.get("type") or body.get("order_type") or "market"
        tif = body.get("time_in_force") or "day"
        if not symbol or side not in ("buy", "sell"):
            raise OrderError(422, 40010001, "symbol and side (buy|sell) are required")
        if otype not in ("market", "limit", "stop", "stop_limit", "trailing_stop"):
            raise OrderError(422, 40010001, f"invalid order type {otype}")
        coid = str(body.get("client_order_id") or uuid.uuid4())
        if any(o["client_order_id"] == coid for o in acct.orders):
            raise OrderError(422, 40010001, "client_order_id must be unique")
        qty = body.get("qty")
        notional = body.get("notional")
        if (qty is None) == (notional is None):
            raise OrderError(422, 40010001, "qty or notional is required")
        price = self._price(symbol, side)
        q = float(qty) if qty is not None else round(float(str(notional)) / price, 9)
        if q <= 0:
            raise OrderError(422, 40010001, "qty must be > 0")
        limit = body.get("limit_price")
        now = datetime.now(UTC)
        order: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "client_order_id": coid,
            "created_at": _iso(now),
            "updated_at": _iso(now),
            "submitted_at": _iso(now),
            "filled_at": None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": asset_id(symbol),
            "symbol": symbol,
            "asset_class": "us_option" if is_occ(symbol) else "us_equity",
            "notional": _num(float(notional)) if notional is not None else None,
            "qty": _num(q) if qty is not None else None,
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": body.get("order_class") or "simple",
            "order_type": otype,
            "type": otype,
            "side": side,
            "time_in_force": tif,
            "limit_price": str(limit) if limit is not None else None,
            "stop_price": str(body["stop_price"]) if body.get("stop_price") else None,
            "status": "new",
            "extended_hours": bool(body.get("extended_hours", False)),
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "position_intent": body.get("position_intent"),
        }
        marketable = otype == "market" or (
            otype == "limit"
            and limit is not None
            and (float(limit) >= price if side == "buy" else float(limit) <= price)
        )
        if marketable:
            fill = price  # a marketable limit fills at the touch, like a market order
            cost = fill * q * (100 if is_occ(symbol) else 1)
            if side == "buy" and cost > acct.cash:
                raise OrderError(403, 40310000, "insufficient buying power")
            self._fill(acct, order, symbol, side, q, fill, cost, now)
        acct.orders.append(order)
        return order

    def _fill(
        self,
        acct: Account,
        order: dict[str, Any],
        symbol: str,
        side: str,
        q: float,
        price: float,
        cost: float,
        now: datetime,
    ) -> None:
        pos = acct.positions.setdefault(symbol, Position(symbol))
        if side == "buy":
            acct.cash -= cost
            pos.cost += cost
            pos.qty += q
        else:
            if pos.qty > 0:
                pos.cost -= pos.cost * min(q, pos.qty) / pos.qty
            acct.cash += cost
            pos.qty -= q
        if abs(pos.qty) < 1e-12:
            del acct.positions[symbol]
        order.update(
            status="filled",
            filled_qty=_num(q),
            filled_avg_price=_num(price),
            filled_at=_iso(now),
            updated_at=_iso(now),
        )

    def cancel(self, acct: Account, order_id: str) -> dict[str, Any]:
        """Cancel an open order (422 when it is already done)."""
        order = self.find(acct, order_id)
        if order["status"] not in ("new", "accepted", "partially_filled", "pending_new"):
            raise OrderError(422, 42210000, f"order is not cancelable (status {order['status']})")
        now = _iso(datetime.now(UTC))
        order.update(status="canceled", canceled_at=now, updated_at=now)
        return order

    def find(self, acct: Account, order_id: str) -> dict[str, Any]:
        """An order of this account by id (404 otherwise)."""
        for order in acct.orders:
            if order["id"] == order_id:
                return order
        raise OrderError(404, 40410000, "order not found")

    def position_json(self, pos: Position) -> dict[str, Any]:
        """`Position` in Alpaca's shape."""
        st = self.sim.live.state(pos.symbol)
        mult = 100 if is_occ(pos.symbol) else 1
        value = st.price * pos.qty * mult
        avg = pos.cost / (pos.qty * mult) if pos.qty else 0.0
        pl = value - pos.cost
        return {
            "asset_id": asset_id(pos.symbol),
            "symbol": pos.symbol,
            "exchange": "NASDAQ",
            "asset_class": "us_option" if mult == 100 else "us_equity",
            "asset_marginable": mult == 1,
            "avg_entry_price": _num(round(avg, 4)),
            "qty": _num(pos.qty),
            "qty_available": _num(pos.qty),
            "side": "long" if pos.qty > 0 else "short",
            "market_value": _num(round(value, 2)),
            "cost_basis": _num(round(pos.cost, 2)),
            "unrealized_pl": _num(round(pl, 2)),
            "unrealized_plpc": _num(round(pl / pos.cost, 6) if pos.cost else 0.0),
            "unrealized_intraday_pl": _num(round(pl, 2)),
            "unrealized_intraday_plpc": _num(round(pl / pos.cost, 6) if pos.cost else 0.0),
            "current_price": _num(st.price),
            "lastday_price": _num(st.anchor),
            "change_today": _num(round((st.price - st.anchor) / st.anchor, 6)),
        }

    def account_json(self, acct: Account) -> dict[str, Any]:
        """`TradeAccount` in Alpaca's shape."""
        long_value = sum(
            float(self.position_json(p)["market_value"]) for p in acct.positions.values()
        )
        equity = acct.cash + long_value
        return {
            "id": acct.id,
            "account_number": acct.number,
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "currency": "USD",
            "buying_power": _num(round(acct.cash, 2)),
            "regt_buying_power": _num(round(acct.cash, 2)),
            "daytrading_buying_power": "0",
            "non_marginable_buying_power": _num(round(acct.cash, 2)),
            "cash": _num(round(acct.cash, 2)),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": _num(round(equity, 2)),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": _iso(acct.created_at),
            "trade_suspended_by_user": False,
            "multiplier": "1",
            "shorting_enabled": False,
            "equity": _num(round(equity, 2)),
            "last_equity": _num(self.sim.settings.starting_cash),
            "long_market_value": _num(round(long_value, 2)),
            "short_market_value": "0",
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "options_buying_power": _num(round(acct.cash, 2)),
            "options_approved_level": 2,
            "options_trading_level": 2,
        }
