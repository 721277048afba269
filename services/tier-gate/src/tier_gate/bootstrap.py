"""`python -m tier_gate init`: operator, accounts, scoped keys, service users, server config.

Idempotent: every seed is created only when absent (OpenBao check-and-set), so a second run
reuses the keys and re-signs identical JWTs. Seeds never touch plain files except the dev
creds files written with `--dev` (mode 0600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from raxx_contracts import TierPolicy
from raxx_service_kit.nats import creds_text

from tier_gate import domain, keys, natsjwt
from tier_gate.adapters.vault import Vault


@dataclass(frozen=True)
class InitOptions:
    """What `init` writes and where."""

    dev: bool
    out: Path
    nats_listen: str = "127.0.0.1:14222"
    js_dir: Path | None = None
    config_path: Path | None = None
    server_name: str = "raxx-md"


@dataclass
class InitResult:
    """Paths written and public keys, for the CLI summary."""

    config_path: Path
    operator: str
    md_account: str
    sys_account: str
    creds: dict[str, Path] = field(default_factory=dict)


def _services(dev: bool) -> list[str]:
    names = [n for n in domain.SERVICE_PERMISSIONS if dev or n not in domain.DEV_ONLY_SERVICES]
    return [*names, domain.SYS_SERVICE]


async def _signing(vault: Vault, policy: TierPolicy, md_pub: str) -> keys.SigningMaterial:
    existing = await vault.read(keys.PATH_SIGNING)
    if existing is None:
        existing = await vault.ensure(
            keys.PATH_SIGNING,
            {
                "operator_signing_seed": natsjwt.new_seed("operator"),
                "md_account": md_pub,
                "tier_seeds": {t: natsjwt.new_seed("account") for t in policy.tier_order},
            },
        )
    missing = [t for t in policy.tier_order if t not in existing["tier_seeds"]]
    if missing or existing.get("md_account") != md_pub:
        seeds = dict(existing["tier_seeds"])
        seeds.update({t: natsjwt.new_seed("account") for t in missing})
        existing = {**existing, "tier_seeds": seeds, "md_account": md_pub}
        await vault.write(keys.PATH_SIGNING, existing)
    return await keys.load_signing(vault, policy.tier_order)


def server_config(
    opts: InitOptions, operator_jwt: str, sys_pub: str, preload: dict[str, str]
) -> str:
    """nats-server config: operator mode, MEMORY resolver with preload, JetStream on."""
    js_dir = opts.js_dir or (opts.out / "js")
    lines = [
        "# Written by `python -m tier_gate init`; re-running init rewrites it.",
        f"server_name: {opts.server_name}",
        f"listen: {opts.nats_listen}",
        f"operator: {operator_jwt}",
        f"system_account: {sys_pub}",
        "resolver: MEMORY",
        "resolver_preload: {",
        *(f"  {pub}: {jwt}" for pub, jwt in preload.items()),
        "}",
        "jetstream {",
        f'  store_dir: "{js_dir.resolve()}"',
        "  max_memory_store: 1GB",
        "  max_file_store: 10GB",
        # ingest queue of core publishes into a stream (the hub's capture): the defaults
        # (10,000 / 128 MB) drop a burst with no sequence; see raxx_devstack.servers
        "  max_buffered_msgs: 500000",
        "  max_buffered_size: 256MiB",
        "}",
        "",
    ]
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


async def run_init(vault: Vault, policy: TierPolicy, opts: InitOptions) -> InitResult:
    """Create (or reuse) every key, sign every JWT, write the server config (+ dev creds)."""
    op = await vault.ensure(keys.PATH_OPERATOR, {"seed": natsjwt.new_seed("operator")})
    accs = await vault.ensure(
        keys.PATH_ACCOUNTS,
        {"sys_seed": natsjwt.new_seed("account"), "md_seed": natsjwt.new_seed("account")},
    )
    op_kp = natsjwt.keypair(op["seed"])
    sys_kp, md_kp = natsjwt.keypair(accs["sys_seed"]), natsjwt.keypair(accs["md_seed"])
    sys_pub, md_pub = sys_kp.public_key.decode(), md_kp.public_key.decode()
    signing = await _signing(vault, policy, md_pub)
    signing_pub = signing.operator_signing.public_key.decode()

    operator_jwt = natsjwt.encode(
        domain.operator_claims(op_kp.public_key.decode(), signing_pub, sys_pub), op_kp
    )
    sys_jwt = natsjwt.encode(
        domain.account_claims("SYS", sys_pub, jetstream=False), signing.operator_signing
    )
    md_jwt = natsjwt.encode(
        domain.account_claims(
            "MD", md_pub, jetstream=True, scoped_keys=signing.tier_public_keys(), policy=policy
        ),
        signing.operator_signing,
    )

    result = InitResult(
        config_path=opts.config_path or opts.out / "nats-server.conf",
        operator=op_kp.public_key.decode(),
        md_account=md_pub,
        sys_account=sys_pub,
    )
    for name in _services(opts.dev):
        stored = await vault.ensure(keys.service_path(name), {"seed": natsjwt.new_seed("user")})
        seed = stored["seed"]
        is_sys = name == domain.SYS_SERVICE
        perms = domain.SYS_PERMISSIONS if is_sys else domain.service_permissions(name, opts.dev)
        jwt = natsjwt.encode(
            domain.service_user_claims(name, natsjwt.public_key(seed), perms),
            sys_kp if is_sys else md_kp,
        )
        await vault.write(
            keys.service_path(name),
            {"seed": seed, "jwt": jwt, "account": "SYS" if is_sys else "MD"},
        )
        if opts.dev:
            path = opts.out / f"{name}.creds"
            _write_private(path, creds_text(jwt, seed))
            result.creds[name] = path

    await vault.ensure(keys.PATH_HTTP_KEY, keys.new_okp_secret())
    if opts.dev:
        await vault.ensure(keys.PATH_DEV_IDENTITY, keys.new_okp_secret())

    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.js_dir or opts.out / "js").mkdir(parents=True, exist_ok=True)
    config = server_config(opts, operator_jwt, sys_pub, {sys_pub: sys_jwt, md_pub: md_jwt})
    _write_private(result.config_path, config)
    return result
