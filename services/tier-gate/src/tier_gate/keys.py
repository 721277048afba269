"""Where tier-gate's key material lives in OpenBao, and loading what the service may hold.

Layout (KV v2, mount `secret`):

| path | holds | who reads it |
|---|---|---|
| `raxx/nats/operator` | operator identity seed | `init` only (an admin) |
| `raxx/nats/accounts` | SYS and MD account seeds (sign service users) | `init` only |
| `raxx/nats/services/<name>` | a service user's seed + JWT | that service (prod), `init` |
| `raxx/tier-gate/nats-signing` | operator signing seed, per-tier scoped seeds, MD pub | tier-gate |
| `raxx/tier-gate/http-token-key` | Ed25519 JWK signing HTTP tokens | tier-gate |
| `raxx/tier-gate/dev-identity` | Ed25519 JWK of the dev identity issuer (dev only) | tier-gate |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nkeys
from joserfc.jwk import OKPKey

from tier_gate import natsjwt
from tier_gate.adapters.vault import Vault
from tier_gate.errors import ConfigError

PATH_OPERATOR = "raxx/nats/operator"
PATH_ACCOUNTS = "raxx/nats/accounts"
PATH_SIGNING = "raxx/tier-gate/nats-signing"
PATH_HTTP_KEY = "raxx/tier-gate/http-token-key"
PATH_DEV_IDENTITY = "raxx/tier-gate/dev-identity"


def service_path(name: str) -> str:
    """OpenBao path of one service user's credential."""
    return f"raxx/nats/services/{name}"


@dataclass(frozen=True)
class SigningMaterial:
    """What tier-gate holds to mint user JWTs and push revocations (no service seeds)."""

    operator_signing: nkeys.KeyPair
    md_account: str
    tier_keys: dict[str, nkeys.KeyPair]

    def tier_public_keys(self) -> dict[str, str]:
        """tier -> scoped signing public key."""
        return {t: kp.public_key.decode() for t, kp in self.tier_keys.items()}


async def load_signing(vault: Vault, tiers: tuple[str, ...]) -> SigningMaterial:
    """Read tier-gate's signing material; ConfigError if `init` has not run."""
    data = await vault.read(PATH_SIGNING)
    if data is None:
        raise ConfigError(f"no {PATH_SIGNING} in OpenBao: run `python -m tier_gate init` first")
    seeds: dict[str, str] = data["tier_seeds"]
    missing = [t for t in tiers if t not in seeds]
    if missing:
        raise ConfigError(f"no scoped signing key for tiers {missing}: re-run init")
    return SigningMaterial(
        operator_signing=natsjwt.keypair(data["operator_signing_seed"]),
        md_account=data["md_account"],
        tier_keys={t: natsjwt.keypair(seeds[t]) for t in tiers},
    )


def okp_from_secret(data: dict[str, Any] | None, path: str) -> OKPKey:
    """An Ed25519 private key stored as a JWK dict under `jwk`."""
    if data is None:
        raise ConfigError(f"no {path} in OpenBao: run `python -m tier_gate init` first")
    key = OKPKey.import_key(data["jwk"])
    return key


def new_okp_secret() -> dict[str, Any]:
    """A fresh Ed25519 JWK (private) with its thumbprint as `kid`, ready to store."""
    key = OKPKey.generate_key("Ed25519", private=True)
    jwk = key.as_dict(private=True)
    jwk["kid"] = key.thumbprint()
    return {"jwk": jwk}


def public_jwks(key: OKPKey, alg: str = "EdDSA") -> dict[str, Any]:
    """A JWKS document publishing the public half of `key`."""
    jwk = key.as_dict(private=False)
    jwk.setdefault("kid", key.thumbprint())
    jwk.update({"alg": alg, "use": "sig"})
    return {"keys": [jwk]}
