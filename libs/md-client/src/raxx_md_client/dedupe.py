"""A bounded window of recently seen messages, to drop duplicates during a credential swap."""

from __future__ import annotations

import hashlib
from collections import OrderedDict


class DedupeWindow:
    """Remembers the last `size` (subject, payload) digests."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def first_time(self, subject: str, data: bytes) -> bool:
        """True the first time a (subject, payload) pair is seen within the window."""
        key = hashlib.blake2b(subject.encode() + b"\0" + data, digest_size=16).digest()
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True
