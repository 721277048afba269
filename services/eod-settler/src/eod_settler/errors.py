"""The settler's own errors, on the kit's types; mapped once at the edges (HTTP by the kit's
`install_error_handlers`, CLI exit codes by `exit_code`).

The `RetryableError` / `PermanentError` split is the kit's: a retryable failure (timeouts,
5xx, 429, a database that is down) is retried with backoff and answers 503 + `Retry-After`;
a permanent one (4xx other than 429, bad data) fails the same way again.
"""

from __future__ import annotations

import datetime as dt

from raxx_service_kit.errors import (
    ConfigError,
    DatabaseUnavailable,
    PermanentError,
    RetryableError,
    ServiceError,
    TypedError,
)

__all__ = [
    "ConfigError",
    "DatabaseUnavailableError",
    "NoSettleDateError",
    "NotEntitledError",
    "NotYetClosedError",
    "PermanentError",
    "RetryableError",
    "RunInProgressError",
    "ServiceError",
    "describe",
    "exit_code",
]


def describe(exc: ServiceError) -> str:
    """An error for the operator's terminal: the public message and the logged detail."""
    return f"{exc.message} ({exc.log_detail})" if exc.log_detail else exc.message


def exit_code(exc: ServiceError) -> int:
    """The CLI exit code of an error (1 unless the class names one)."""
    code = getattr(exc, "exit_code", 1)
    return code if isinstance(code, int) else 1


class DatabaseUnavailableError(DatabaseUnavailable):
    """PostgreSQL is down, frozen or too slow right now (HTTP 503 with Retry-After)."""

    default_message = "the settle store is unavailable; retry after Retry-After"


class NotEntitledError(PermanentError):
    """HTTP 403 from Alpaca: the key's plan does not cover the request (e.g. OPRA on Basic)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_entitled", status=403)


class NoSettleDateError(TypedError):
    """The date has no session (weekend or holiday): there is no settle to compute."""

    code = "no_session"
    status = 404
    exit_code = 3

    def __init__(self, date: dt.date) -> None:
        super().__init__(f"{date.isoformat()} is not a trading day (weekend or holiday): no settle")
        self.date = date


class NotYetClosedError(TypedError):
    """The date's session has not closed (plus lag) yet, or the date lies in the future."""

    code = "not_yet_closed"
    status = 409
    exit_code = 4

    def __init__(self, date: dt.date, reason: str) -> None:
        super().__init__(f"{date.isoformat()}: {reason}")
        self.date = date


class RunInProgressError(TypedError):
    """Another process is settling the same date right now."""

    code = "run_in_progress"
    status = 409
    exit_code = 5

    def __init__(self, date: dt.date) -> None:
        super().__init__(f"another settle run for {date.isoformat()} holds the lock")
        self.date = date
