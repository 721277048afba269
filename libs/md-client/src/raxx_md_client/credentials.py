"""Obtaining tier-gate credentials over HTTP (and dev identities in a dev stack)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import nkeys
from raxx_contracts import AssetClass, Path


class TierGateError(RuntimeError):
    """tier-gate refused or could not be reached; `code` is its error code or `unreachable`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Credential:
    """A tier-gate credential: NATS JWT (for our own key), tier, paths and expiry."""

    tier: str
    jwt: str
    expires_at: dt.datetime
    ttl_seconds: int
    paths: dict[AssetClass, Path]
    inbox_prefix: str
    http_token: str
    interest_subject: str
    """The one subject this credential may send interest requests on (from tier-gate)."""

    def refresh_at(self, fraction: float) -> dt.datetime:
        """When to refresh: `fraction` of the lifetime after it was issued."""
        return self.expires_at - dt.timedelta(seconds=self.ttl_seconds * (1 - fraction))


def new_user_seed() -> bytes:
    """A fresh NATS user seed; it never leaves this process (tier-gate sees the public key)."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    """The public key of a user seed."""
    key: bytes = nkeys.from_seed(seed).public_key
    return key.decode()


IdentityProvider = Callable[[], Awaitable[str]]
"""Returns a current Raxx identity JWT (called before each credential request)."""


class TierGateClient:
    """`POST /v1/tokens` (and the dev identity route) on tier-gate."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _post(self, path: str, **kwargs: object) -> dict[str, object]:
        try:
            resp = await self._http.post(path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise TierGateError(
                "unreachable", f"cannot reach tier-gate at {self.base_url} ({exc})"
            ) from exc
        try:
            body: dict[str, object] = resp.json()
        except ValueError:
            body = {"error": "bad_response", "message": resp.text[:200]}
        if resp.status_code != 200:
            raise TierGateError(
                str(body.get("reason") or body.get("error")),
                f"tier-gate said {resp.status_code}: {body.get('message', body)}",
            )
        return body

    async def issue(self, identity_jwt: str, user_public_key: str) -> Credential:
        """A credential for our own public key (no seed crosses the wire)."""
        body = await self._post(
            "/v1/tokens",
            headers={"Authorization": f"Bearer {identity_jwt}"},
            json={"public_key": user_public_key},
        )
        nats_part = body["nats"]
        granted = body["subjects"]
        if not isinstance(nats_part, dict) or not isinstance(granted, dict):
            raise TierGateError("bad_response", "tier-gate answered an unexpected shape")
        return Credential(
            tier=str(body["tier"]),
            jwt=str(nats_part["jwt"]),
            expires_at=dt.datetime.fromisoformat(str(body["expires_at"])),
            ttl_seconds=int(str(body.get("ttl_seconds", 900))),
            paths={AssetClass(a): Path(p) for a, p in granted["paths"].items()},
            inbox_prefix=str(granted["inbox_prefix"]),
            http_token=str(body["http_token"]),
            interest_subject=str(granted["interest"]),
        )

    async def dev_identity(self, user: str, tier: str) -> str:
        """Dev stacks only: record `tier` for `user` and get an identity JWT."""
        body = await self._post("/dev/identity", json={"user": user, "tier": tier})
        return str(body["token"])
