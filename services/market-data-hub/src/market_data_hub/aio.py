"""asyncio helpers."""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another exception.

    nats-py converts a CancelledError inside `request`/`fetch` into its own TimeoutError; a
    loop that catches errors and retries would otherwise never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
