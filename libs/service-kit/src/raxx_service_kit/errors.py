"""The kit's typed errors and the one error body every service answers with.

Every error a service raises on purpose is a `ServiceError`: a stable machine `code`, the HTTP
`status` it maps to, and a `message` safe to show a caller (built from codes and ids, never an
exception's text, an upstream body or a secret). `details` are extra public fields merged into
the body; `log_detail` is for the log only.

The body is flat, `{"error": code, "message": text, **details}`: it is what all four services
already answered before the kit (tier-gate, broker-handoff, eod-settler and the hub), so no
client or test has to change. `Retry-After` is a header, never a body field.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    """The one error body: `{"error": code, "message": text}` plus optional public fields."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class ServiceError(Exception):
    """Base of every error a service raises on purpose; mapped once at the edge.

    `ServiceError(code, status, message)` for a one-off; a service's own error classes
    derive from `TypedError` (message first) or one of the kinds below.
    """

    code: str = "internal"
    status: int = 500
    retry_after: float | None = None

    def __init__(
        self,
        code: str | None = None,
        status: int | None = None,
        message: str = "internal error",
        *,
        details: dict[str, Any] | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.message = message
        self.details = dict(details or {})
        self.log_detail = log_detail

    def body(self) -> dict[str, Any]:
        """The JSON body a caller sees."""
        return ErrorBody(error=self.code, message=self.message, **self.details).model_dump()

    def headers(self) -> dict[str, str]:
        """Headers that go with the body (`Retry-After` in whole seconds, at least 1)."""
        out: dict[str, str] = {}
        if self.retry_after is not None:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.status == 401:
            out["WWW-Authenticate"] = "Bearer"
        return out


class TypedError(ServiceError):
    """Base of a service's own error classes: `code`/`status` are class attributes and the
    constructor takes the public message first (`raise NotEligible("...")`).

        class NotEligible(TypedError):
            code = "not_eligible"
            status = 403
            default_message = "your tier may not use the live-broker handoff"
    """

    default_message = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(
            code, status, message or self.default_message, details=details, log_detail=log_detail
        )


class RetryableError(TypedError):
    """A dependency failed in a way that may pass: 503 + `Retry-After`, or a NATS `nak(delay)`."""

    code = "unavailable"
    status = 503

    def __init__(
        self,
        message: str = "a dependency is unavailable; retry later",
        retry_after: float = 2.0,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, details=details, log_detail=log_detail)
        self.retry_after = retry_after


class DatabaseUnavailable(RetryableError):
    """PostgreSQL is down, frozen or too slow (503 `database_unavailable` + `Retry-After`).

    A service subclasses it to name its own public message and delay:

        class StoreUnavailable(DatabaseUnavailable):
            default_message = "The database is unavailable. Try again shortly."
            default_retry_after = 5.0
    """

    code = "database_unavailable"
    default_message = "the database is unavailable; retry later"
    default_retry_after = 2.0

    def __init__(
        self,
        message: str | None = None,
        retry_after: float | None = None,
        *,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(
            message or self.default_message,
            self.default_retry_after if retry_after is None else retry_after,
            log_detail=log_detail,
        )


class PermanentError(TypedError):
    """Will fail the same way again (bad data, a 4xx upstream): a NATS message is dead-lettered."""

    code = "bad_request"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, details=details, log_detail=log_detail)


class ConfigError(TypedError):
    """The process cannot run with this configuration or secret; raised at start-up only."""

    code = "config"
    status = 500
    exit_code = 78
    """EX_CONFIG (sysexits.h), for CLIs."""


class UnauthorizedError(TypedError):
    """Missing or invalid credentials (401 + `WWW-Authenticate: Bearer`); `reason` is public."""

    code = "unauthorized"
    status = 401

    def __init__(self, reason: str, message: str = "invalid or missing token") -> None:
        super().__init__(message, details={"reason": reason})
        self.reason = reason
