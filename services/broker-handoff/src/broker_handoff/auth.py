"""Who is calling: Raxx identity JWTs (authlib jose + JWKS) and the separate admin token."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from pathlib import Path
from typing import Any

# Imported first: it installs an "always" filter that must not override the one below.
import authlib.deprecate  # noqa: F401
import httpx

with warnings.catch_warnings():
    # Authlib 1.9 marks `authlib.jose` deprecated in favour of joserfc; the team convention
    # (TEAM.md: identity JWTs verified with authlib's jose) keeps it until 2.0.
    warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")
    from authlib.jose import JsonWebKey, JsonWebToken, KeySet
    from authlib.jose.errors import JoseError

from broker_handoff.domain import token_matches
from broker_handoff.errors import Unauthorized

ALGORITHMS = ["RS256", "ES256", "EdDSA"]
JWKS_TTL_SECONDS = 300.0


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header."""
    if not header:
        raise Unauthorized("Send Authorization: Bearer <token>.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send Authorization: Bearer <token>.")
    return token.strip()


class IdentityVerifier:
    """Verifies identity JWTs against a JWKS (URL or file).

    An unknown `kid` may mean the issuer rotated keys, so it refetches the JWKS, but at most once
    per `min_refresh_seconds` (counting failed fetches too): tokens with made-up key ids cannot
    turn every request into a request to the identity provider.
    """

    def __init__(
        self, jwks_url: str, issuer: str, audience: str, min_refresh_seconds: float = 30.0
    ) -> None:
        self._jwks_url = jwks_url
        self._min_refresh = min_refresh_seconds
        self._attempted_at = -1e18
        self._jwt = JsonWebToken(ALGORITHMS)
        self._claims_options = {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": audience},
            "sub": {"essential": True},
            "exp": {"essential": True},
        }
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _load(self) -> KeySet:
        if self._jwks_url.startswith(("http://", "https://")):
            async with httpx.AsyncClient(timeout=5.0) as client:
                resp = await client.get(self._jwks_url)
                resp.raise_for_status()
                data: Any = resp.json()
        else:
            text = await asyncio.to_thread(Path(self._jwks_url).read_text)
            data = json.loads(text)
        return JsonWebKey.import_key_set(data)

    async def _key_set(self, refresh: bool) -> KeySet:
        async with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at > JWKS_TTL_SECONDS
            may_refresh = now - self._attempted_at >= self._min_refresh
            if (self._keys is None or refresh or stale) and may_refresh:
                self._attempted_at = now
                try:
                    self._keys = await self._load()
                    self._fetched_at = time.monotonic()
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    if self._keys is None:
                        raise Unauthorized("Identity keys are unavailable; try again.") from exc
            if self._keys is None:
                raise Unauthorized("Identity keys are unavailable; try again.")
            return self._keys

    async def user_id(self, token: str) -> str:
        """The verified `sub` of an identity JWT; Unauthorized otherwise."""
        for refresh in (False, True):
            keys = await self._key_set(refresh)
            try:
                claims = self._jwt.decode(token, keys, claims_options=self._claims_options)
                claims.validate(leeway=30)
            except ValueError:
                continue  # unknown kid: the issuer may have rotated keys
            except JoseError:
                raise Unauthorized("Invalid or expired identity token.") from None
            sub = claims.get("sub")
            if isinstance(sub, str) and sub:
                return sub
            break
        raise Unauthorized("Invalid or expired identity token.")


def admin_allowed(presented: str, expected_sha256: str | None) -> bool:
    """Whether a presented admin bearer token matches the configured hash (none: refuse)."""
    return bool(expected_sha256) and token_matches(presented, expected_sha256 or "")
