"""tier-gate's own error kinds, on the service kit's types (mapped once by the kit's
`install_error_handlers`: `{"error": code, "message": public text, **details}`).

`message` is what a client sees (written here or at the raise site, never an exception's
text); `log_detail` is for the log only and may name hosts or exception detail.
"""

from __future__ import annotations

from raxx_service_kit.errors import (
    ConfigError,
    DatabaseUnavailable,
    PermanentError,
    RetryableError,
    ServiceError,
    TypedError,
    UnauthorizedError,
)

__all__ = [
    "BadRequestError",
    "ConfigError",
    "DatabaseUnavailableError",
    "NotFoundError",
    "PublicKeyTakenError",
    "RetryableError",
    "ServiceError",
    "UnauthorizedError",
    "UnavailableError",
    "UnknownTierError",
]


class BadRequestError(PermanentError):
    """The request body is unusable (400 `bad_request`)."""


class UnknownTierError(PermanentError):
    """A tier the policy does not know (400; a billing event naming it is dead-lettered)."""

    code = "unknown_tier"


class NotFoundError(TypedError):
    """The route does not exist in this environment (404)."""

    code = "not_found"
    status = 404
    default_message = "not found"


class PublicKeyTakenError(TypedError):
    """The public key is registered to another user: a key belongs to one user for life (409)."""

    code = "public_key_taken"
    status = 409
    default_message = "this public key is registered to another account; generate a new key pair"


class UnavailableError(RetryableError):
    """A dependency (NATS, OpenBao) did not answer (503 + `Retry-After`, or a NATS nak)."""

    def __init__(self, log_detail: str, *, retry_after: float = 2.0) -> None:
        super().__init__(
            "a dependency is unavailable; retry later", retry_after, log_detail=log_detail
        )


class DatabaseUnavailableError(DatabaseUnavailable):
    """PostgreSQL is unreachable, frozen or too slow: nothing can be issued right now (503).

    The kit's class: what went wrong goes to `log_detail=`, never into the public message."""

    default_message = "the credential store is unavailable; retry after the Retry-After delay"
