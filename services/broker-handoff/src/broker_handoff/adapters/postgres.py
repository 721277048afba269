"""PostgreSQL: tier projection, OAuth states, connection records, orders, audit, revoke jobs.

No secret ever reaches this module: tokens live only in Vault, states are stored hashed.
Driver exceptions become :class:`StoreUnavailable` at this boundary.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row
from raxx_service_kit.migrations import migrate
from raxx_service_kit.postgres import CONNECTIVITY, DbTimeouts, bounded_pool, connection_kwargs

from broker_handoff.errors import StoreUnavailable

log = logging.getLogger(__name__)

MIGRATIONS = "broker_handoff.migrations"
MIGRATIONS_TABLE = "bh_schema_migrations"
_STATE_COLS = (
    "user_id, env, code_verifier, redirect_uri, expires_at, binding_hash, status, failure,"
    " claimed_at"
)
TIMEOUTS = DbTimeouts(pool=2.0, statement=5.0, connect=3, reconnect=2.0)
"""broker-handoff's defaults (settings override them: db_*_seconds, db_statement_timeout_ms)."""
_UNAVAILABLE: tuple[type[BaseException], ...] = (*CONNECTIVITY, TimeoutError)
_CONN_COLS = "user_id, env, status, scope, vault_key, connected_at, updated_at, reason, grant_id"


@dataclass(frozen=True)
class OAuthState:
    """An OAuth state row (a pending, in-progress or failed-and-retryable authorization)."""

    user_id: str
    env: str
    code_verifier: str | None
    redirect_uri: str
    expires_at: dt.datetime
    binding_hash: str = ""
    status: str = "pending"
    failure: str = ""
    claimed_at: dt.datetime | None = None


@dataclass(frozen=True)
class ConnectLink:
    """A consumed one-time browser link."""

    user_id: str
    env: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class Connection:
    """A user's connection record (never the token)."""

    user_id: str
    env: str
    status: str
    scope: str
    vault_key: str
    connected_at: dt.datetime | None
    updated_at: dt.datetime
    reason: str
    grant_id: str | None = None


@dataclass(frozen=True)
class RevokeJob:
    """A mass-revocation job and its progress."""

    id: int
    status: str
    cursor: str
    destroyed: int
    failed: int


