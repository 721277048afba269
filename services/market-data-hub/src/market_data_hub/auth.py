"""The tier-gate HTTP token, verified by the kit's `JwtVerifier` (joserfc).

Claims: `sub` (user id), `tier`, `aud` = `raxx-md-http`, `iss` = `raxx-tier-gate`, `exp`.
The JWKS comes from an http(s) URL or a file path (`MDH_TIER_GATE_JWKS_URL`), is cached, and is
re-fetched (bounded) when a token names a key id it does not know, so a key rotation needs no
restart. Refusals are the kit's `UnauthorizedError` (401 with a public `reason`).
"""

from __future__ import annotations

from dataclasses import dataclass

from raxx_service_kit.errors import UnauthorizedError
from raxx_service_kit.jwt import JwtVerifier


@dataclass(frozen=True)
class Caller:
    """Who is calling the HTTP API."""

    user_id: str
    tier: str


class HttpTokens:
    """Turns a verified tier-gate HTTP token into a `Caller`."""

    def __init__(self, verifier: JwtVerifier) -> None:
        self.verifier = verifier

    async def verify(self, token: str) -> Caller:
        """Return the caller or raise `UnauthorizedError` with the reason."""
        claims = await self.verifier.verify(token)
        sub, tier = claims.get("sub"), claims.get("tier")
        if not isinstance(sub, str) or not sub or not isinstance(tier, str):
            raise UnauthorizedError("missing_claim", "token needs string sub and tier claims")
        return Caller(sub, tier)


def http_tokens(jwks_url: str, audience: str, issuer: str) -> HttpTokens:
    """The hub's verifier of tier-gate HTTP tokens."""
    return HttpTokens(
        JwtVerifier(issuer=issuer, audience=audience, jwks_url=jwks_url, required=("sub", "tier"))
    )
