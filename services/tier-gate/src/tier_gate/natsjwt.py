"""NATS decentralized-auth primitives: nkeys, JWT encoding/decoding and parsing `.creds` text
(the `.creds` text itself comes from the service kit: `raxx_service_kit.nats.creds_text`).

Hand-rolled on `nkeys` + the standard library (nats.md §1): full control over `exp`, scoped
signing keys, `issuer_account` and account revocations, with no extra dependency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import nacl.signing
import nkeys
import orjson

_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"ed25519-nkey"}').rstrip(b"=").decode()

PREFIXES = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}


class NatsJwtError(ValueError):
    """A NATS JWT that does not parse or whose signature does not verify."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_seed(kind: str) -> str:
    """A fresh nkey seed (`SO...`, `SA...`, `SU...`) for an operator, account or user."""
    seed: bytes = nkeys.encode_seed(os.urandom(32), PREFIXES[kind])
    return seed.decode()


def keypair(seed: str) -> nkeys.KeyPair:
    """The key pair of a seed."""
    return nkeys.from_seed(seed.encode())


def public_key(seed: str) -> str:
    """The public key (`O...`, `A...`, `U...`) of a seed."""
    key: bytes = keypair(seed).public_key
    return key.decode()


def verify_key(public: str) -> nacl.signing.VerifyKey:
    """The Ed25519 verify key of an nkey public key; NatsJwtError if it is not one."""
    try:
        raw = base64.b32decode(public + "=" * (-len(public) % 8))
    except (ValueError, TypeError) as exc:
        raise NatsJwtError(f"not an nkey public key: {public!r}") from exc
    if len(raw) != 35 or not nkeys.valid_public_prefix_byte(raw[0]):
        raise NatsJwtError(f"not an nkey public key: {public!r}")
    if bytes(nkeys.crc16_checksum(raw[:-2])) != raw[-2:]:
        raise NatsJwtError(f"bad checksum in nkey public key: {public!r}")
    return nacl.signing.VerifyKey(raw[1:33])


def is_public_key(public: str, prefix: str) -> bool:
    """Whether `public` is a valid nkey public key starting with `prefix` (e.g. "U")."""
    try:
        verify_key(public)
    except NatsJwtError:
        return False
    return public.startswith(prefix)


def encode(claims: Mapping[str, Any], signer: nkeys.KeyPair, *, iat: int | None = None) -> str:
    """Sign `claims` as a NATS JWT; sets `iss`, `iat` and `jti` like the Go library."""
    body: dict[str, Any] = dict(claims)
    body["iss"] = signer.public_key.decode()
    body["iat"] = int(time.time()) if iat is None else iat
    body.pop("jti", None)
    digest = hashlib.new("sha512_256", orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    payload = _b64(orjson.dumps(body))
    signing_input = f"{_HEADER}.{payload}"
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode()))}"


def decode(token: str, *, verify: bool = True) -> dict[str, Any]:
    """The claims of a NATS JWT; verifies the signature against `iss` unless told not to."""
    try:
        head, payload, sig = token.split(".")
        claims: dict[str, Any] = json.loads(_unb64(payload))
        if verify:
            verify_key(claims["iss"]).verify(f"{head}.{payload}".encode(), _unb64(sig))
    except Exception as exc:
        raise NatsJwtError(f"invalid NATS JWT: {exc}") from exc
    return claims


def parse_creds(text: str) -> tuple[str, str]:
    """(jwt, seed) from `.creds` text."""
    blocks = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(("-", "*", "NKEY", "NKEYs"))
    ]
    jwt_text = next(b for b in blocks if b.startswith("eyJ"))
    seed = next(b for b in blocks if b.startswith("SU"))
    return jwt_text, seed
