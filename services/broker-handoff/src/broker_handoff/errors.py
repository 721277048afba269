"""Typed errors; each carries its HTTP status and a plain message. Mapped once, in `api.py`.

A message never contains a secret: callers build messages from codes and ids only.
"""

from __future__ import annotations


class HandoffError(Exception):
    """Base of every error broker-handoff raises on purpose."""

    status = 500
    code = "internal"
    retry_after = False
    """503s that pass: the answer carries `Retry-After`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(HandoffError):
    """Bad configuration found at start; the process exits."""

    code = "config"


class Unauthorized(HandoffError):
    """Missing or invalid credentials."""

    status = 401
    code = "unauthorized"


class NotEligible(HandoffError):
    """The user's tier may not use the live-broker handoff."""

    status = 403
    code = "not_eligible"


class BadRequest(HandoffError):
    """The request is malformed or lacks something required (e.g. consent)."""

    status = 400
    code = "bad_request"


class InvalidState(BadRequest):
    """The OAuth `state` is unknown, already used, expired or forged."""

    code = "invalid_state"


class StateExpired(InvalidState):
    """The OAuth `state` (or a retry of it) outlived its lifetime."""

    code = "expired"


class BindingMismatch(HandoffError):
    """The callback was opened in a browser that did not start the flow (no or wrong cookie)."""

    status = 403
    code = "binding_mismatch"


class Declined(BadRequest):
    """The user declined at the provider (or the provider sent no code)."""

    code = "declined"


class InProgress(HandoffError):
    """The same authorization is being completed by another request (a second tab)."""

    status = 409
    code = "in_progress"


class InvalidLink(BadRequest):
    """A one-time connect link that is unknown, used or expired."""

    code = "invalid_link"


class CrossSiteRequest(HandoffError):
    """A state-changing browser request that did not come from our own pages."""

    status = 403
    code = "cross_site_request"


class RedirectNotAllowed(BadRequest):
    """A redirect URI not on the allow-list."""

    code = "redirect_uri_not_allowed"


class NotConnected(HandoffError):
    """The user has no live broker connection."""

    status = 409
    code = "not_connected"


class IdempotencyConflict(HandoffError):
    """The same idempotency key was used with a different request, or is still in flight."""

    status = 409
    code = "idempotency_conflict"


class ProviderRejected(HandoffError):
    """The provider refused the request (e.g. an authorization code it does not accept)."""

    status = 400
    code = "provider_rejected"


class ProviderUnavailable(HandoffError):
    """The provider did not answer or answered with a server error."""

    status = 502
    code = "provider_unavailable"


class VaultUnavailable(HandoffError):
    """Vault/OpenBao did not answer; nothing was written."""

    status = 503
    code = "vault_unavailable"
    retry_after = True


class StoreUnavailable(HandoffError):
    """PostgreSQL did not answer."""

    status = 503
    code = "database_unavailable"
    retry_after = True
