"""Typed errors of the settler, mapped once at the edges (HTTP, CLI exit codes)."""

from __future__ import annotations

import datetime as dt


class SettlerError(Exception):
    """Base of every error the settler raises on purpose."""

    exit_code = 1


class ConfigError(SettlerError):
    """Bad or missing configuration; raised at startup and the process exits."""

    exit_code = 78


class RetryableError(SettlerError):
    """A dependency failed in a way that may pass (timeouts, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseUnavailableError(RetryableError):
    """PostgreSQL is down, frozen or too slow right now (HTTP 503 with Retry-After)."""

    def __init__(self, message: str, retry_after: float = 2.0) -> None:
        super().__init__(message, retry_after)


class PermanentError(SettlerError):
    """A request that will fail the same way again (4xx other than 429, bad data)."""


class NotEntitledError(PermanentError):
    """HTTP 403: the key's plan does not cover the request (e.g. OPRA on Basic)."""


class NoSettleDateError(SettlerError):
    """The date has no session (weekend or holiday): there is no settle to compute."""

    exit_code = 3

    def __init__(self, date: dt.date) -> None:
        super().__init__(f"{date.isoformat()} is not a trading day (weekend or holiday): no settle")
        self.date = date


class NotYetClosedError(SettlerError):
    """The date's session has not closed (plus lag) yet, or the date lies in the future."""

    exit_code = 4

    def __init__(self, date: dt.date, reason: str) -> None:
        super().__init__(f"{date.isoformat()}: {reason}")
        self.date = date


class RunInProgressError(SettlerError):
    """Another process is settling the same date right now."""

    exit_code = 5

    def __init__(self, date: dt.date) -> None:
        super().__init__(f"another settle run for {date.isoformat()} holds the lock")
        self.date = date
