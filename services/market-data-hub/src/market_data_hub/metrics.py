"""Prometheus metrics on a per-app registry. No per-symbol or per-user labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from raxx_service_kit.supervisor import restarts_counter

UPSTREAM_STATES = ("disconnected", "connecting", "authenticated", "standby", "stopped")


class Metrics:
    """Every `mdh_` metric of the hub (listed in the service README)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.task_restarts = restarts_counter(r, "mdh")
        self.upstream_state = Gauge(
            "mdh_upstream_state",
            "1 for the current state of each upstream feed connection",
            ["asset", "state"],
            registry=r,
        )
        self.upstream_connects = Counter(
            "mdh_upstream_connects_total", "Upstream connection attempts", ["asset"], registry=r
        )
        self.upstream_reconnects = Counter(
            "mdh_upstream_reconnects_total",
            "Upstream reconnects by reason",
            ["asset", "reason"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "mdh_upstream_error_frames_total",
            "Error frames from upstream by Alpaca code",
            ["asset", "code"],
            registry=r,
        )
        self.malformed = Counter(
            "mdh_upstream_malformed_total",
            "Upstream frames or messages that could not be parsed (skipped)",
            ["asset"],
            registry=r,
        )
        self.unpublished_types = Counter(
            "mdh_upstream_unpublished_total",
            "Upstream messages of a type the hub does not publish, by Alpaca type `T`",
            ["asset", "type"],
            registry=r,
        )
        self.upstream_refusals = Counter(
            "mdh_upstream_refused_symbols_total",
            "Symbols Alpaca refused to subscribe, by Alpaca error code",
            ["asset", "code"],
            registry=r,
        )
        self.backfill_gaps = Counter(
            "mdh_backfill_gaps_total",
            "Gaps handled by the REST backfill by outcome (complete, partial, failed, "
            "skipped_closed: the market was closed, nothing to recover)",
            ["outcome"],
            registry=r,
        )
        self.backfill_last_bars = Gauge(
            "mdh_backfill_last_gap_bars", "Minute bars recovered for the last gap", registry=r
        )
        self.backfill_last_symbols = Gauge(
            "mdh_backfill_last_gap_symbols",
            "Symbols with at least one bar recovered in the last gap",
            registry=r,
        )
        self.backfill_pages = Counter(
            "mdh_backfill_pages_total", "REST pages read by the backfill", registry=r
        )
        self.watchdog_quiet_closed = Counter(
            "mdh_watchdog_closed_market_skips_total",
            "Silent-socket checks that did not reconnect because the market was closed",
            ["asset"],
            registry=r,
        )
        self.dropped_frames = Counter(
            "mdh_reader_dropped_frames_total",
            "Frames dropped because the reader queue was full (publisher too slow)",
            ["asset"],
            registry=r,
        )
        self.reader_queue = Gauge(
            "mdh_reader_queue_frames", "Frames waiting between reader and publisher", ["asset"],
            registry=r,
        )  # fmt: skip
        self.messages_in = Counter(
            "mdh_messages_in_total", "Upstream data messages by channel", ["asset", "channel"],
            registry=r,
        )  # fmt: skip
        self.messages_out = Counter(
            "mdh_messages_out_total",
            "Messages published by channel and path",
            ["asset", "channel", "path"],
            registry=r,
        )
        self.backfill_bars = Counter(
            "mdh_backfill_bars_total", "Minute bars recovered over REST after a gap", registry=r
        )
        self.publish_latency = Histogram(
            "mdh_publish_latency_seconds",
            "Upstream frame received -> all its messages handed to NATS on mdcap.rt",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
            registry=r,
        )
        self.delay_depth = Gauge(
            "mdh_delay_line_depth_messages", "Messages captured but not yet released",
            ["asset"], registry=r,
        )  # fmt: skip
        self.delay_lag = Gauge(
            "mdh_delay_line_lag_seconds",
            "How late the delayed path releases (now - (event time + delay)) at the head",
            ["asset"],
            registry=r,
        )
        self.delay_skipped = Counter(
            "mdh_delay_line_skipped_total", "Captured messages without a usable event time",
            registry=r,
        )  # fmt: skip
        self.symbols_subscribed = Gauge(
            "mdh_symbols_subscribed", "Distinct symbols held upstream", ["asset"], registry=r
        )
        self.symbol_cap = Gauge("mdh_symbol_cap", "Configured symbol cap", ["asset"], registry=r)
        self.interest_requests = Counter(
            "mdh_interest_requests_total",
            "Interest requests by outcome (ok, malformed, refused, error; foreign_reply and "
            "foreign_subject were dropped unanswered)",
            ["outcome"],
            registry=r,
        )
        self.rejections = Counter(
            "mdh_interest_rejections_total", "Rejected symbols by reason", ["reason"], registry=r
        )
        self.rest_calls = Counter(
            "mdh_rest_calls_total",
            "Alpaca REST calls by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.rest_limiter_wait = Histogram(
            "mdh_rest_limiter_wait_seconds",
            "Time REST calls waited for the token bucket",
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.alpaca_realtime_sip = Gauge(
            "mdh_alpaca_realtime_sip",
            "Whether the key may read real-time SIP (probed at start): 1 yes, 0 no, -1 unknown",
            registry=r,
        )
        self.alpaca_realtime_sip.set(-1)
        self.rest_coalesced = Counter(
            "mdh_rest_coalesced_total", "REST requests served by a cache or an in-flight twin",
            ["kind"], registry=r,
        )  # fmt: skip
        self.passthrough_requests = Counter(
            "mdh_passthrough_requests_total",
            "Alpaca passthrough (/alpaca) requests by allow-list route template and outcome",
            ["route", "outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "mdh_rate_limited_total",
            "Requests refused by a rate limit or budget, by typed code",
            ["code"],
            registry=r,
        )
        self.http_requests = Counter(
            "mdh_http_requests_total", "HTTP API requests by route and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.leader = Gauge(
            "mdh_leader", "1 while this replica holds the upstream lease", registry=r
        )
        self.leader_changes = Counter(
            "mdh_leader_transitions_total", "Leadership gained or lost", ["to"], registry=r
        )
        self.key_version = Gauge(
            "mdh_alpaca_key_version", "KV version of the Alpaca key in use", registry=r
        )

    def set_upstream_state(self, asset: str, state: str) -> None:
        """Set exactly one state gauge to 1 for `asset`."""
        for s in UPSTREAM_STATES:
            self.upstream_state.labels(asset, s).set(1 if s == state else 0)
