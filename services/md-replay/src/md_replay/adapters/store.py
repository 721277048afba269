"""The archive's storage interface and its fsspec adapter (file://, memory://, s3://, ...)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import fsspec

from md_replay.errors import StoreError


class ArchiveStore(Protocol):
    """Where archive objects live, by key (`date=.../asset=.../symbol=....parquet`)."""

    async def put(self, key: str, data: bytes) -> None:
        """Write (or overwrite) one object."""

    async def get(self, key: str) -> bytes | None:
        """One object's bytes, or None when it does not exist."""

    async def keys(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`, sorted."""

    async def delete(self, key: str) -> None:
        """Remove one object (no error when absent)."""


class FsspecStore:
    """Any fsspec filesystem by URL; blocking calls run in a worker thread."""

    def __init__(self, url: str) -> None:
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root = str(root).rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)

        def write() -> None:
            parent = path.rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            tmp = f"{path}.tmp"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)  # readers never see half an object

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            raise StoreError(f"cannot write {key}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            try:
                data: bytes = self.fs.cat_file(self._path(key))
            except FileNotFoundError:
                return None
            return data

        try:
            return await asyncio.to_thread(read)
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    async def keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            if not self.fs.exists(self.root):
                return []
            found = self.fs.find(self.root)
            start = len(self.root.lstrip("/")) + 1
            out = [str(p).lstrip("/")[start:] for p in found]
            return sorted(k for k in out if k.startswith(prefix) and not k.endswith(".tmp"))

        try:
            return await asyncio.to_thread(walk)
        except OSError as exc:
            raise StoreError(f"cannot list the archive: {exc}") from exc

    async def delete(self, key: str) -> None:
        def rm() -> None:
            try:
                self.fs.rm_file(self._path(key))
            except FileNotFoundError:
                return

        try:
            await asyncio.to_thread(rm)
        except OSError as exc:
            raise StoreError(f"cannot delete {key}: {exc}") from exc
