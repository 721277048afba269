"""`python -m tier_gate` [run | init | dev-identity]: the service and its admin commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import httpx
from raxx_contracts import default_policy
from raxx_service_kit.cli import Command, run_cli

from tier_gate.errors import ConfigError
from tier_gate.settings import Settings


def _init_arguments(init: argparse.ArgumentParser) -> None:
    init.add_argument("--dev", action="store_true", help="also write creds files + dev keys")
    init.add_argument("--out", type=Path, default=Path(".run/nats"), help="output directory")
    init.add_argument("--nats-listen", default="127.0.0.1:14222", help="server listen host:port")
    init.add_argument("--js-dir", type=Path, default=None, help="JetStream store (<out>/js)")
    init.add_argument(
        "--config", type=Path, default=None, help="server config path (<out>/nats-server.conf)"
    )


def _dev_identity_arguments(dev: argparse.ArgumentParser) -> None:
    dev.add_argument("--user", required=True)
    dev.add_argument("--tier", required=True, choices=default_policy().tier_order)


def _dev(args_dev: bool) -> bool:
    return args_dev or os.environ.get("TG_ENV", "") == "dev"


async def _init(settings: Settings, args: argparse.Namespace) -> int:
    from tier_gate.adapters.postgres import Database
    from tier_gate.adapters.vault import Vault
    from tier_gate.bootstrap import InitOptions, run_init

    dev = _dev(args.dev)
    opts = InitOptions(
        dev=dev, out=args.out, nats_listen=args.nats_listen, js_dir=args.js_dir,
        config_path=args.config,
    )  # fmt: skip
    result = await run_init(Vault(settings.vault), default_policy(), opts)
    db = Database(settings.database_url, max_size=1)
    await db.open()  # applies migrations
    await db.close()
    print(f"nats-server config: {result.config_path}")
    print(f"operator {result.operator}  MD account {result.md_account}  SYS {result.sys_account}")
    for name, path in result.creds.items():
        print(f"creds {name}: {path}")
    return 0


async def _dev_identity(settings: Settings, user: str, tier: str) -> int:
    if os.environ.get("TG_ENV", "dev") != "dev":
        print("dev-identity exists only in dev (TG_ENV=dev)", file=sys.stderr)
        return 2
    port = settings.dev_http_port or settings.http_port
    url = f"http://{settings.http_host}:{port}/dev/identity"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.post(url, json={"user": user, "tier": tier})
        if resp.status_code == 200:
            print(resp.json()["token"])
            return 0
        print(f"tier-gate refused: {resp.status_code} {resp.text}", file=sys.stderr)
        return 1
    except httpx.ConnectError:
        pass  # tier-gate is not running: record the tier directly, as billing would
    return await _dev_identity_offline(settings, user, tier)


async def _dev_identity_offline(settings: Settings, user: str, tier: str) -> int:
    from tier_gate import identity, keys
    from tier_gate.adapters.postgres import Database
    from tier_gate.adapters.vault import Vault

    vault = Vault(settings.vault)
    key = keys.okp_from_secret(await vault.read(keys.PATH_DEV_IDENTITY), keys.PATH_DEV_IDENTITY)
    db = Database(settings.database_url, max_size=1)
    await db.open()
    try:
        await db.apply_tier(
            user, tier, None, revoke_for=lambda _o, _n: (), default_tier="free", now=0
        )
    finally:
        await db.close()
    print(
        identity.dev_identity_token(
            key, user_id=user, tier=tier, issuer=settings.identity_issuer,
            audience=settings.identity_audience,
        )
    )  # fmt: skip
    return 0


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from raxx_service_kit.serve import serve

    from tier_gate.app import create_app

    dev_port = settings.dev_http_port if settings.env == "dev" else None
    if settings.env == "dev" and dev_port is None and settings.http_host not in LOOPBACK:
        raise ConfigError(
            f"TG_ENV=dev with TG_HTTP_HOST={settings.http_host}: the dev identity routes would "
            "share the public API's listener; set TG_DEV_HTTP_PORT (a listener of their own)"
        )
    if dev_port is not None and dev_port == settings.http_port:
        raise ConfigError("TG_DEV_HTTP_PORT must differ from TG_HTTP_PORT")
    # The same app on a second socket; dev routes answer only there.
    return serve(create_app(settings), settings, extra_ports=(dev_port,) if dev_port else ())


def _settings(args: argparse.Namespace) -> Settings:
    """`dev-identity` and `init --dev` (or TG_ENV=dev) run with dev settings."""
    if args.cmd == "dev-identity" or (args.cmd == "init" and _dev(args.dev)):
        return Settings(env="dev")
    return Settings()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (the kit's exit codes: 78 for a configuration it cannot run with)."""
    return run_cli(
        "tier-gate", __doc__, argv,
        settings=_settings,
        commands=[
            Command("run", "run the HTTP service (default)", _run),
            Command(
                "init",
                "create/reuse NATS operator, accounts, scoped keys, service users; write config",
                lambda settings, args: asyncio.run(_init(settings, args)), _init_arguments,
            ),
            Command(
                "dev-identity", "dev only: record a tier, print an identity JWT",
                lambda settings, args: asyncio.run(_dev_identity(settings, args.user, args.tier)),
                _dev_identity_arguments,
            ),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
