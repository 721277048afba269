"""`python -m broker_handoff` runs the service; `python -m broker_handoff init-vault` provisions."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from raxx_service_kit.cli import Command, run_cli
from raxx_service_kit.serve import serve

from broker_handoff.settings import Settings


def _serve(settings: Settings) -> int:
    from broker_handoff.app import create_app

    # The kit's serve runs uvicorn without an access log, so the one-time secrets in
    # `callback?code=...&state=...` and `consent?link=...` never reach a log line.
    return serve(create_app(settings), settings)


def _init_vault(settings: Settings, args: argparse.Namespace) -> int:
    from broker_handoff.adapters.vault_admin import init_vault

    token = os.environ.get("VAULT_TOKEN") or (
        settings.vault.token.get_secret_value() if settings.vault.token else None
    )
    if not token:
        print("init-vault needs an operator token: VAULT_TOKEN or BH_VAULT__TOKEN", file=sys.stderr)
        return 2
    client_secret = sys.stdin.readline().strip() if args.oauth_client_secret_stdin else None
    result = asyncio.run(
        init_vault(
            settings.vault,
            token,
            addr=os.environ.get("VAULT_ADDR") or None,
            new_secret_id=args.secret_id,
            oauth_client_secret=client_secret,
            rotate_admin_token=args.rotate_admin_token,
        )
    )
    print(f"policy={result.policy}")
    print(f"role_id={result.role_id}")
    if result.secret_id:
        print(f"secret_id={result.secret_id}")
    if result.oauth_client_secret_written:
        print("oauth_client_secret=written")
    if result.admin_token:
        print(f"admin_token={result.admin_token}")
    return 0


def _init_vault_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-id", action="store_true", help="also issue and print a secret_id")
    parser.add_argument(
        "--oauth-client-secret-stdin",
        action="store_true",
        help="read the Alpaca OAuth client secret from stdin and store it in Vault",
    )
    parser.add_argument(
        "--rotate-admin-token",
        action="store_true",
        help="issue a new admin token (printed once; only its hash is stored)",
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (the kit's exit codes: 78 bad settings)."""
    return run_cli(
        "broker-handoff", __doc__, argv,
        settings=lambda _args: Settings(),
        commands=[
            Command("serve", "run the HTTP service (the default)", lambda s, _a: _serve(s)),
            Command(
                "init-vault", "create/refresh the broker-handoff policy and AppRole (idempotent)",
                _init_vault, _init_vault_arguments,
            ),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