class Store:
    """Async PostgreSQL access for broker-handoff."""

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 8,
        timeouts: DbTimeouts = TIMEOUTS,
        retry_after: float = 5.0,
    ) -> None:
        # Every wait is bounded: a connection from the pool, a new connection (connect), a
        # statement (statement_timeout, server side), a dead peer (TCP keepalives). A short
        # `reconnect` makes the pool stop its own backoff quickly, so the first request after an
        # outage connects at once instead of waiting out a backoff.
        ms = timeouts.statement_ms
        options = (
            f"-c statement_timeout={ms} -c lock_timeout={ms} "
            f"-c idle_in_transaction_session_timeout={ms * 2}"
        )
        kwargs = connection_kwargs(
            autocommit=True,
            connect_timeout=timeouts.connect,
            options=options,
            keepalives_idle=10,
            keepalives_interval=3,
        )
        self._pool = bounded_pool(
            dsn,
            kwargs,
            max_size=max_size,
            timeout=timeouts.pool,
            reconnect_timeout=timeouts.reconnect,
        )
        self._retry_after = retry_after

    async def open(self) -> None:
        """Open the pool and apply the pending numbered migrations (the kit's runner)."""
        try:
            await self._pool.open(wait=True, timeout=10)
            async with self._pool.connection() as conn:
                await migrate(conn, MIGRATIONS, table=MIGRATIONS_TABLE)
        except (psycopg.Error, OSError, psycopg_pool.PoolTimeout) as exc:
            log.warning("database unavailable at start: %s", type(exc).__name__)
            raise StoreUnavailable(retry_after=self._retry_after) from exc

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.errors.RaiseException:
            raise
        except _UNAVAILABLE as exc:
            log.warning("database error: %s", type(exc).__name__)
            raise StoreUnavailable(retry_after=self._retry_after) from None

    async def _one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        async with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.encode(), params)
            return await cur.fetchone() if cur.description else None

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.encode(), params)
            return await cur.fetchall()

    async def ping(self) -> bool:
        """Whether the database answers (for /readyz)."""
        try:
            return await self._one("SELECT 1 AS ok") is not None
        except StoreUnavailable:
            return False

    # -- tiers --------------------------------------------------------------------------------
    async def tier_of(self, user_id: str) -> str | None:
        """The user's projected tier, None when billing never mentioned them."""
        row = await self._one("SELECT tier FROM bh_user_tiers WHERE user_id = %s", (user_id,))
        return str(row["tier"]) if row else None

    async def apply_tier(
        self, user_id: str, tier: str, version: int, changed_at: dt.datetime
    ) -> bool:
        """Upsert a tier if `version` is newer than the stored one; True when it applied."""
        row = await self._one(
            """INSERT INTO bh_user_tiers (user_id, tier, version, changed_at)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (user_id) DO UPDATE
                 SET tier = EXCLUDED.tier, version = EXCLUDED.version,
                     changed_at = EXCLUDED.changed_at, updated_at = now()
                 WHERE bh_user_tiers.version < EXCLUDED.version
               RETURNING version""",
            (user_id, tier, version, changed_at),
        )
        return row is not None

    # -- OAuth states -------------------------------------------------------------------------
    async def save_state(
        self,
        key: str,
        user_id: str,
        env: str,
        code_verifier: str | None,
        redirect_uri: str,
        expires_at: dt.datetime,
        binding_hash: str,
        replaces: str | None = None,
    ) -> None:
        """Remember a pending authorization bound to a browser (also sweeps expired ones).

        `replaces` names a failed state this one retries: it is deleted in the same transaction.
        """
        async with self._conn() as conn, conn.transaction():
            await conn.execute(b"DELETE FROM bh_oauth_states WHERE expires_at < now()")
            if replaces is not None:
                await conn.execute(b"DELETE FROM bh_oauth_states WHERE state_key = %s", (replaces,))
            await conn.execute(
                b"""INSERT INTO bh_oauth_states
                   (state_key, user_id, env, code_verifier, redirect_uri, expires_at,
                    binding_hash)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (key, user_id, env, code_verifier, redirect_uri, expires_at, binding_hash),
            )

    async def state(self, key: str) -> OAuthState | None:
        """A state row (not consumed), None when unknown."""
        row = await self._one(
            f"SELECT {_STATE_COLS} FROM bh_oauth_states WHERE state_key = %s",  # noqa: S608
            (key,),
        )
        return OAuthState(**row) if row else None

    async def claim_state(self, key: str, stale_before: dt.datetime) -> OAuthState | None:
        """Take a pending state for exchange (one request at a time); None if not claimable.

        A claim older than `stale_before` belongs to a request that died: it may be retaken.
        """
        row = await self._one(
            f"""UPDATE bh_oauth_states SET status = 'exchanging', claimed_at = now()
               WHERE state_key = %s AND (status = 'pending'
                 OR (status = 'exchanging' AND claimed_at < %s))
               RETURNING {_STATE_COLS}""",  # noqa: S608
            (key, stale_before),
        )
        return OAuthState(**row) if row else None

    async def fail_state(self, key: str, failure: str, expires_at: dt.datetime) -> None:
        """Keep a state whose exchange failed, as a retry ticket for the same browser."""
        await self._one(
            """UPDATE bh_oauth_states SET status = 'failed', failure = %s, expires_at = %s,
               claimed_at = NULL WHERE state_key = %s""",
            (failure, expires_at, key),
        )

    async def delete_state(self, key: str) -> None:
        """Forget a state (success, refusal, or a browser that does not hold its cookie)."""
        await self._one("DELETE FROM bh_oauth_states WHERE state_key = %s", (key,))

    # -- one-time browser links ---------------------------------------------------------------
    async def save_link(self, key: str, user_id: str, env: str, expires_at: dt.datetime) -> None:
        """Remember a one-time link (stored hashed; also sweeps expired ones)."""
        async with self._conn() as conn:
            await conn.execute(b"DELETE FROM bh_connect_links WHERE expires_at < now()")
            await conn.execute(
                b"""INSERT INTO bh_connect_links (link_key, user_id, env, expires_at)
                   VALUES (%s, %s, %s, %s)""",
                (key, user_id, env, expires_at),
            )

    async def link(self, key: str) -> ConnectLink | None:
        """A link that is known and not yet expired (not consumed)."""
        row = await self._one(
            """SELECT user_id, env, expires_at FROM bh_connect_links
               WHERE link_key = %s AND expires_at >= now()""",
            (key,),
        )
        return ConnectLink(**row) if row else None

    async def consume_link(self, key: str) -> ConnectLink | None:
        """Take a link (single use); None when unknown, used or expired."""
        row = await self._one(
            """DELETE FROM bh_connect_links WHERE link_key = %s
               RETURNING user_id, env, expires_at""",
            (key,),
        )
        if row is None or row["expires_at"] < dt.datetime.now(dt.UTC):
            return None
        return ConnectLink(**row)

    # -- connections and grants ----------------------------------------------------------------
    async def connection(self, user_id: str) -> Connection | None:
        """The user's connection record, if any."""
        row = await self._one(
            f"SELECT {_CONN_COLS} FROM bh_connections WHERE user_id = %s",  # noqa: S608
            (user_id,),
        )
        return Connection(**row) if row else None

    async def begin_grant(self, grant_id: str, user_id: str) -> None:
        """Record the intent to write a grant to Vault, before writing it."""
        await self._one(
            "INSERT INTO bh_grants (grant_id, user_id, status) VALUES (%s, %s, 'writing')",
            (grant_id, user_id),
        )

    async def set_grant_status(
        self, grant_id: str, status: str, only_from: tuple[str, ...]
    ) -> bool:
        """Move a grant to `status` if it is in one of `only_from`; True when it moved."""
        row = await self._one(
            """UPDATE bh_grants SET status = %s, updated_at = now()
               WHERE grant_id = %s AND status = ANY(%s) RETURNING grant_id""",
            (status, grant_id, list(only_from)),
        )
        return row is not None

    async def activate_grant(
        self, user_id: str, grant_id: str, env: str, scope: str, key: str
    ) -> str | None:
        """Point the user's connection at a freshly written grant, in one transaction.

        Returns the grant it replaces (now 'retired'), if any. Raises StoreUnavailable when the
        grant is no longer 'writing' (the reconciler took it for an orphan): nothing changes.
        """
        async with (
            self._conn() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                b"""UPDATE bh_grants SET status = 'active', updated_at = now()
                   WHERE grant_id = %s AND status = 'writing' RETURNING grant_id""",
                (grant_id,),
            )
            if await cur.fetchone() is None:
                raise StoreUnavailable("The connection could not be recorded. Try again.")
            await cur.execute(
                b"SELECT grant_id FROM bh_connections WHERE user_id = %s FOR UPDATE", (user_id,)
            )
            previous_row = await cur.fetchone()
            previous = previous_row["grant_id"] if previous_row else None
            await cur.execute(
                b"""INSERT INTO bh_connections (user_id, env, status, scope, vault_key,
                     connected_at, updated_at, reason, grant_id)
                   VALUES (%s, %s, 'connected', %s, %s, now(), now(), '', %s)
                   ON CONFLICT (user_id) DO UPDATE SET env = EXCLUDED.env,
                     status = 'connected', scope = EXCLUDED.scope,
                     vault_key = EXCLUDED.vault_key, connected_at = now(), updated_at = now(),
                     reason = '', grant_id = EXCLUDED.grant_id""",
                (user_id, env, scope, key, grant_id),
            )
            if previous and previous != grant_id:
                await cur.execute(
                    b"""UPDATE bh_grants SET status = 'retired', updated_at = now()
                       WHERE grant_id = %s AND status = 'active'""",
                    (previous,),
                )
                return str(previous)
            return None

    async def grant_statuses(self, grant_ids: list[str]) -> dict[str, tuple[str, dt.datetime]]:
        """Status and last change of each known grant id."""
        rows = await self._all(
            "SELECT grant_id, status, updated_at FROM bh_grants WHERE grant_id = ANY(%s)",
            (grant_ids,),
        )
        return {str(r["grant_id"]): (str(r["status"]), r["updated_at"]) for r in rows}

    async def sweep_grants(self, older_than: dt.timedelta) -> None:
        """Forget grants that are long destroyed or failed (the audit keeps the history)."""
        await self._one(
            """DELETE FROM bh_grants WHERE status IN ('destroyed', 'failed', 'retired')
               AND updated_at < now() - %s""",
            (older_than,),
        )

    async def mark_disconnected(self, user_id: str, status: str, reason: str) -> bool:
        """Mark a connection disconnected/revoked (its grant retired); True when connected."""
        async with (
            self._conn() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(
                b"""UPDATE bh_connections SET status = %s, reason = %s, updated_at = now()
                   WHERE user_id = %s AND status = 'connected' RETURNING grant_id""",
                (status, reason, user_id),
            )
            row = await cur.fetchone()
            if row and row["grant_id"]:
                await cur.execute(
                    b"""UPDATE bh_grants SET status = 'retired', updated_at = now()
                       WHERE grant_id = %s AND status = 'active'""",
                    (row["grant_id"],),
                )
            return row is not None

    async def connected_user_ids(self) -> list[str]:
        """Users whose record says connected."""
        rows = await self._all("SELECT user_id FROM bh_connections WHERE status = 'connected'")
        return [str(r["user_id"]) for r in rows]

    # -- orders -------------------------------------------------------------------------------
    async def claim_order(
        self, user_id: str, coid: str, fingerprint: str
    ) -> tuple[bool, dict[str, Any]]:
        """Claim a client_order_id; (True, row) for the first caller, (False, row) after."""
        row = await self._one(
            """INSERT INTO bh_orders (user_id, client_order_id, fingerprint, state)
               VALUES (%s, %s, %s, 'pending') ON CONFLICT DO NOTHING
               RETURNING fingerprint, state, provider_order""",
            (user_id, coid, fingerprint),
        )
        if row is not None:
            return True, row
        existing = await self._one(
            """SELECT fingerprint, state, provider_order FROM bh_orders
               WHERE user_id = %s AND client_order_id = %s""",
            (user_id, coid),
        )
        return False, existing or {}

    async def record_order(self, user_id: str, coid: str, order: dict[str, Any]) -> None:
        """Store the provider's answer for a placed order."""
        await self._one(
            """UPDATE bh_orders SET state = 'placed', provider_order = %s, updated_at = now()
               WHERE user_id = %s AND client_order_id = %s""",
            (json.dumps(order, default=str), user_id, coid),
        )

    async def release_order(self, user_id: str, coid: str) -> None:
        """Forget a pending claim the provider certainly did not accept (so a retry may place)."""
        await self._one(
            """DELETE FROM bh_orders WHERE user_id = %s AND client_order_id = %s
               AND state = 'pending'""",
            (user_id, coid),
        )

    # -- audit --------------------------------------------------------------------------------
    async def audit(
        self,
        actor: str,
        user_id: str | None,
        action: str,
        outcome: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit row (who, what, outcome; never a secret)."""
        await self._one(
            """INSERT INTO bh_audit (actor, user_id, action, outcome, detail)
               VALUES (%s, %s, %s, %s, %s)""",
            (actor, user_id, action, outcome, json.dumps(detail or {})),
        )

    async def audit_rows(self, user_id: str) -> list[dict[str, Any]]:
        """A user's audit trail, oldest first."""
        return await self._all(
            """SELECT at, actor, action, outcome, detail FROM bh_audit
               WHERE user_id = %s ORDER BY id""",
            (user_id,),
        )

    # -- mass revocation ----------------------------------------------------------------------
    async def open_revoke_job(self) -> tuple[RevokeJob, bool]:
        """The running job to resume, or a new one; (job, resumed)."""
        cols = "id, status, cursor, destroyed, failed"
        row = await self._one(f"SELECT {cols} FROM bh_revoke_jobs WHERE status = 'running'")  # noqa: S608
        if row:
            return RevokeJob(**row), True
        row = await self._one(
            f"INSERT INTO bh_revoke_jobs (status) VALUES ('running') RETURNING {cols}"  # noqa: S608
        )
        if row is None:
            raise StoreUnavailable("revoke job row vanished")
        return RevokeJob(**row), False

    async def advance_revoke_job(
        self, job_id: int, cursor: str, destroyed: int, failed: int
    ) -> None:
        """Persist progress after each token (the resume point)."""
        await self._one(
            """UPDATE bh_revoke_jobs SET cursor = %s, destroyed = destroyed + %s,
               failed = failed + %s, updated_at = now() WHERE id = %s""",
            (cursor, destroyed, failed, job_id),
        )

    async def finish_revoke_job(self, job_id: int) -> RevokeJob:
        """Mark a job done and return its totals."""
        row = await self._one(
            """UPDATE bh_revoke_jobs SET status = 'done', finished_at = now(), updated_at = now()
               WHERE id = %s RETURNING id, status, cursor, destroyed, failed""",
            (job_id,),
        )
        if row is None:
            raise StoreUnavailable("revoke job row vanished")
        return RevokeJob(**row)

    async def revoke_job(self, job_id: int) -> RevokeJob | None:
        """One job's current totals."""
        row = await self._one(
            "SELECT id, status, cursor, destroyed, failed FROM bh_revoke_jobs WHERE id = %s",
            (job_id,),
        )
        return RevokeJob(**row) if row else None
