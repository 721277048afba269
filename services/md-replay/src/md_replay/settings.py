"""md-replay settings (env prefix `MDR_`); built once when the process starts."""

from __future__ import annotations

from pydantic import Field, model_validator
from raxx_service_kit.settings import ServiceSettings, dev_port, service_config


class Settings(ServiceSettings):
    """Every setting of md-replay; env, log level, HTTP and NATS come from the kit's base
    (`MDR_ENV`, `MDR_LOG_LEVEL`, `MDR_HTTP_HOST`, `MDR_NATS_URL`, `MDR_NATS_CREDS`, ...)."""

    model_config = service_config("MDR_")

    http_port: int = Field(default_factory=lambda: dev_port("md-replay"))

    archive_url: str = ""
    """Empty: the NATS Object Store bucket `archive_bucket`; else any fsspec URL
    (`file:///srv/archive`, `memory://archive`, `s3://bucket/prefix`)."""
    archive_bucket: str = "MD_ARCHIVE"
    retention_days: int = Field(default=365, ge=1)
    """Sessions older than this many days are refused (`outside_retention`) and pruned."""
    archive_schedule: bool = True
    """Archive each session on its own after it ends (`archive_lag_seconds` later)."""
    archive_lag_seconds: float = Field(default=900.0, ge=0)
    archive_batch: int = Field(default=2000, ge=1, le=100_000)
    """Messages fetched per pull from a capture stream while archiving or replaying."""

    delay_seconds: float = Field(default=900.0, ge=0)
    """The delayed path's delay (must match the hub's MDH_DELAY_SECONDS): a caller whose tier
    reads an asset delayed never gets data younger than this."""

    max_symbols: int = Field(default=100, ge=1, le=100)
    max_concurrent_per_user: int = Field(default=2, ge=1)
    max_concurrent_total: int = Field(default=16, ge=1)
    requests_per_minute: int = Field(default=20, ge=1)
    frame_records: int = Field(default=1000, ge=1, le=10_000)
    frame_bytes: int = Field(default=256 * 1024, ge=1024, le=900 * 1024)
    frame_span_ms: float = Field(default=50.0, gt=0)
    """At N x real time a frame holds at most this much original time (pacing granularity)."""
    window: int = Field(default=32, ge=1, le=1024)
    """Frames in flight without an acknowledgement."""
    ack_every: int = Field(default=8, ge=1)
    """Told to the client in the acceptance: it acks at least every this many frames."""
    ack_timeout_seconds: float = Field(default=10.0, gt=0)
    progress_every: int = Field(default=50, ge=1)
    """A progress message every this many frames."""

    @model_validator(mode="after")
    def _acks_fit_the_window(self) -> Settings:
        # A client acks every `ack_every` frames and md-replay sends at most `window` frames
        # unacked: with ack_every > window both wait, and every replay ends by ack timeout.
        if self.ack_every > self.window:
            raise ValueError(
                f"MDR_ACK_EVERY ({self.ack_every}) must not exceed MDR_WINDOW ({self.window}): "
                "every replay would stall and end by ack timeout"
            )
        return self
