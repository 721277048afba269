"""The reconciler: no token in Vault without a live database record, whatever failed.

A Vault write that timed out can land when Vault resumes; a compensation (destroy) can fail
while Vault is away; a process can die between the Vault write and the record. Each leaves a
grant in Vault that nothing points at. The reconciler lists `grants/`, keeps what is active (or
still being written, within a grace period), and revokes at the provider then destroys the
rest, counting each in `bh_orphan_secrets_destroyed_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from broker_handoff.adapters.vault import GRANTS_DIR, grant_path
from broker_handoff.errors import ServiceError
from broker_handoff.service import SYSTEM, HandoffService

log = logging.getLogger(__name__)
KEEP_FINISHED_GRANTS = dt.timedelta(days=7)


class Reconciler:
    """Finds and destroys orphaned grants; runs every `interval` seconds, or sooner when woken."""

    def __init__(self, service: HandoffService, interval: float, grace: float) -> None:
        self.service = service
        self.interval = interval
        self.grace = grace
        self._wake = asyncio.Event()
        self._first_seen: dict[str, float] = {}  # grants with no database row at all

    def wake(self) -> None:
        """Run a pass soon (after a failure that may leave an orphan)."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Pass after pass; an outage of Vault or the database only delays the next one.

        Run under the kit's `Supervisor` (a bug that escapes is restarted with backoff)."""
        while True:
            self._wake.clear()  # a wake during the pass below triggers the next one at once
            try:
                await self.run_once()
            except ServiceError as exc:
                self.service.metrics.reconcile_runs.labels("failed").inc()
                log.info(
                    "reconcile pass did not finish (%s); next in %.0fs", exc.code, self.interval
                )
            await self._pause()

    async def _pause(self) -> None:
        """Wait `interval` on the service's clock, or less when woken."""
        woken = asyncio.ensure_future(self._wake.wait())
        slept = asyncio.ensure_future(self.service.deps.clock.sleep(self.interval))
        try:
            await asyncio.wait((woken, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (woken, slept):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    async def run_once(self) -> int:
        """One pass; returns how many orphans it destroyed."""
        svc = self.service
        store, vault = svc.deps.store, svc.deps.vault
        listed = await vault.list_dir(GRANTS_DIR)
        known = await store.grant_statuses(listed)
        clock = svc.deps.clock
        now = clock.now()
        grace = dt.timedelta(seconds=self.grace)
        destroyed = 0
        for grant_id in listed:
            row = known.get(grant_id)
            if row is None:
                first = self._first_seen.setdefault(grant_id, clock.monotonic())
                if clock.monotonic() - first < self.grace:
                    continue
            else:
                status, changed = row
                if status == "active" or (status == "writing" and now - changed < grace):
                    continue
                # Claim it first: an activation that comes later finds it no longer 'writing'.
                if status == "writing" and not await store.set_grant_status(
                    grant_id, "failed", ("writing",)
                ):
                    continue
            await self._destroy(grant_id, known_row=row is not None)
            destroyed += 1
        for gone in set(self._first_seen) - set(listed):
            del self._first_seen[gone]
        await store.sweep_grants(KEEP_FINISHED_GRANTS)
        svc.metrics.reconcile_runs.labels("ok").inc()
        return destroyed

    async def _destroy(self, grant_id: str, known_row: bool) -> None:
        svc = self.service
        path = grant_path(grant_id)
        stored = await svc.deps.vault.read_path(path)
        if stored is not None:
            outcome = await svc.deps.oauth.revoke(stored.token, await svc._secret_or_none())
            svc.metrics.revocations.labels(outcome).inc()
        await svc.deps.vault.destroy_path(path)
        if known_row:
            await svc.deps.store.set_grant_status(
                grant_id, "destroyed", ("failed", "retired", "destroyed")
            )
        self._first_seen.pop(grant_id, None)
        svc.metrics.orphans_destroyed.inc()
        user = stored.user_id if stored and stored.user_id else None
        await svc.deps.store.audit(
            SYSTEM, user, "reconcile", "orphan_destroyed", {"grant": grant_id}
        )
        log.info("reconciler destroyed an orphaned grant")
