"""One JWT verifier (identity tokens, tier-gate's HTTP tokens) on joserfc.

Keys come from a JWKS at an http(s) URL (or a file path), or from a fixed `KeySet` (tests,
dev). The JWKS is cached for `ttl` seconds; a token naming an unknown `kid` triggers a refresh,
at most once per `min_refresh_interval` seconds (a stream of forged kids cannot turn the
verifier into a JWKS flooder). Checks: signature with an allowed algorithm, `iss`, `aud`,
`exp` (required), `nbf`/`iat` when present, with `leeway` seconds of clock skew, and the
`required` claims. Every refusal is an `UnauthorizedError` (401) with a public `reason`;
keys that cannot be loaded at all are a `RetryableError` (503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import Key, KeySet

from raxx_service_kit.errors import RetryableError, UnauthorizedError

log = logging.getLogger(__name__)

DEFAULT_ALGORITHMS = ("EdDSA", "Ed25519", "ES256", "RS256")
SIGNING_ALG = "EdDSA"
"""RFC 8037's name, what most verifiers know; joserfc warns it is superseded by `Ed25519`."""


def sign(key: Key, claims: dict[str, Any], *, algorithm: str = SIGNING_ALG) -> str:
    """Sign `claims` (header carries `kid`, the key's or its thumbprint)."""
    header = {"alg": algorithm, "kid": key.kid or key.thumbprint(), "typ": "JWT"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, claims, key, algorithms=[algorithm])


class JwtVerifier:
    """Verifies JWTs from one issuer for one audience."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        keys: KeySet | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        required: Sequence[str] = ("sub",),
        leeway: int = 30,
        ttl: float = 300.0,
        min_refresh_interval: float = 5.0,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Exactly one of `jwks_url` (http(s) URL or file path) and `keys` (static).

        `now`/`monotonic` are injectable for tests; `transport` is httpx's (tests too).
        """
        if (jwks_url is None) == (keys is None):
            raise ValueError("give a JWKS URL or a static key set, not both or neither")
        self.jwks_url = jwks_url
        self._keys = keys
        self._algorithms = list(algorithms)
        claims: dict[str, Any] = {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": audience},
            "exp": {"essential": True},
        }
        for name in required:
            claims.setdefault(name, {"essential": True})
        self._registry = jwt.JWTClaimsRegistry(now=lambda: int(now()), leeway=leeway, **claims)
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self._transport = transport
        self._monotonic = monotonic
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """JWKS fetches so far (tests, metrics)."""

    # -- keys ----------------------------------------------------------------------------------

    async def _fetch(self, url: str) -> KeySet:
        try:
            if url.startswith(("http://", "https://")):
                async with httpx.AsyncClient(
                    timeout=self.timeout, transport=self._transport
                ) as client:
                    resp = await client.get(url)
                    resp.raise_for_status()
                    doc = resp.json()
            else:
                doc = json.loads(await asyncio.to_thread(Path(url).read_bytes))
            return KeySet.import_key_set(doc)
        except (httpx.HTTPError, OSError, ValueError, JoseError) as exc:
            raise RetryableError(
                "the token keys are unavailable; retry later",
                5.0,
                code="keys_unavailable",
                log_detail=f"JWKS {url}: {type(exc).__name__}: {exc}",
            ) from None

    async def _key_set(self, *, unknown_kid: bool = False) -> KeySet:
        if self.jwks_url is None:
            assert self._keys is not None  # noqa: S101 - checked in __init__
            return self._keys
        async with self._lock:
            age = None if self._fetched_at is None else self._monotonic() - self._fetched_at
            due = self._keys is None or age is None or age > self.ttl
            if unknown_kid and age is not None and age >= self.min_refresh_interval:
                due = True
            if due:
                try:
                    self._keys = await self._fetch(self.jwks_url)
                    self.fetches += 1
                    self._fetched_at = self._monotonic()
                except RetryableError as exc:
                    if self._keys is None:
                        raise
                    log.warning("JWKS refresh failed, keeping the cached keys: %s", exc.log_detail)
            assert self._keys is not None  # noqa: S101 - set above or raised
            return self._keys

    async def load(self) -> None:
        """Fetch the JWKS now (at start-up), so the first request does not pay for it."""
        await self._key_set()

    # -- verification --------------------------------------------------------------------------

    def _decode(self, token: str, keys: KeySet) -> jwt.Token:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            return jwt.decode(token, keys, algorithms=self._algorithms)

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; `UnauthorizedError(reason)` otherwise."""
        try:
            try:
                decoded = self._decode(token, await self._key_set())
            except InvalidKeyIdError:
                decoded = self._decode(token, await self._key_set(unknown_kid=True))
            self._registry.validate(decoded.claims)
        except InvalidKeyIdError:
            raise UnauthorizedError("unknown_key", "token signed by an unknown key") from None
        except BadSignatureError:
            raise UnauthorizedError("bad_signature", "token signature does not verify") from None
        except UnsupportedAlgorithmError:
            raise UnauthorizedError("algorithm", "token algorithm is not accepted") from None
        except ExpiredTokenError:
            raise UnauthorizedError("expired", "token has expired") from None
        except MissingClaimError as exc:
            raise UnauthorizedError("missing_claim", f"token lacks {exc.claim!r}") from None
        except InvalidClaimError as exc:
            reason = {"aud": "wrong_aud", "iss": "wrong_iss", "nbf": "not_yet_valid"}.get(
                exc.claim, "invalid_claim"
            )
            raise UnauthorizedError(reason, f"token claim {exc.claim!r} is not accepted") from None
        except (ValueError, JoseError) as exc:
            log.info("token rejected as malformed: %s", type(exc).__name__)
            raise UnauthorizedError("malformed", "token is not a valid signed JWT") from None
        claims: dict[str, Any] = decoded.claims
        return claims
