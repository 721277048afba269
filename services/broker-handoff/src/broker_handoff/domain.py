"""Pure rules of the handoff: states, idempotency keys, eligibility, order requests. No IO."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from raxx_contracts import TierPolicy, UnknownTierError

BrokerEnv = Literal["live", "paper"]
IDEMPOTENCY_KEY_MAX = 200
CLIENT_ORDER_ID_PREFIX = "raxx-"


class AccessToken:
    """A provider access token; its repr and str never show the value (tracebacks, logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("empty access token")
        self._value = value

    def reveal(self) -> str:
        """The raw token, for the one place that must send it (Vault, the provider)."""
        return self._value

    def __repr__(self) -> str:
        return "AccessToken('**********')"

    __str__ = __repr__


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of `text` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()


def new_state() -> str:
    """A fresh, unguessable OAuth `state` (256 bits)."""
    return secrets.token_urlsafe(32)


def state_key(state: str) -> str:
    """What the database stores for a state: its hash, so a database read cannot replay it."""
    return sha256_hex("state:" + state)


COOKIE_PREFIX = "bh_flow_"


def new_binding() -> str:
    """The secret a flow-binding cookie carries (256 bits); only its hash is stored."""
    return secrets.token_urlsafe(32)


def binding_hash(binding: str) -> str:
    """What the database stores for a binding cookie's value."""
    return sha256_hex("binding:" + binding)


def binding_matches(presented: str | None, stored_hash: str) -> bool:
    """Constant-time check of a presented binding cookie against the stored hash."""
    if not presented or not stored_hash:
        return False
    return hmac.compare_digest(binding_hash(presented), stored_hash)


def cookie_name(state: str) -> str:
    """The binding cookie of one flow: named after its state, so flows in two tabs coexist."""
    return COOKIE_PREFIX + sha256_hex("cookie:" + state)[:16]


def new_link() -> str:
    """A one-time browser link token (256 bits)."""
    return secrets.token_urlsafe(32)


def link_key(link: str) -> str:
    """What the database stores for a one-time link: its hash."""
    return sha256_hex("link:" + link)


def new_grant_id() -> str:
    """The id of one token written to Vault (its path is `grants/<id>`)."""
    return secrets.token_hex(16)


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636: 43-128 unreserved characters)."""
    return secrets.token_urlsafe(48)


def vault_key(user_id: str) -> str:
    """The per-user path component in Vault: a hash, so no user id or odd character in paths."""
    return sha256_hex("user:" + user_id)


def token_matches(presented: str, expected_sha256: str) -> bool:
    """Constant-time check of a presented bearer token against a configured SHA-256 hex."""
    return hmac.compare_digest(sha256_hex(presented), expected_sha256.strip().lower())


def eligible(policy: TierPolicy, tier: str) -> bool:
    """Whether `tier` may use the live-broker handoff; an unknown tier may not."""
    try:
        return policy.eligible_for_handoff(tier)
    except UnknownTierError:
        return False


def should_apply(stored_version: int | None, incoming_version: int) -> bool:
    """A tier change applies only when it is newer than what is stored (dupes/out-of-order)."""
    return stored_version is None or incoming_version > stored_version


class OrderRequest(BaseModel):
    """An order a user asks broker-handoff to place at their broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9.\-/ ]+$")
    side: Literal["buy", "sell"]
    type: Literal["market", "limit"] = "market"
    time_in_force: Literal["day", "gtc", "ioc", "fok", "opg", "cls"] = "day"
    qty: Decimal | None = Field(default=None, gt=0)
    notional: Decimal | None = Field(default=None, gt=0)
    limit_price: Decimal | None = Field(default=None, gt=0)
    client_order_id: str | None = Field(default=None, min_length=1, max_length=IDEMPOTENCY_KEY_MAX)

    @model_validator(mode="after")
    def _consistent(self) -> OrderRequest:
        if (self.qty is None) == (self.notional is None):
            raise ValueError("give exactly one of qty or notional")
        if self.type == "limit" and self.limit_price is None:
            raise ValueError("a limit order needs limit_price")
        if self.type == "market" and self.limit_price is not None:
            raise ValueError("a market order takes no limit_price")
        return self

    def fingerprint(self) -> str:
        """Hash of what the order does (not its id), to spot a key reused for another order."""
        body = self.model_dump(mode="json", exclude={"client_order_id"})
        return sha256_hex(json.dumps(body, sort_keys=True))


def client_order_id(user_id: str, idempotency_key: str) -> str:
    """The provider-side `client_order_id` for a user's idempotency key (deterministic).

    Scoped by user so two users' keys never collide; short enough for Alpaca's 128-char limit.
    """
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise ValueError("idempotency key must be 1-200 characters")
    return CLIENT_ORDER_ID_PREFIX + sha256_hex(f"{user_id}\x00{idempotency_key}")[:40]


def order_fields(order: OrderRequest, coid: str) -> dict[str, str]:
    """The provider request fields of an order (decimals as strings)."""
    fields: dict[str, str] = {
        "symbol": order.symbol,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.time_in_force,
        "client_order_id": coid,
    }
    if order.qty is not None:
        fields["qty"] = str(order.qty)
    if order.notional is not None:
        fields["notional"] = str(order.notional)
    if order.limit_price is not None:
        fields["limit_price"] = str(order.limit_price)
    return fields
