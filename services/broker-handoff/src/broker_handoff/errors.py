"""broker-handoff's own error kinds, on the kit's `TypedError` family; mapped once at the edge
by the kit's `install_error_handlers` (body `{"error": code, "message": text}`).

A message never contains a secret: callers build messages from codes and ids only. The kit's
`ServiceError` is the base every `except` here catches (the kit's `VaultUnavailable`, raised by
`VaultKV`, is one too; it is re-exported so callers import their errors from one place).
"""

from __future__ import annotations

from raxx_service_kit.errors import (
    ConfigError,
    DatabaseUnavailable,
    PermanentError,
    ServiceError,
    TypedError,
)
from raxx_service_kit.vault import VaultUnavailable

__all__ = [
    "BadRequest",
    "BindingMismatch",
    "ConfigError",
    "CrossSiteRequest",
    "Declined",
    "IdempotencyConflict",
    "InProgress",
    "InvalidLink",
    "InvalidState",
    "NotConnected",
    "NotEligible",
    "ProviderRejected",
    "ProviderUnavailable",
    "RedirectNotAllowed",
    "ServiceError",
    "StateExpired",
    "StoreUnavailable",
    "Unauthorized",
    "VaultUnavailable",
]


class Unauthorized(TypedError):
    """Missing or invalid credentials (identity or admin token); the body names no reason."""

    status = 401
    code = "unauthorized"


class NotEligible(TypedError):
    """The user's tier may not use the live-broker handoff."""

    status = 403
    code = "not_eligible"


class BadRequest(PermanentError):
    """The request is malformed or lacks something required (e.g. consent)."""

    code = "bad_request"


class InvalidState(BadRequest):
    """The OAuth `state` is unknown, already used, expired or forged."""

    code = "invalid_state"


class StateExpired(InvalidState):
    """The OAuth `state` (or a retry of it) outlived its lifetime."""

    code = "expired"


class BindingMismatch(TypedError):
    """The callback was opened in a browser that did not start the flow (no or wrong cookie)."""

    status = 403
    code = "binding_mismatch"


class Declined(BadRequest):
    """The user declined at the provider (or the provider sent no code)."""

    code = "declined"


class InProgress(TypedError):
    """The same authorization is being completed by another request (a second tab)."""

    status = 409
    code = "in_progress"


class InvalidLink(BadRequest):
    """A one-time connect link that is unknown, used or expired."""

    code = "invalid_link"


class CrossSiteRequest(TypedError):
    """A state-changing browser request that did not come from our own pages."""

    status = 403
    code = "cross_site_request"


class RedirectNotAllowed(BadRequest):
    """A redirect URI not on the allow-list."""

    code = "redirect_uri_not_allowed"


class NotConnected(TypedError):
    """The user has no live broker connection."""

    status = 409
    code = "not_connected"


class IdempotencyConflict(TypedError):
    """The same idempotency key was used with a different request, or is still in flight."""

    status = 409
    code = "idempotency_conflict"


class ProviderRejected(BadRequest):
    """The provider refused the request (e.g. an authorization code it does not accept)."""

    code = "provider_rejected"


class ProviderUnavailable(TypedError):
    """The provider did not answer or answered with a server error."""

    status = 502
    code = "provider_unavailable"


class StoreUnavailable(DatabaseUnavailable):
    """PostgreSQL did not answer (503 + `Retry-After`; a tier change is redelivered later)."""

    default_message = "The database is unavailable. Try again shortly."
    default_retry_after = 5.0
