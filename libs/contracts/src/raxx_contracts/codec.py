"""The wire codec: JSON bytes in and out of the contract models.

Chosen by measurement (`uv run python scripts/bench_codec.py`, this 2-core box): orjson encodes
a quote dict in ~0.2 µs, msgspec a Struct in ~0.25 µs, pydantic's `model_dump_json` in ~4.5 µs
and building a model first costs ~14 µs. orjson on plain dicts is as fast as msgspec without a
second model system beside pydantic, so the hot path (the hub) builds dicts and encodes them with
:func:`dumps`; everything else encodes models with :func:`encode`, which yields the very same
bytes (a property test holds both to that). Decoding always validates with pydantic (~6 µs),
which consumers can afford at their rates; time text comes from
:func:`raxx_contracts.timestamps.format_epoch_ns` (~0.35 µs).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from raxx_contracts.errors import DecodeError
from raxx_contracts.timestamps import NanoDatetime

M = TypeVar("M", bound=BaseModel)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, NanoDatetime):
        return value.rfc3339()
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(payload: Mapping[str, Any]) -> bytes:
    """Encode a payload dict (hot path). Decimals become strings, NanoDatetime RFC 3339."""
    # NanoDatetime subclasses datetime; orjson would drop its nanoseconds unless asked not to
    # serialize datetimes natively.
    return orjson.dumps(payload, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def encode(model: BaseModel) -> bytes:
    """Encode a contract model to its wire JSON."""
    return model.__pydantic_serializer__.to_json(model)


def decode(model_type: type[M], data: bytes | str) -> M:
    """Decode and validate wire JSON as `model_type`; raise DecodeError when it does not fit."""
    try:
        return model_type.model_validate_json(data)
    except ValidationError as exc:
        raise DecodeError(f"payload is not a valid {model_type.__name__}: {exc}") from exc


def decimal_str(value: float | int | str | Decimal) -> str:
    """Shortest decimal string for an upstream number (floats as their repr, never binary noise)."""
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)
