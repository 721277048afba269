"""`python -m market_data_hub` runs the hub (HTTP + NATS); `check` validates the settings."""

from __future__ import annotations

import argparse
import sys

from raxx_service_kit.cli import Command, run_cli
from raxx_service_kit.serve import serve

from market_data_hub.settings import Settings


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from market_data_hub.app import create_app

    return serve(create_app(settings), settings)


def _check(settings: Settings, _args: argparse.Namespace) -> int:
    print(settings.model_dump_json(indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (the kit's exit codes: 78 bad settings)."""
    return run_cli(
        "market-data-hub", __doc__, argv,
        settings=lambda _args: Settings(),
        commands=[
            Command("run", "run the hub (default)", _run),
            Command("check", "print the effective settings (secrets hidden) and exit", _check),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
