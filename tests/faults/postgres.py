"""A PostgreSQL server a fault test owns: it may stop, freeze (SIGSTOP) and restart it."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from raxx_devstack import servers


class PrivatePostgres:
    """A PostgreSQL server this test owns, so it may stop, freeze and restart it."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.server = servers.start_postgres(state, durable=False)
        self.port = self.server.port
        name = f"tg_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.dsn = psycopg.conninfo.make_conninfo(self.server.url, dbname=name)

    def stop(self) -> None:
        """Stop it (SIGTERM: fast shutdown, clients are disconnected)."""
        self.server.stop()

    def start(self) -> None:
        """Start it again on the same port and data directory."""
        self.server = servers.start_postgres(self.state, port=self.port, durable=False)

    def signal(self, sig: int) -> None:
        """Signal the postmaster and every child (backends call setsid: killpg misses them)."""
        pid = self.server.process.pid
        assert pid is not None
        for target in [pid, *_children(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, sig)


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    """A private PostgreSQL (thawed and stopped after the test)."""
    pg = PrivatePostgres(tmp_path / "pg")
    yield pg
    if pg.server.process.alive():
        pg.signal(signal.SIGCONT)
    pg.stop()
