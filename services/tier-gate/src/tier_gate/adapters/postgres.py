"""PostgreSQL: entitlements (tier per user) and issued user keys (for revocation).

psycopg 3 async with a connection pool; versioned migrations applied at start under an
advisory lock, so concurrent starts and re-runs are safe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from tier_gate.errors import UnavailableError

MIGRATIONS: tuple[str, ...] = (
    # 1: entitlements and issued credentials
    """
    CREATE TABLE tg_entitlements (
        user_id    text PRIMARY KEY,
        tier       text NOT NULL,
        version    bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE tg_credentials (
        user_pub   text PRIMARY KEY,
        user_id    text NOT NULL,
        tier       text NOT NULL,
        issued_at  bigint NOT NULL,
        expires_at bigint NOT NULL,
        revoked_ts bigint
    );
    CREATE INDEX tg_credentials_user ON tg_credentials (user_id, expires_at);
    CREATE INDEX tg_credentials_revoked ON tg_credentials (expires_at)
        WHERE revoked_ts IS NOT NULL;
    """,
)
_LOCK_KEY = 0x7467_6D69  # "tgmi": serialises migrations across processes


@dataclass(frozen=True)
class IssuedCredential:
    """One user key handed out (the JWT's `sub`), with its tier and lifetime (epoch s)."""

    user_pub: str
    user_id: str
    tier: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class TierApplied:
    """Outcome of applying a tier change."""

    applied: bool
    old_tier: str | None
    old_version: int | None
    version: int
    revoked: tuple[str, ...] = ()


class Database:
    """Entitlement and credential storage."""

    def __init__(self, dsn: str, *, max_size: int = 8) -> None:
        self._pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True}
        )

    async def open(self) -> None:
        """Open the pool and apply pending migrations."""
        try:
            await self._pool.open(wait=True, timeout=10)
        except Exception as exc:
            raise UnavailableError(f"PostgreSQL unreachable: {exc}") from exc
        await self.migrate()

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()

    async def migrate(self) -> int:
        """Apply migrations not yet recorded; return the schema version."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tg_schema_migrations ("
                " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM tg_schema_migrations")
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for number, sql in enumerate(MIGRATIONS, start=1):
                if number > current:
                    await conn.execute(sql.encode())
                    await conn.execute(
                        "INSERT INTO tg_schema_migrations (version) VALUES (%s)", (number,)
                    )
            return len(MIGRATIONS)

    async def ping(self) -> bool:
        """Whether the database answers."""
        try:
            async with self._pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    async def get_tier(self, user_id: str) -> tuple[str, int] | None:
        """(tier, version) stored for a user, or None for an unknown user."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tier, version FROM tg_entitlements WHERE user_id = %s", (user_id,)
            )
            row = await cur.fetchone()
        return (str(row[0]), int(row[1])) if row else None

    async def apply_tier(
        self,
        user_id: str,
        tier: str,
        version: int | None,
        *,
        revoke_for: Callable[[str, str], Sequence[str]],
        default_tier: str,
        now: int,
    ) -> TierApplied:
        """Store a tier change if `version` is newer (None = next version, dev only).

        In the same transaction, mark revoked the user's unexpired credentials of the tiers
        `revoke_for(old_tier, new_tier)` names (a downgrade), so no issuance is missed.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT tier, version FROM tg_entitlements WHERE user_id = %s FOR UPDATE",
                (user_id,),
            )
            row = await cur.fetchone()
            old_tier, old_version = (str(row[0]), int(row[1])) if row else (None, None)
            new_version = (old_version or 0) + 1 if version is None else version
            if old_version is not None and new_version <= old_version:
                return TierApplied(False, old_tier, old_version, new_version)
            await conn.execute(
                "INSERT INTO tg_entitlements (user_id, tier, version) VALUES (%s, %s, %s)"
                " ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier,"
                " version = excluded.version, updated_at = now()"
                " WHERE tg_entitlements.version < excluded.version",
                (user_id, tier, new_version),
            )
            revoked: tuple[str, ...] = ()
            revoke_tiers = revoke_for(old_tier or default_tier, tier)
            if revoke_tiers:
                cur = await conn.execute(
                    "UPDATE tg_credentials SET revoked_ts = GREATEST(%s, issued_at)"
                    " WHERE user_id = %s AND expires_at > %s AND tier = ANY(%s)"
                    " RETURNING user_pub",
                    (now, user_id, now, list(revoke_tiers)),
                )
                revoked = tuple(str(r[0]) for r in await cur.fetchall())
        return TierApplied(True, old_tier or default_tier, old_version, new_version, revoked)

    async def record_credentials(self, creds: Sequence[IssuedCredential]) -> None:
        """Record issued user keys in one round trip (group commit from the issuer)."""
        if not creds:
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO tg_credentials (user_pub, user_id, tier, issued_at, expires_at)"
                " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[],"
                " %s::bigint[])"
                " ON CONFLICT (user_pub) DO UPDATE SET user_id = excluded.user_id,"
                " tier = excluded.tier, issued_at = excluded.issued_at,"
                " expires_at = GREATEST(tg_credentials.expires_at, excluded.expires_at)",
                (
                    [c.user_pub for c in creds],
                    [c.user_id for c in creds],
                    [c.tier for c in creds],
                    [c.issued_at for c in creds],
                    [c.expires_at for c in creds],
                ),
            )

    async def revocations(self, now: int) -> dict[str, int]:
        """Every revoked user key whose credential has not expired yet: {pub: ts}."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_pub, revoked_ts FROM tg_credentials"
                " WHERE revoked_ts IS NOT NULL AND expires_at > %s",
                (now,),
            )
            return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def prune(self, now: int, keep_seconds: int = 86400) -> int:
        """Forget credentials expired more than `keep_seconds` ago; return how many."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM tg_credentials WHERE expires_at < %s", (now - keep_seconds,)
            )
            return cur.rowcount


def utc_epoch() -> int:
    """Now as integer epoch seconds (the NATS JWT clock)."""
    return int(dt.datetime.now(dt.UTC).timestamp())
