"""tier-gate's typed errors, mapped once to HTTP in `api.py`.

An error's text (`str(exc)`) is for logs and may name internal hosts or exception detail.
What a client sees is `code` and `public_message`: written here or at the raise site, never
an exception's text.
"""

from __future__ import annotations


class TierGateError(Exception):
    """Base of every tier-gate error."""

    code = "internal"
    status = 500
    public = "internal error"
    """The client-facing message when the raise site gives none."""
    expose = False
    """Whether the log text is itself safe to show (request errors written by us)."""

    def __init__(self, message: str = "", *, public: str | None = None) -> None:
        super().__init__(message or self.public)
        if public is not None:
            self.public_message = public
        else:
            self.public_message = message if (self.expose and message) else self.public


class ConfigError(TierGateError):
    """Raised at startup only: the process cannot run (missing keys, bad settings)."""

    code = "config"


class AuthError(TierGateError):
    """The caller's identity JWT is missing or invalid; `reason` says why (401)."""

    code = "unauthorized"
    status = 401
    expose = True

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BadRequestError(TierGateError):
    """The request body is unusable (400)."""

    code = "bad_request"
    status = 400
    expose = True


class NotFoundError(TierGateError):
    """The route does not exist in this environment (404)."""

    code = "not_found"
    status = 404
    expose = True


class PublicKeyTakenError(TierGateError):
    """The public key is registered to another user: a key belongs to one user for life (409)."""

    code = "public_key_taken"
    status = 409
    expose = True

    def __init__(self) -> None:
        super().__init__(
            "this public key is registered to another account; generate a new key pair"
        )


class UnavailableError(TierGateError):
    """A dependency did not answer (503, with `Retry-After: retry_after`)."""

    code = "unavailable"
    status = 503
    public = "a dependency is unavailable; retry later"

    def __init__(
        self, message: str = "", *, public: str | None = None, retry_after: float = 2.0
    ) -> None:
        super().__init__(message, public=public)
        self.retry_after = retry_after


class DatabaseUnavailableError(UnavailableError):
    """PostgreSQL is unreachable, frozen or too slow: nothing can be issued right now (503)."""

    code = "database_unavailable"
    public = "the credential store is unavailable; retry after the Retry-After delay"
