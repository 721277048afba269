"""Who is calling: Raxx identity JWTs (the kit's `JwtVerifier`, joserfc) and the admin token."""

from __future__ import annotations

import logging

from raxx_service_kit.errors import UnauthorizedError
from raxx_service_kit.jwt import JwtVerifier

from broker_handoff.domain import token_matches
from broker_handoff.errors import Unauthorized
from broker_handoff.settings import Settings

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256", "EdDSA", "Ed25519")


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header."""
    if not header:
        raise Unauthorized("Send Authorization: Bearer <token>.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send Authorization: Bearer <token>.")
    return token.strip()


def identity_verifier(settings: Settings) -> JwtVerifier:
    """The identity-token verifier: JWKS cached, an unknown `kid` refetches at most once per
    `BH_IDENTITY_JWKS_MIN_REFRESH_SECONDS` (forged key ids cannot hammer the issuer)."""
    return JwtVerifier(
        issuer=settings.identity_issuer,
        audience=settings.identity_audience,
        jwks_url=settings.identity_jwks_url,
        algorithms=ALGORITHMS,
        required=("sub",),
        min_refresh_interval=settings.identity_jwks_min_refresh_seconds,
    )


async def user_id(verifier: JwtVerifier, token: str) -> str:
    """The verified `sub` of an identity JWT; `Unauthorized` (no reason in the body) otherwise.

    The kit's reason (expired, wrong_aud, unknown_key, ...) goes to the log only: this service
    has always answered a fixed message, whatever the token carried.
    """
    try:
        claims = await verifier.verify(token)
    except UnauthorizedError as exc:
        log.info("identity token refused: %s", exc.reason)
        raise Unauthorized("Invalid or expired identity token.") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Invalid or expired identity token.")
    return sub


def admin_allowed(presented: str, expected_sha256: str | None) -> bool:
    """Whether a presented admin bearer token matches the configured hash (none: refuse)."""
    return bool(expected_sha256) and token_matches(presented, expected_sha256 or "")
