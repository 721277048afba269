"""`python -m raxx_devstack run`: what `make run` calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raxx_devstack.stack import run


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="raxx-devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start the whole system; Ctrl-C stops it")
    run_p.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    return run(args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
