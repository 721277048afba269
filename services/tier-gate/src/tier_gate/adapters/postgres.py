"""PostgreSQL: entitlements (tier per user) and issued user keys (for revocation).

psycopg 3 async with a connection pool; versioned migrations applied at start under an
advisory lock, so concurrent starts and re-runs are safe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
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
    # 2: the last account-JWT `iat` pushed by any replica (pushes never go back in time)
    """
    CREATE TABLE tg_account_pushes (
        account_pub text PRIMARY KEY,
        iat         bigint NOT NULL
    );
    """,
)
_LOCK_KEY = 0x7467_6D69  # "tgmi": serialises migrations across processes
_USER_LOCK = 0x7467_7573  # "tgus": (namespace, hashtext(user_id)) per-user issuance/tier lock
_PUSH_LOCK = 0x7467_7075  # "tgpu": serialises revocation pushes across replicas

StoredTier = tuple[str, int]
"""(tier, version) as stored in tg_entitlements."""


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
            # Exclusive per-user lock: an issuance (any replica) holding the shared lock has
            # committed its credential before we revoke, or sees our version after we commit.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))", (_USER_LOCK, user_id)
            )
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

    async def record_credentials(self, creds: Sequence[IssuedCredential]) -> dict[str, StoredTier]:
        """Record issued user keys in one transaction (group commit from the issuer).

        Returns the (tier, version) stored for each user *as of the commit*, read under a
        shared per-user lock that `apply_tier` takes exclusively: a tier change either
        committed before (its version is returned, so the caller re-mints) or runs after
        this commit (and then sees, and revokes, these keys). Whichever replica issued them.
        """
        if not creds:
            return {}
        users = sorted({c.user_id for c in creds})
        # Pipeline mode: BEGIN, lock, insert, select and COMMIT go out together (one round
        # trip instead of five). They still run in order, each statement with its own
        # snapshot, so the SELECT sees every tier change committed before the lock was granted.
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock_shared(%s::int, hashtext(u))"
                " FROM unnest(%s::text[]) AS u",
                (_USER_LOCK, users),
            )
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
            cur = await conn.execute(
                "SELECT user_id, tier, version FROM tg_entitlements WHERE user_id = ANY(%s)",
                (users,),
            )
        return {str(r[0]): (str(r[1]), int(r[2])) for r in await cur.fetchall()}

    async def push_revocations(
        self, account_pub: str, now: int, push: Callable[[dict[str, int], int], Awaitable[None]]
    ) -> int:
        """Read the revocation set and call `push(revocations, iat)` under a cluster-wide lock.

        Serialising read-and-push across replicas means the last account JWT the server
        receives always carries every revocation committed before it was read (two replicas
        pushing concurrently could otherwise land an older set last). `iat` never goes back
        (max of `now` and the last pushed one, stored here), so a replica whose clock lags is
        not ignored by a `full` resolver. Returns the size of the pushed set.
        """
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s::int, 0)", (_PUSH_LOCK,))
            cur = await conn.execute(
                "SELECT iat FROM tg_account_pushes WHERE account_pub = %s", (account_pub,)
            )
            row = await cur.fetchone()
            iat = max(now, int(row[0]) if row else 0)
            cur = await conn.execute(
                "SELECT user_pub, revoked_ts FROM tg_credentials"
                " WHERE revoked_ts IS NOT NULL AND expires_at > %s",
                (now,),
            )
            revocations = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
            await push(revocations, iat)
            await conn.execute(
                "INSERT INTO tg_account_pushes (account_pub, iat) VALUES (%s, %s)"
                " ON CONFLICT (account_pub) DO UPDATE SET iat = excluded.iat",
                (account_pub, iat),
            )
            return len(revocations)

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
