"""The JWT verifier: claims, reasons, JWKS caching and the bounded refresh on unknown kid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import KeySet, OKPKey
from raxx_service_kit.errors import RetryableError, UnauthorizedError
from raxx_service_kit.jwt import JwtVerifier, sign

NOW = 1_800_000_000


def key(kid: str) -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": kid})


def claims(**over: Any) -> dict[str, Any]:
    return {"iss": "raxx-identity", "aud": "raxx", "sub": "u1", "exp": NOW + 60, **over}


def jwks(*keys: OKPKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def static(*keys: OKPKey, **kw: Any) -> JwtVerifier:
    return JwtVerifier(
        issuer="raxx-identity", audience="raxx", keys=KeySet(list(keys)), now=lambda: NOW, **kw
    )


async def reason(v: JwtVerifier, token: str) -> str:
    with pytest.raises(UnauthorizedError) as info:
        await v.verify(token)
    assert info.value.status == 401
    return info.value.reason


async def test_valid_token_and_every_refusal_reason() -> None:
    k = key("k1")
    v = static(k)
    assert (await v.verify(sign(k, claims())))["sub"] == "u1"
    assert await reason(v, sign(k, claims(exp=NOW - 31))) == "expired"
    assert (await v.verify(sign(k, claims(exp=NOW - 10))))["sub"] == "u1"  # within leeway
    assert await reason(v, sign(k, claims(nbf=NOW + 60))) == "not_yet_valid"
    assert await reason(v, sign(k, claims(aud="other"))) == "wrong_aud"
    assert await reason(v, sign(k, claims(iss="evil"))) == "wrong_iss"
    no_sub = claims()
    del no_sub["sub"]
    assert await reason(v, sign(k, no_sub)) == "missing_claim"
    no_exp = claims()
    del no_exp["exp"]
    assert await reason(v, sign(k, no_exp)) == "missing_claim"
    assert await reason(v, "not-a-jwt") == "malformed"
    forged = sign(OKPKey.generate_key("Ed25519", parameters={"kid": "k1"}), claims())
    assert await reason(v, forged) == "bad_signature"
    assert await reason(v, sign(key("k9"), claims())) == "unknown_key"
    only_es = static(k, algorithms=["ES256"])
    assert await reason(only_es, sign(k, claims())) == "algorithm"


async def test_jwks_is_cached_and_refreshed_on_unknown_kid_at_a_bounded_rate(
    tmp_path: Path,
) -> None:
    old, new = key("old"), key("new")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(old)))
    clock = [0.0]
    v = JwtVerifier(
        issuer="raxx-identity",
        audience="raxx",
        jwks_url=str(path),
        now=lambda: NOW,
        monotonic=lambda: clock[0],
        min_refresh_interval=5,
        ttl=300,
    )
    await v.load()
    await v.verify(sign(old, claims()))
    assert v.fetches == 1  # cached
    path.write_text(json.dumps(jwks(old, new)))  # rotation
    assert await reason(v, sign(new, claims())) == "unknown_key"  # too soon to refetch
    assert await reason(v, sign(key("forged"), claims())) == "unknown_key"
    assert v.fetches == 1
    clock[0] = 6
    assert (await v.verify(sign(new, claims())))["sub"] == "u1"
    assert v.fetches == 2
    for _ in range(5):  # forged kids cannot make it fetch again within the interval
        await reason(v, sign(key("forged"), claims()))
    assert v.fetches == 2
    clock[0] = 400
    path.write_text(json.dumps(jwks(new)))  # the TTL expires: old key dropped
    assert await reason(v, sign(old, claims())) == "unknown_key"
    assert v.fetches == 3


async def test_http_jwks_and_outage_behaviour() -> None:
    k = key("k1")
    up = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/jwks.json"
        return httpx.Response(200, json=jwks(k)) if up[0] else httpx.Response(503)

    clock = [0.0]
    v = JwtVerifier(
        issuer="raxx-identity",
        audience="raxx",
        jwks_url="http://idp/jwks.json",
        transport=httpx.MockTransport(handler),
        now=lambda: NOW,
        monotonic=lambda: clock[0],
    )
    assert (await v.verify(sign(k, claims())))["sub"] == "u1"
    up[0] = False
    clock[0] = 1000  # TTL passed, the IdP is down: the cached keys keep working
    assert (await v.verify(sign(k, claims())))["sub"] == "u1"
    cold = JwtVerifier(
        issuer="i", audience="a", jwks_url="http://idp/jwks.json",
        transport=httpx.MockTransport(handler),
    )  # fmt: skip
    with pytest.raises(RetryableError) as info:
        await cold.verify(sign(k, claims()))
    assert (info.value.status, info.value.code) == (503, "keys_unavailable")
