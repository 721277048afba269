"""Typed errors: raised anywhere, mapped once to an ErrorReply at the responder's edge."""

from __future__ import annotations

from raxx_contracts import ErrorReply, ReplayErrorCode


class ReplayError(Exception):
    """A refusal the requester sees: a stable code and a message safe to show."""

    def __init__(self, code: ReplayErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ReplayErrorCode = code
        self.message = message

    def reply(self) -> ErrorReply:
        """The wire answer."""
        return ErrorReply(error=self.code, message=self.message)


class StoreError(Exception):
    """The archive store cannot be read or written (retry later)."""
