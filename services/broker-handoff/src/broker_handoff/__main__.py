"""`python -m broker_handoff` runs the service; `python -m broker_handoff init-vault` provisions."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from broker_handoff.settings import Settings


class RedactQuery(logging.Filter):
    """Drops the query string of browser-flow URLs from uvicorn's access log.

    `callback?code=...&state=...` and `consent?link=...` carry one-time secrets; the path and
    status stay, so the log still shows what happened.
    """

    SENSITIVE = ("/v1/broker/alpaca/callback", "/v1/broker/alpaca/consent")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _query = args[2].partition("?")
            if sep and path in self.SENSITIVE:
                record.args = (*args[:2], f"{path}?[redacted]", *args[3:])
        return True


def _serve(settings: Settings) -> int:
    import uvicorn

    from broker_handoff.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port, log_level="info")
    # uvicorn configures its loggers when the Config is built; the filter goes on after that.
    logging.getLogger("uvicorn.access").addFilter(RedactQuery())
    uvicorn.Server(config).run()
    return 0


def _init_vault(settings: Settings, args: argparse.Namespace) -> int:
    import hvac

    from broker_handoff.adapters.vault_admin import init_vault

    token = os.environ.get("VAULT_TOKEN") or (
        settings.vault.token.get_secret_value() if settings.vault.token else None
    )
    if not token:
        print("init-vault needs an operator token: VAULT_TOKEN or BH_VAULT__TOKEN", file=sys.stderr)
        return 2
    client = hvac.Client(url=os.environ.get("VAULT_ADDR") or settings.vault.addr, token=token)
    client_secret = sys.stdin.readline().strip() if args.oauth_client_secret_stdin else None
    result = init_vault(
        client,
        settings.vault,
        new_secret_id=args.secret_id,
        oauth_client_secret=client_secret,
        rotate_admin_token=args.rotate_admin_token,
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


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="broker_handoff", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service (the default)")
    iv = sub.add_parser(
        "init-vault",
        help="create/refresh the broker-handoff policy and AppRole (idempotent)",
    )
    iv.add_argument("--secret-id", action="store_true", help="also issue and print a secret_id")
    iv.add_argument(
        "--oauth-client-secret-stdin",
        action="store_true",
        help="read the Alpaca OAuth client secret from stdin and store it in Vault",
    )
    iv.add_argument(
        "--rotate-admin-token",
        action="store_true",
        help="issue a new admin token (printed once; only its hash is stored)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if args.command == "init-vault":
        return _init_vault(settings, args)
    return _serve(settings)


if __name__ == "__main__":
    sys.exit(main())
