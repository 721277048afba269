"""The tier-gate HTTP token: an EdDSA JWT checked against tier-gate's JWKS.

Claims: `sub` (user id), `tier`, `aud` = `raxx-md-http`, `iss` = `raxx-tier-gate`, `exp`.
The JWKS comes from an http(s) URL or a file path, is cached, and is re-fetched (at most every
few seconds) when a token names a key id it does not know, so a key rotation needs no restart.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from market_data_hub.errors import RetryableError, UnauthorizedError

ALGS = ("EdDSA", "Ed25519")


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Caller:
    """Who is calling the HTTP API."""

    user_id: str
    tier: str


def parse_jwks(data: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    """Ed25519 public keys of a JWKS by key id (other key types are ignored)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in data.get("keys", []):
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and "x" in jwk:
            keys[str(jwk.get("kid", ""))] = Ed25519PublicKey.from_public_bytes(_b64(jwk["x"]))
    return keys


class JwksVerifier:
    """Verifies HTTP tokens; keys cached for `ttl` seconds."""

    def __init__(self, url: str, audience: str, issuer: str, ttl: float = 300.0) -> None:
        self.url = url
        self.audience = audience
        self.issuer = issuer
        self.ttl = ttl
        self._keys: dict[str, Ed25519PublicKey] | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self) -> dict[str, Ed25519PublicKey]:
        if self.url.startswith(("http://", "https://")):
            async with httpx.AsyncClient(timeout=5) as client:
                resp = await client.get(self.url)
                resp.raise_for_status()
                data: dict[str, Any] = resp.json()
        else:
            data = json.loads(await asyncio.to_thread(FsPath(self.url).read_text))
        return parse_jwks(data)

    async def _keyset(self, refresh: bool) -> dict[str, Ed25519PublicKey]:
        async with self._lock:
            age = time.monotonic() - self._fetched
            if self._keys is None or age > self.ttl or (refresh and age > 5):
                try:
                    self._keys = await self._fetch()
                    self._fetched = time.monotonic()
                except Exception as exc:
                    if self._keys is None:
                        raise RetryableError(
                            f"cannot load tier-gate keys ({type(exc).__name__})", 5
                        ) from None
            return self._keys

    async def verify(self, token: str) -> Caller:
        """Return the caller or raise UnauthorizedError with the reason."""
        try:
            head_b64, body_b64, sig_b64 = token.split(".")
            header = json.loads(_b64(head_b64))
            claims = json.loads(_b64(body_b64))
            sig = _b64(sig_b64)
        except ValueError:
            raise UnauthorizedError("invalid token: not a compact JWS") from None
        if header.get("alg") not in ALGS:
            raise UnauthorizedError(f"invalid token: algorithm {header.get('alg')!r} not accepted")
        kid = str(header.get("kid", ""))
        keys = await self._keyset(refresh=False)
        if kid not in keys:
            keys = await self._keyset(refresh=True)
        key = keys.get(kid) or (next(iter(keys.values())) if len(keys) == 1 and not kid else None)
        if key is None:
            raise UnauthorizedError(f"invalid token: unknown key id {kid!r}")
        try:
            key.verify(sig, f"{head_b64}.{body_b64}".encode())
        except InvalidSignature:
            raise UnauthorizedError("invalid token: bad signature") from None
        return self._claims(claims)

    def _claims(self, claims: dict[str, Any]) -> Caller:
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise UnauthorizedError("invalid token: wrong issuer")
        aud = claims.get("aud")
        if self.audience not in (aud if isinstance(aud, list) else [aud]):
            raise UnauthorizedError("invalid token: wrong audience")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp + 5 < now:
            raise UnauthorizedError("invalid token: expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf - 5 > now:
            raise UnauthorizedError("invalid token: not yet valid")
        sub, tier = claims.get("sub"), claims.get("tier")
        if not isinstance(sub, str) or not sub or not isinstance(tier, str):
            raise UnauthorizedError("invalid token: sub and tier claims are required")
        return Caller(sub, tier)
