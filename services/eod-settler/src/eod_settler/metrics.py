"""Prometheus metrics of the settler, on a per-app registry (no per-symbol labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from raxx_service_kit.supervisor import restarts_counter


class Metrics:
    """Every `eod_*` metric; one instance per app or CLI run."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.published = Counter(
            "eod_settles_published",
            "Settles published to JetStream (acked), by source",
            ["source"],
            registry=r,
        )
        self.duplicates = Counter(
            "eod_publish_duplicates",
            "Publishes JetStream acked as duplicates (Nats-Msg-Id)",
            registry=r,
        )
        self.written = Counter(
            "eod_settles_written",
            "Settle revisions written to Postgres, by source",
            ["source"],
            registry=r,
        )
        self.rereads = Counter(
            "eod_rereads",
            "Next-morning re-reads of a settled session, by outcome (revised or unchanged)",
            ["outcome"],
            registry=r,
        )
        self.stale = Counter(
            "eod_settles_stale", "Settles carried forward from the previous settle", registry=r
        )
        self.missing = Counter(
            "eod_settles_missing",
            "Symbols with no print and no previous settle (reported, nothing published)",
            registry=r,
        )
        self.batch_duration = Histogram(
            "eod_batch_duration_seconds",
            "Duration of a settle run for one date",
            registry=r,
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
        )
        self.last_success = Gauge(
            "eod_last_success_date_timestamp_seconds",
            "Session close (unix time) of the latest date settled completely",
            registry=r,
        )
        self.outbox_depth = Gauge("eod_outbox_depth", "Outbox rows not yet published", registry=r)
        self.rest_calls = Counter(
            "eod_rest_requests",
            "Alpaca REST requests, by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.limiter_waits = Counter(
            "eod_rest_limiter_waits",
            "Times the client token bucket made a request wait",
            registry=r,
        )
        self.limiter_wait_seconds = Counter(
            "eod_rest_limiter_wait_seconds",
            "Seconds spent waiting on the token bucket",
            registry=r,
        )
        self.batch_late = Gauge(
            "eod_batch_late",
            "1 when the latest due session has no complete settle by close+lag+grace",
            registry=r,
        )
        self.batch_late_seconds = Gauge(
            "eod_batch_late_seconds",
            "Seconds past the expected completion of the latest due session (0 when on time)",
            registry=r,
        )
        self.interest_recorded = Counter(
            "eod_interest_symbols_recorded", "Symbols recorded from md.ctl.interest", registry=r
        )
        self.task_restarts = restarts_counter(r, "eod")

    def limiter_wait(self, seconds: float) -> None:
        """Record one wait on the token bucket."""
        self.limiter_waits.inc()
        self.limiter_wait_seconds.inc(seconds)
