"""The archive in a NATS Object Store bucket (`MD_ARCHIVE` in `make run`), file storage."""

from __future__ import annotations

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from md_replay.errors import StoreError


class NatsObjectStore:
    """ArchiveStore over one Object Store bucket (created on first use)."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self.js = js
        self.bucket = bucket
        self._obs: ObjectStore | None = None

    async def _store(self) -> ObjectStore:
        if self._obs is None:
            try:
                self._obs = await self.js.object_store(self.bucket)
            except (BucketNotFoundError, NotFoundError):
                self._obs = await self.js.create_object_store(
                    self.bucket,
                    config=ObjectStoreConfig(bucket=self.bucket, storage=StorageType.FILE),
                )
        return self._obs

    async def put(self, key: str, data: bytes) -> None:
        try:
            await (await self._store()).put(key, data)
        except NatsError as exc:
            raise StoreError(f"cannot write {key}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        try:
            res = await (await self._store()).get(key)
        except (ObjectNotFoundError, NotFoundError):
            return None
        except NatsError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc
        return bytes(res.data or b"")

    async def keys(self, prefix: str) -> list[str]:
        try:
            infos = await (await self._store()).list(ignore_deletes=True)
        except NotFoundError:
            return []
        except NatsError as exc:
            raise StoreError(f"cannot list the archive: {exc}") from exc
        return sorted(i.name for i in infos if i.name and i.name.startswith(prefix))

    async def delete(self, key: str) -> None:
        try:
            await (await self._store()).delete(key)
        except (ObjectNotFoundError, NotFoundError):
            return
        except NatsError as exc:
            raise StoreError(f"cannot delete {key}: {exc}") from exc
