"""OpenBao (KV v2) through the service kit's `VaultKV` (login, re-login, threads, errors).

tier-gate keeps only its secret *layout* (`tier_gate.keys`) and one helper: `ensure`, which
stores a generated seed only when none is there and returns whatever is stored (so `init`
is idempotent and concurrent inits agree on one seed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raxx_service_kit.vault import VaultKV, VaultSettings, VaultUnavailable


class Vault(VaultKV):
    """tier-gate's KV client (paths are below the mount, no prefix)."""

    def __init__(self, settings: VaultSettings) -> None:
        super().__init__(settings)

    async def ensure(self, path: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Store `data` at `path` unless something is there (cas=0); return what is stored."""
        await self.create_if_absent(path, data)
        stored = await self.read(path)
        if stored is None:
            raise VaultUnavailable(f"read back {path}")
        return stored
