"""`python -m market_data_hub` runs the hub (HTTP + NATS); `check` validates the settings."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

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
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    loop = "auto"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        pass
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop=loop,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
