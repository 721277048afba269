"""Typed errors: raised anywhere, mapped once to an ErrorReply at the responder's edge."""

from __future__ import annotations

from raxx_contracts import ErrorReply, ReplayErrorCode
from raxx_service_kit.errors import RetryableError, ServiceError


class ReplayError(ServiceError):
    """A refusal the requester sees: a stable code and a message safe to show (answered as an
    ErrorReply on NATS; as the kit's error body if it ever reaches HTTP)."""

    def __init__(self, code: ReplayErrorCode, message: str) -> None:
        status = 503 if code == "unavailable" else 429 if code.startswith(("rate", "too")) else 400
        super().__init__(code, status, message)
        self.code: ReplayErrorCode = code

    def reply(self) -> ErrorReply:
        """The wire answer."""
        return ErrorReply(error=self.code, message=self.message)


class StoreError(RetryableError):
    """The archive store cannot be read or written (retry later)."""

    code = "archive_unavailable"
