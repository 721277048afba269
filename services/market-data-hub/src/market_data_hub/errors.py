"""Typed errors of the hub, mapped once at the edge (HTTP status / NATS ErrorReply)."""

from __future__ import annotations


class HubError(Exception):
    """Base class of every hub error."""

    code = "internal"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(HubError):
    """Raised at start-up only: the process cannot run with this configuration or secret."""

    code = "config"


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


class RetryableError(HubError):
    """Upstream is rate limiting or failing; try again after `retry_after` seconds."""

    code = "upstream_unavailable"
    status = 503

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(HubError):
    """Upstream answered with an error that retrying will not fix."""

    code = "upstream_error"
    status = 502


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
    def fatal(self) -> bool:
        """Bad credentials or a feed outside the plan: retrying fast will not help."""
        return self.stream_code in (402, 409, 411)


class TokenSupersededError(UnauthorizedError):
    """The HTTP token's tier is above the user's current tier (a downgrade superseded it)."""

    code = "token_superseded"


class EntitlementsUnavailableError(RetryableError):
    """The users' current tiers cannot be read, so a paid-tier token is not honoured (fail safe)."""

    code = "entitlements_unavailable"
