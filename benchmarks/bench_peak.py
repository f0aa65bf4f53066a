"""The float32 matmul peak of this machine, the denominator of every '% peak' figure.

A jitted ``jnp.dot`` of two ``--size`` x ``--size`` float32 matrices (4096 by default: large
enough that the matmul is compute-bound on a CPU), called ``--calls`` times after one
compiling call; each call's rate is ``2 n^3 / seconds``. The best call is the peak (load can
only slow a call down), the median is the typical rate. Runs inside ``_common.Contention``.
``_common.CPU_PEAK_GFLOPS`` holds the CPU's figure; rerun this after a change of machine and
update it.

Example::

    python benchmarks/bench_peak.py --out benchmarks/results/peak.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "peak.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.normal(size=(args.size, args.size)), jnp.float32) for _ in "ab")
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    flops = 2.0 * args.size**3
    with _common.Contention() as guard:
        rates = []
        for _ in range(args.calls):
            start = time.perf_counter()
            dot(a, b).block_until_ready()
            rates.append(flops / (time.perf_counter() - start) / 1e9)
    result = {
        "benchmark": "peak",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "git": _common.git_revision(),
        "command": _common.command_line("bench_peak.py", argv),
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
        "size": args.size,
        "calls": args.calls,
        "best_gflops": max(rates),
        "median_gflops": statistics.median(rates),
        "gflops_per_call": rates,
        "in_use": _common.CPU_PEAK_GFLOPS,
        "contention": guard.record(),
        "contaminated": guard.contaminated,
    }
    _common.write_json(args.out, result)
    print(f"best {max(rates):.0f} GFLOP/s, median {statistics.median(rates):.0f} GFLOP/s")
    return result


if __name__ == "__main__":
    main()
