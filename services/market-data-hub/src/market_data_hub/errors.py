"""Typed errors of the hub, on the kit's `ServiceError` (one body, mapped once at the edge by
the kit's `install_error_handlers`; on NATS the interest responder maps them to ErrorReply)."""

from __future__ import annotations

from raxx_service_kit import errors as kit


class HubError(kit.TypedError):
    """Base class of every hub error.

    `message` is what a caller sees: fixed text about its own request, never upstream bodies,
    exception text or internal addresses. `detail` is for the log only (the edge logs it).
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message, log_detail=detail)

    @property
    def detail(self) -> str | None:
        """Log-only detail (the kit's `log_detail`)."""
        return self.log_detail


ConfigError = kit.ConfigError
"""Raised at start-up only: the process cannot run with this configuration or secret."""


class BadRequestError(HubError):
    """The caller sent something unusable (bad symbol, timeframe, dates)."""

    code = "bad_request"
    status = 400


class UnauthorizedError(HubError):
    """Missing or invalid HTTP token."""

    code = "unauthorized"
    status = 401


class ForbiddenError(HubError):
    """The caller's tier does not allow this."""

    code = "forbidden"
    status = 403


class NotFoundError(HubError):
    """Nothing to return (e.g. no quote seen yet on this path)."""

    code = "not_found"
    status = 404


class RetryableError(HubError, kit.RetryableError):
    """Upstream is rate limiting or failing; try again after `retry_after` seconds."""

    code = "upstream_unavailable"
    status = 503

    def __init__(
        self, message: str, retry_after: float = 5.0, *, detail: str | None = None
    ) -> None:
        kit.RetryableError.__init__(self, message, retry_after, log_detail=detail)


class BudgetExhaustedError(RetryableError):
    """The users' share of the hub's Alpaca REST budget is spent for now (by all users)."""

    code = "budget_exhausted"


class TooManyRequestsError(HubError):
    """This caller exceeded its own limit (`rate_limited`: its tier's request rate;
    `upstream_quota`: its share of uncached upstream calls). Never waits: 429 + Retry-After."""

    status = 429

    def __init__(self, message: str, retry_after: float, code: str = "rate_limited") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class HorizonError(HubError):
    """A delayed-path response held something younger than the horizon: refused, never sent."""

    code = "internal"


class UpstreamError(HubError):
    """Upstream answered with an error that retrying will not fix."""

    code = "upstream_error"
    status = 502


class NotEntitledError(UpstreamError):
    """Alpaca answered 403: the key's plan does not cover this request (e.g. recent SIP)."""


class StreamError(HubError):
    """The Alpaca stream sent an error frame (code per Alpaca's table) or broke protocol."""

    code = "stream_error"

    def __init__(self, message: str, stream_code: int = 0) -> None:
        super().__init__(message)
        self.stream_code = stream_code

    @property
    def slot_busy(self) -> bool:
        """406: another connection holds the account's only slot."""
        return self.stream_code == 406

    @property
    def insufficient_subscription(self) -> bool:
        """409: the feed is not in the key's plan; retrying with the same key never helps."""
        return self.stream_code == 409

    @property
    def fatal(self) -> bool:
        """Bad credentials or a feed outside the plan: retrying fast will not help."""
        return self.stream_code in (402, 409, 411)


class TokenSupersededError(UnauthorizedError):
    """The HTTP token's tier is above the user's current tier (a downgrade superseded it)."""

    code = "token_superseded"


class EntitlementsUnavailableError(RetryableError):
    """The users' current tiers cannot be read, so a paid-tier token is not honoured (fail safe)."""

    code = "entitlements_unavailable"
