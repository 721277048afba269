"""Issue 10 point 6 (tier-gate): every error answer is a code and a safe message.

A hostile client probing with garbage must learn nothing internal: no exception text from
the JOSE or validation libraries, no stack, and the same `{"error", "message"}` shape on
every path (including unknown routes and invalid bodies).
"""

from __future__ import annotations

import pytest

from tests.integration.fixtures_tier_gate import (
    TierGateStack,
    tier_gate_stack,
    tier_gate_stack_factory,
    unique_user,
)

pytestmark = pytest.mark.integration
__all__ = ["tier_gate_stack", "tier_gate_stack_factory"]

LEAKS = ("Error", "error for", "Traceback", "pydantic", "joserfc", "Invalid", "http://", "line ")


def _safe(body: dict[str, object]) -> str:
    assert set(body) >= {"error", "message"}, body
    message = str(body["message"])
    for leak in LEAKS:
        assert leak not in message, f"{leak!r} leaked in {message!r}"
    return message


async def test_error_answers_carry_a_code_and_a_safe_message(
    tier_gate_stack: TierGateStack,
) -> None:
    http = tier_gate_stack.http
    for token in ("abc.def", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "not-a-jwt"):
        r = await http.post("/v1/tokens", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "unauthorized"
        _safe(r.json())

    ident = await tier_gate_stack.identity(unique_user(), "free")
    auth = {"Authorization": f"Bearer {ident}"}
    for body in ('{"public_key": 5}', "[1, 2", '{"public_key": "SUA-a-seed"}'):
        r = await http.post("/v1/tokens", headers=auth, content=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "bad_request"
        _safe(r.json())

    r = await http.post("/dev/identity", json={"user": 5})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    _safe(r.json())

    r = await http.get("/v1/nothing-here")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await http.delete("/v1/tokens")
    assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")
