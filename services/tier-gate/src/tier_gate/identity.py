"""Identity JWT verification (joserfc, authlib's JOSE successor) and HTTP-token signing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
)
from joserfc.jwk import KeySet, OKPKey

from tier_gate.errors import AuthError, UnavailableError

log = logging.getLogger(__name__)

HTTP_TOKEN_ISSUER = "raxx-tier-gate"  # noqa: S105 (a name, not a secret)
HTTP_TOKEN_AUDIENCE = "raxx-md-http"  # noqa: S105
ACCEPTED_ALGS = ["EdDSA", "Ed25519", "ES256", "RS256"]
SIGNING_ALG = "EdDSA"
"""RFC 8037 name, what most verifiers know; joserfc warns it is superseded by `Ed25519`."""


def sign(key: OKPKey, claims: dict[str, Any]) -> str:
    """Sign `claims` with an Ed25519 key (EdDSA), `kid` in the header."""
    header = {"alg": SIGNING_ALG, "kid": key.kid or key.thumbprint(), "typ": "JWT"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, claims, key, algorithms=[SIGNING_ALG])


def _decode(token: str, keys: KeySet) -> jwt.Token:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.decode(token, keys, algorithms=ACCEPTED_ALGS)


class IdentityVerifier:
    """Verifies Raxx identity JWTs against a JWKS (URL, file, or a fixed key set in dev)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        keys: KeySet | None = None,
        refresh_interval: float = 30.0,
    ) -> None:
        if jwks_url is None and keys is None:
            raise ValueError("an identity JWKS URL or a key set is required")
        self._jwks_url = jwks_url
        self._keys = keys
        self._registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        self._refresh_interval = refresh_interval
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self, url: str) -> KeySet:
        try:
            if url.startswith(("http://", "https://")):
                async with httpx.AsyncClient(timeout=5) as client:
                    resp = await client.get(url)
                    resp.raise_for_status()
                    doc = resp.json()
            else:
                doc = json.loads(await asyncio.to_thread(Path(url).read_bytes))
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise UnavailableError(f"identity JWKS {url} unavailable: {exc}") from exc
        return KeySet.import_key_set(doc)

    async def _key_set(self, force: bool = False) -> KeySet:
        if self._jwks_url is None and self._keys is not None:
            return self._keys
        async with self._lock:
            stale = time.monotonic() - self._fetched_at > self._refresh_interval
            if self._jwks_url and (self._keys is None or (force and stale)):
                self._keys = await self._fetch(self._jwks_url)
                self._fetched_at = time.monotonic()
            if self._keys is None:
                raise UnavailableError("no identity keys")
            return self._keys

    async def load(self) -> None:
        """Fetch the JWKS now (start-up), so the first request does not pay for it."""
        await self._key_set()

    async def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid identity JWT; AuthError naming the reason otherwise."""
        keys = await self._key_set()
        try:
            try:
                decoded = _decode(token, keys)
            except (ValueError, JoseError) as first:
                if self._jwks_url is None or isinstance(first, BadSignatureError):
                    raise
                decoded = _decode(token, await self._key_set(force=True))  # key rotation
            self._registry.validate(decoded.claims)
        except BadSignatureError as exc:
            raise AuthError("bad_signature", "identity token signature does not verify") from exc
        except ExpiredTokenError as exc:
            raise AuthError("expired", "identity token has expired") from exc
        except InvalidClaimError as exc:
            reason = f"wrong_{exc.claim}" if exc.claim in ("aud", "iss") else "invalid_claim"
            raise AuthError(reason, f"identity token claim {exc.claim!r} is not accepted") from exc
        except MissingClaimError as exc:
            raise AuthError("missing_claim", f"identity token lacks {exc.claim!r}") from exc
        except (ValueError, JoseError) as exc:
            log.info("identity token rejected as malformed: %r", exc)
            raise AuthError("malformed", "identity token is not a valid signed JWT") from exc
        claims: dict[str, Any] = decoded.claims
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthError("missing_claim", "identity token has no usable 'sub'")
        return claims


def http_token(key: OKPKey, user_id: str, tier: str, expires_at: int, now: int) -> str:
    """The hub HTTP API token: EdDSA JWT, iss raxx-tier-gate, aud raxx-md-http."""
    return sign(
        key,
        {
            "iss": HTTP_TOKEN_ISSUER,
            "aud": HTTP_TOKEN_AUDIENCE,
            "sub": user_id,
            "tier": tier,
            "iat": now,
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
        },
    )


def dev_identity_token(
    key: OKPKey, *, user_id: str, tier: str, issuer: str, audience: str, ttl: int = 12 * 3600
) -> str:
    """A dev identity JWT, signed by the dev identity key (dev only)."""
    now = int(time.time())
    return sign(
        key,
        {"iss": issuer, "aud": audience, "sub": user_id, "tier": tier, "iat": now,
         "exp": now + ttl},
    )  # fmt: skip
