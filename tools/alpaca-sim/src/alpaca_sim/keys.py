"""The typed application key under which the simulator's state lives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from alpaca_sim.state import SimState

SIM_KEY: web.AppKey[SimState] = web.AppKey("sim")
IDENTITY_KEY: web.RequestKey[str] = web.RequestKey("identity", str)
