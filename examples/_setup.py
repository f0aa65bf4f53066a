"""What every example does first: cheap compilation for smoke runs, the Agg canvas, and the
shared command line.

Import this module before JAX and pyplot (``import _setup`` once this folder is on
``sys.path``). A smoke run (``--smoke``) is mostly XLA compilation of programs that then run
for milliseconds, so importing this module asks XLA for cheap code generation; XLA reads
``XLA_FLAGS`` once, when JAX starts its CPU backend (importing numpyro_ebm does), which is why
this happens on import.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

if "--smoke" in sys.argv[1:]:
    os.environ["XLA_FLAGS"] = " ".join(
        [
            os.environ.get("XLA_FLAGS", ""),
            "--xla_backend_optimization_level=0",
            "--xla_llvm_disable_expensive_passes=true",
        ]
    ).strip()

matplotlib.use("Agg")  # figures go to files, never to a screen


def parse_args(name: str, doc: str, argv=None, add_arguments=None) -> argparse.Namespace:
    """``--smoke``, ``--out`` (default ``examples/output/<name>``, created) and ``--seed``;
    ``add_arguments(parser)`` adds an example's own options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs in seconds")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "output" / name,
        help="directory for the figures and metrics.json (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
