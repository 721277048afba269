import json
import time
from pathlib import Path

import pytest
from broker_handoff.auth import admin_allowed, bearer, identity_verifier, user_id
from broker_handoff.errors import Unauthorized
from broker_handoff.settings import Settings
from joserfc.jwk import RSAKey
from raxx_service_kit.jwt import sign


def _key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256"}, private=True)


def _sign(key: RSAKey, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": "raxx-identity", "aud": "raxx", "sub": "u-1", "iat": now, "exp": now + 60}
    body.update(claims)
    return sign(key, body, algorithm="RS256")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def jwks(tmp_path: Path) -> tuple[RSAKey, Path]:
    key = _key("k1")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return key, path


def _settings(path: Path, **kw: object) -> Settings:
    return Settings(identity_jwks_url=str(path), **kw)  # type: ignore[arg-type]


async def test_a_valid_identity_jwt_yields_its_subject(jwks: tuple[RSAKey, Path]) -> None:
    key, path = jwks
    assert await user_id(identity_verifier(_settings(path)), _sign(key)) == "u-1"


@pytest.mark.parametrize(
    "claims",
    [{"iss": "someone-else"}, {"aud": "other"}, {"exp": int(time.time()) - 3600}, {"sub": ""}],
)
async def test_wrong_issuer_audience_expiry_or_subject_is_refused(
    jwks: tuple[RSAKey, Path], claims: dict[str, object]
) -> None:
    key, path = jwks
    with pytest.raises(Unauthorized) as err:
        await user_id(identity_verifier(_settings(path)), _sign(key, **claims))
    assert err.value.body() == {
        "error": "unauthorized",
        "message": "Invalid or expired identity token.",
    }


async def test_a_token_signed_by_another_key_is_refused(jwks: tuple[RSAKey, Path]) -> None:
    _, path = jwks
    verifier = identity_verifier(_settings(path))
    with pytest.raises(Unauthorized):
        await user_id(verifier, _sign(_key("k1")))
    with pytest.raises(Unauthorized):
        await user_id(verifier, _sign(_key("other-kid")))
    with pytest.raises(Unauthorized):
        await user_id(verifier, "not-a-jwt")


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthorized):
            bearer(bad)


def test_admin_is_refused_when_no_hash_is_configured() -> None:
    assert not admin_allowed("anything", None)
    assert not admin_allowed("anything", "")


async def test_unknown_key_ids_refetch_the_jwks_at_most_once_per_interval(
    jwks: tuple[RSAKey, Path],
) -> None:
    key, path = jwks
    settings = _settings(path, identity_jwks_min_refresh_seconds=30)
    verifier = identity_verifier(settings)
    clock = Clock()
    verifier._monotonic = clock  # the kit's injectable monotonic reading
    assert await user_id(verifier, _sign(key)) == "u-1"
    for i in range(10):
        with pytest.raises(Unauthorized):
            await user_id(verifier, _sign(_key(f"forged-{i}")))
    assert verifier.fetches == 1  # the first load; forged kids inside the interval fetch nothing
    # A real rotation after the interval is picked up.
    rotated = _key("k2")
    path.write_text(json.dumps({"keys": [rotated.as_dict(private=False)]}))
    clock.t += 31
    assert await user_id(verifier, _sign(rotated)) == "u-1"
    assert verifier.fetches == 2
