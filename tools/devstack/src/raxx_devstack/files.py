"""Files that hold secrets (dev tokens, service settings): private from the first byte."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only, replacing any older file atomically.

    The bytes go to a new temporary file that `open(2)` creates with mode 0600 (O_CREAT|O_EXCL,
    never a chmod afterwards, so there is no moment at which another user may open it), which
    then replaces `path` by rename: a reader sees the old file or the whole new one, and an
    older file with a wider mode is replaced, not rewritten in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
