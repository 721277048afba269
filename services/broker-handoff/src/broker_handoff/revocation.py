"""Mass revocation: destroy every stored token, resumably (a persisted job and cursor)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from broker_handoff.errors import IdempotencyConflict, ServiceError
from broker_handoff.service import HandoffService

log = logging.getLogger(__name__)
ADMIN = "admin"


class MassRevocation:
    """Walks Vault's token paths in order, past a cursor persisted after every token."""

    def __init__(self, service: HandoffService) -> None:
        self.service = service
        self._lock = asyncio.Lock()

    async def run(self, max_items: int | None = None) -> dict[str, Any]:
        """Run (or resume) the job; with `max_items`, stop early and leave it resumable."""
        if self._lock.locked():
            raise IdempotencyConflict("A revoke-all job is already running in this process.")
        async with self._lock:
            return await self._run(max_items)

    async def _run(self, max_items: int | None) -> dict[str, Any]:
        svc = self.service
        store, vault, metrics = svc.deps.store, svc.deps.vault, svc.metrics
        job, resumed = await store.open_revoke_job()
        await store.audit(
            ADMIN, None, "revoke_all", "resumed" if resumed else "started", {"job": job.id}
        )
        keys = [k for k in await vault.list_token_paths() if k > job.cursor]
        secret = await svc._secret_or_none()
        for handled, key in enumerate(keys):
            if max_items is not None and handled >= max_items:
                current = await store.revoke_job(job.id)
                return self._report(current or job, resumed, remaining=len(keys) - handled)
            destroyed, failed = await self._one(key, secret)
            await store.advance_revoke_job(job.id, key, destroyed, failed)
        # Records that claim a connection but have no token left (e.g. written by hand).
        for user_id in await store.connected_user_ids():
            await store.mark_disconnected(user_id, "revoked", "admin_revoke")
        done = await store.finish_revoke_job(job.id)
        await store.audit(
            ADMIN,
            None,
            "revoke_all",
            "done",
            {"job": done.id, "destroyed": done.destroyed, "failed": done.failed},
        )
        metrics.disconnects.labels("admin_revoke")  # make the series visible even at zero
        return self._report(done, resumed, remaining=0)

    async def _one(self, key: str, secret: str | None) -> tuple[int, int]:
        svc = self.service
        metrics = svc.metrics
        try:
            stored = await svc.deps.vault.read_path(key)
            if stored is not None:
                outcome = await svc.deps.oauth.revoke(stored.token, secret)
                metrics.revocations.labels(outcome).inc()
            await svc.deps.vault.destroy_path(key)
        except ServiceError as exc:
            metrics.mass_revocation_tokens.labels("failed").inc()
            log.warning("revoke-all: one token failed: %s", exc.code)
            return 0, 1
        metrics.mass_revocation_tokens.labels("destroyed").inc()
        if stored is not None and stored.user_id:
            was = await svc.deps.store.mark_disconnected(stored.user_id, "revoked", "admin_revoke")
            await svc.deps.store.audit(
                ADMIN, stored.user_id, "disconnect", "done", {"reason": "admin_revoke"}
            )
            if was:
                metrics.disconnects.labels("admin_revoke").inc()
            await svc.publish(stored.user_id, "revoked", stored.env, "admin_revoke")
        return 1, 0

    @staticmethod
    def _report(job: Any, resumed: bool, remaining: int) -> dict[str, Any]:
        return {
            "job_id": job.id,
            "status": job.status,
            "resumed": resumed,
            "destroyed": job.destroyed,
            "failed": job.failed,
            "remaining": remaining,
        }
