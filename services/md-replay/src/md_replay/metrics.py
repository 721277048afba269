"""Prometheus metrics of md-replay (one registry per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from raxx_service_kit.supervisor import restarts_counter


class Metrics:
    """Every metric md-replay exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.task_restarts = restarts_counter(r, "mdr")
        self.requests = Counter(
            "mdr_replay_requests_total", "Replay commands by outcome", ["op", "outcome"],
            registry=r,
        )  # fmt: skip
        self.active = Gauge("mdr_replays_active", "Replays running now", registry=r)
        self.messages = Counter(
            "mdr_replay_messages_total", "Market-data messages replayed", registry=r
        )
        self.frames = Counter("mdr_replay_frames_total", "Frames published", registry=r)
        self.ended = Counter("mdr_replays_ended_total", "Replays ended", ["reason"], registry=r)
        self.archived_messages = Counter(
            "mdr_archived_messages_total", "Messages written to the archive", registry=r
        )
        self.archive_runs = Counter(
            "mdr_archive_runs_total", "Archive runs by outcome", ["outcome"], registry=r
        )
        self.archive_seconds = Histogram(
            "mdr_archive_seconds", "Duration of one archive run", registry=r,
            buckets=(1, 5, 15, 60, 300, 900, 3600),
        )  # fmt: skip
        self.last_archived = Gauge(
            "mdr_last_archived_date_seconds", "Epoch of the last session archived", registry=r
        )
