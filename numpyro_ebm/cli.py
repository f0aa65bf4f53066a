"""The ``numpyro-ebm`` command."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

__all__ = ["main"]

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def _demo(args: argparse.Namespace) -> int:
    print(
        "numpyro-ebm demo: the full demo (train a noise-conditional energy, sample it with "
        "several samplers, diagnose and compare) is not yet available. Running the quick "
        "start instead: one energy used as a NumPyro potential, a prior and a BlackJAX target."
    )
    if not QUICKSTART.exists():
        print(f"error: {QUICKSTART} not found (run from a source checkout)", file=sys.stderr)
        return 1
    runpy.run_path(str(QUICKSTART), run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="numpyro-ebm", description="Energy-based models in NumPyro, BlackJAX and optax."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end demo on embedded data")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
