"""Tokens tier-gate *signs*: the hub's HTTP token and (dev only) identity tokens.

Verification of identity tokens is the service kit's `JwtVerifier` (joserfc, JWKS cache with
a bounded refresh); signing stays here because tier-gate is an issuer (its keys and JWKS are
published at `/.well-known/jwks.json`).
"""

from __future__ import annotations

import time
import uuid

from joserfc.jwk import OKPKey
from raxx_service_kit.jwt import sign

HTTP_TOKEN_ISSUER = "raxx-tier-gate"  # noqa: S105 (a name, not a secret)
HTTP_TOKEN_AUDIENCE = "raxx-md-http"  # noqa: S105


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
