import json
import time
from pathlib import Path

import pytest
from broker_handoff.auth import IdentityVerifier, JsonWebKey, JsonWebToken, admin_allowed, bearer
from broker_handoff.errors import Unauthorized


def _key(kid: str) -> JsonWebKey:
    return JsonWebKey.generate_key("RSA", 2048, {"kid": kid, "alg": "RS256"}, is_private=True)


def _sign(key: JsonWebKey, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": "raxx-identity", "aud": "raxx", "sub": "u-1", "iat": now, "exp": now + 60}
    body.update(claims)
    header = {"alg": "RS256", "kid": key.as_dict()["kid"]}
    return JsonWebToken(["RS256"]).encode(header, body, key).decode()


@pytest.fixture
def jwks(tmp_path: Path) -> tuple[JsonWebKey, Path]:
    key = _key("k1")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(is_private=False)]}))
    return key, path


async def test_a_valid_identity_jwt_yields_its_subject(jwks: tuple[JsonWebKey, Path]) -> None:
    key, path = jwks
    verifier = IdentityVerifier(str(path), "raxx-identity", "raxx")
    assert await verifier.user_id(_sign(key)) == "u-1"


@pytest.mark.parametrize(
    "claims",
    [{"iss": "someone-else"}, {"aud": "other"}, {"exp": int(time.time()) - 3600}],
)
async def test_wrong_issuer_audience_or_expiry_is_refused(
    jwks: tuple[JsonWebKey, Path], claims: dict[str, object]
) -> None:
    key, path = jwks
    verifier = IdentityVerifier(str(path), "raxx-identity", "raxx")
    with pytest.raises(Unauthorized):
        await verifier.user_id(_sign(key, **claims))


async def test_a_token_signed_by_another_key_is_refused(jwks: tuple[JsonWebKey, Path]) -> None:
    _, path = jwks
    verifier = IdentityVerifier(str(path), "raxx-identity", "raxx")
    with pytest.raises(Unauthorized):
        await verifier.user_id(_sign(_key("k1")))
    with pytest.raises(Unauthorized):
        await verifier.user_id(_sign(_key("other-kid")))
    with pytest.raises(Unauthorized):
        await verifier.user_id("not-a-jwt")


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthorized):
            bearer(bad)


def test_admin_is_refused_when_no_hash_is_configured() -> None:
    assert not admin_allowed("anything", None)
    assert not admin_allowed("anything", "")


async def test_unknown_key_ids_refetch_the_jwks_at_most_once_per_interval(
    jwks: tuple[JsonWebKey, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, path = jwks
    verifier = IdentityVerifier(str(path), "raxx-identity", "raxx", min_refresh_seconds=30)
    loads = 0
    real_load = verifier._load

    async def counting_load() -> object:
        nonlocal loads
        loads += 1
        return await real_load()

    monkeypatch.setattr(verifier, "_load", counting_load)
    assert await verifier.user_id(_sign(key)) == "u-1"
    for i in range(10):
        with pytest.raises(Unauthorized):
            await verifier.user_id(_sign(_key(f"forged-{i}")))
    assert loads == 1  # the first load; forged kids inside the interval fetch nothing
    # A real rotation after the interval is picked up.
    rotated = _key("k2")
    path.write_text(json.dumps({"keys": [rotated.as_dict(is_private=False)]}))
    verifier._attempted_at -= 31
    assert await verifier.user_id(_sign(rotated)) == "u-1"
    assert loads == 2
