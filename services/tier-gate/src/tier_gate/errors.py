"""tier-gate's typed errors, mapped once to HTTP in `api.py`."""

from __future__ import annotations


class TierGateError(Exception):
    """Base of every tier-gate error."""

    code = "internal"
    status = 500


class ConfigError(TierGateError):
    """Raised at startup only: the process cannot run (missing keys, bad settings)."""

    code = "config"


class AuthError(TierGateError):
    """The caller's identity JWT is missing or invalid; `reason` says why (401)."""

    code = "unauthorized"
    status = 401

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BadRequestError(TierGateError):
    """The request body is unusable (400)."""

    code = "bad_request"
    status = 400


class NotFoundError(TierGateError):
    """The route does not exist in this environment (404)."""

    code = "not_found"
    status = 404


class UnavailableError(TierGateError):
    """A dependency did not answer (503)."""

    code = "unavailable"
    status = 503
