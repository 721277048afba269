"""Shared base for every wire model."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from raxx_contracts.symbols import validate_symbol

Symbol = Annotated[str, AfterValidator(validate_symbol)]
"""A symbol as Alpaca spells it (`AAPL`, `BRK.B`, `AAPL240315C00172500`), encodable in a subject."""


class WireModel(BaseModel):
    """Frozen; unknown fields are ignored so old consumers tolerate added fields."""

    model_config = ConfigDict(frozen=True, extra="ignore", ser_json_timedelta="float")
