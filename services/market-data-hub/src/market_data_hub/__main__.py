"""`python -m market_data_hub` runs the hub (HTTP + NATS); `check` validates the settings."""

from __future__ import annotations

import argparse
import sys

from raxx_service_kit.serve import serve

from market_data_hub.app import create_app
from market_data_hub.settings import Settings


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="market_data_hub", description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("run", help="run the hub (default)")
    sub.add_parser("check", help="print the effective settings (secrets hidden) and exit")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.cmd == "check":
        print(settings.model_dump_json(indent=2))
        return 0
    return serve(create_app(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
