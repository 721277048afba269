"""The passthrough's allow-list and service-client check (pure)."""

from __future__ import annotations

from market_data_hub.passthrough import client_ok, match, secret_digest


def test_allow_list_matches_templates_only() -> None:
    assert match("/v2/calendar").template == "/v2/calendar"  # type: ignore[union-attr]
    route = match("/v2/options/contracts/AAPL240315C00172500")
    assert route is not None
    assert route.template == "/v2/options/contracts/{symbol_or_id}"
    assert route.api == "trading"
    assert match("/v2/stocks/BRK.B/bars").api == "data"  # type: ignore[union-attr]
    for path in (
        "/v2/account",
        "/v2/orders",
        "/v2/positions",
        "/v2/stocks/../bars",
        "/v2/calendar/",
        "/v2/stocks/a/b/bars",
        "/v1beta1/options/quotes/latest/x",
        "/v2/clock\n",
        "/v2/calendar\n",
        "/v2/stocks/AAPL/bars\n",
        "/v2/options/contracts/AAPL240315C00172500\n",
        "\n/v2/clock",
        "/v2/clock\r\n",
    ):
        assert match(path) is None, path


def test_client_check() -> None:
    clients = {"eod-settler": secret_digest("s3cret")}
    assert client_ok(clients, "eod-settler", "s3cret")
    assert client_ok({"eod-settler": secret_digest("s3cret").upper()}, "eod-settler", "s3cret")
    assert not client_ok(clients, "eod-settler", "wrong")
    assert not client_ok(clients, "other", "s3cret")
    assert not client_ok(clients, None, None)
    assert not client_ok({}, "eod-settler", "s3cret")
