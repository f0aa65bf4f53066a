"""Checkerboard heat-bath sweeps of the 2-D Ising model: our kernel against a bare JAX loop.

Both sides run the same physics on one periodic L x L lattice at beta_c, ``sweeps`` sweeps
inside one jitted ``lax.fori_loop`` whose trip count is an argument (one compiled program per
side and size, whatever the number of sweeps):

* ``ours``: ``numpyro_ebm.kernels.checkerboard`` on ``numpyro_ebm.models.ising.Ising``: each half
  sweep takes its local fields from the gradient of the log density (value and gradient, as
  the kernel caches both);
* ``bare``: a hand-written red-black loop, the neighbour sum by four ``jnp.roll`` and a heat-bath
  draw on the sublattice, nothing else (the loop of NVIDIA's ising-gpu examples, in JAX).

Timing, per size: one compiling call per side (its wall is ``compile_s``), then calibration
calls that grow the number of sweeps until a call of the faster side lasts at least
``--min-call-s`` (default 0.5 s; or ``--sweeps`` fixed), then ``--repeats``
pairs of timed calls, which side runs first alternating from pair to pair. Each call records
its wall-clock and process CPU time (``block_until_ready`` inside the timer). Spin flips
("site updates") per second = L^2 x sweeps / seconds. Reported per side: the median over the
repeats and its range; the ratio ours / bare, in wall and in CPU time, as the median over the
pairs of the pair's ratio (the two calls of a pair ran back to back; the ratio of the sides'
medians is kept beside it), with the range of the ratio over the pairs, called within noise
when that range contains 1, and the pairs' quartiles (the middle half of the pairs: this
machine's speed jumps by up to 2x for seconds at a time, which a single pair may catch).

Each size runs inside ``_common.Contention``: it waits for a quiet machine (others below
``--max-foreign`` cores), then records the wall and CPU time of the whole measurement, the CPU
others used meanwhile and the load averages at both ends. A contaminated size is measured again
(up to ``--attempts`` times); every attempt is kept in the file, and a size whose last attempt
is still contaminated is marked so. ``--gpu`` switches to the GPU size list (1024, 4096, 16384)
and also reports flips per nanosecond.

Example (the run behind ``results/ising.json``)::

    python benchmarks/bench_ising.py --sizes 256 1024 --repeats 15
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import _common
import jax
import jax.numpy as jnp

from numpyro_ebm.kernels import checkerboard
from numpyro_ebm.models.ising import Ising, critical_beta, sublattice_masks

CPU_SIZES = (256, 1024)
GPU_SIZES = (1024, 4096, 16384)
PILOT_SWEEPS = 4


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument(
        "--sweeps", type=int, default=None, help="fixed sweeps per call (default: calibrated)"
    )
    parser.add_argument(
        "--min-call-s", type=float, default=0.5, help="shortest timed call when calibrating"
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed pairs of calls per size")
    parser.add_argument("--attempts", type=int, default=2, help="tries per size under load")
    parser.add_argument("--max-foreign", type=float, default=0.3, help="cores others may use")
    parser.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for quiet")
    parser.add_argument("--gpu", action="store_true", help="the GPU size list, flips/ns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "ising.json")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(GPU_SIZES if args.gpu else CPU_SIZES)
    return args


def ours(model: Ising):
    algorithm = checkerboard.as_top_level_api(model)

    def run(key, spins, num_sweeps):
        def sweep(i, state):
            return algorithm.step(jax.random.fold_in(key, i), state)[0]

        return jax.lax.fori_loop(0, num_sweeps, sweep, algorithm.init(spins)).position

    return jax.jit(run)


def bare(model: Ising):
    masks = sublattice_masks(model.shape)
    beta, coupling = model.beta, model.J

    def run(key, spins, num_sweeps):
        def sweep(i, s):
            keys = jax.random.split(jax.random.fold_in(key, i))
            for mask, half_key in zip(masks, keys, strict=True):
                field = coupling * (
                    jnp.roll(s, 1, 0) + jnp.roll(s, -1, 0) + jnp.roll(s, 1, 1) + jnp.roll(s, -1, 1)
                )
                up = jax.random.uniform(half_key, s.shape) < jax.nn.sigmoid(2 * beta * field)
                s = jnp.where(mask, jnp.where(up, 1.0, -1.0), s)
            return s

        return jax.lax.fori_loop(0, num_sweeps, sweep, spins)

    return jax.jit(run)


def timed(function) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call (synced inside the timer)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    jax.block_until_ready(function())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_size(size: int, args) -> dict:
    model = Ising(size, beta=critical_beta())
    key = jax.random.key(args.seed)
    spins = 2.0 * jax.random.bernoulli(key, 0.5, model.shape) - 1.0
    sides = {"ours": ours(model), "bare": bare(model)}
    compile_s = {
        name: timed(lambda f=f: f(key, spins, PILOT_SWEEPS))[0] for name, f in sides.items()
    }
    if args.sweeps:
        sweeps, calibration = args.sweeps, None
    else:  # grow the sweeps until a call of the faster side lasts min_call_s (compiled calls)
        sweeps, calibration = PILOT_SWEEPS, []
        while True:
            fastest = min(timed(lambda f=f, n=sweeps: f(key, spins, n))[0] for f in sides.values())
            calibration.append([sweeps, fastest])
            if fastest >= args.min_call_s:
                break
            sweeps = math.ceil(sweeps * max(1.5, min(100.0, 1.2 * args.min_call_s / fastest)))
    walls = {name: [] for name in sides}
    cpus = {name: [] for name in sides}
    order = []
    for r in range(args.repeats):
        names = list(sides) if r % 2 == 0 else list(sides)[::-1]
        order.append(names[0])
        for name in names:
            k = jax.random.fold_in(key, r + 1)
            wall, cpu = timed(lambda f=sides[name], k=k: f(k, spins, sweeps))
            walls[name].append(wall)
            cpus[name].append(cpu)
    flips = size * size * sweeps
    out = {
        "L": size,
        "sweeps": sweeps,
        "compile_s": compile_s,
        "calibration_sweeps_fastest_s": calibration,
        "first_in_pair": order,
    }
    for name in sides:
        rates = [flips / w for w in walls[name]]
        cpu_rates = [flips / c for c in cpus[name]]
        out[name] = {
            "wall_s": walls[name],
            "cpu_s": cpus[name],
            "flips_per_s": spread(rates),
            "flips_per_cpu_s": spread(cpu_rates),
            "flips_per_ns": statistics.median(rates) / 1e9,
        }
    for clock, field in (("wall", "wall_s"), ("cpu", "cpu_s")):
        pairs = [b / o for o, b in zip(out["ours"][field], out["bare"][field], strict=True)]
        lo, hi = min(pairs), max(pairs)
        quartiles = (
            statistics.quantiles(pairs, n=4, method="inclusive") if len(pairs) > 1 else pairs * 3
        )
        out[f"ratio_ours_over_bare_{clock}"] = {
            "ratio": statistics.median(pairs),
            "ratio_of_medians": statistics.median(out["bare"][field])
            / statistics.median(out["ours"][field]),
            "pairs": pairs,
            "pairs_min": lo,
            "pairs_q1": quartiles[0],
            "pairs_q3": quartiles[2],
            "pairs_max": hi,
            "verdict": "within noise"
            if lo <= 1.0 <= hi
            else ("ours faster" if lo > 1.0 else "ours slower"),
        }
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    command = "python benchmarks/bench_ising.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = []
    for size in args.sizes:
        tries = []
        for attempt in range(1, args.attempts + 1):
            with _common.Contention(args.max_foreign, args.max_wait) as guard:
                row = bench_size(size, args)
            row["contention"] = guard.record()
            row["attempt"] = attempt
            tries.append(row)
            print(
                f"L={size} attempt {attempt}: {row['sweeps']} sweeps, "
                f"{json.dumps(row['contention'])}",
                flush=True,
            )
            if not guard.contaminated:
                break
        row = dict(tries[-1])
        row["earlier_attempts"] = tries[:-1]
        results.append(row)
    result = {
        "benchmark": "ising_checkerboard",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "git": _common.git_revision(),
        "command": command.strip(),
        "beta": critical_beta(),
        "repeats": args.repeats,
        "min_call_s": None if args.sweeps else args.min_call_s,
        "contaminated": any(r["contention"]["contaminated"] for r in results),
        "results": results,
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
    }
    _common.write_json(args.out, result)
    for row in results:
        o, b = row["ours"], row["bare"]
        w, c = row["ratio_ours_over_bare_wall"], row["ratio_ours_over_bare_cpu"]
        print(
            f"L={row['L']} ({row['sweeps']} sweeps, "
            f"{'CONTAMINATED' if row['contention']['contaminated'] else 'clean'}): "
            f"ours {o['flips_per_s']['median']:.3g} flips/s "
            f"[{o['flips_per_s']['min']:.3g}-{o['flips_per_s']['max']:.3g}], bare "
            f"{b['flips_per_s']['median']:.3g} [{b['flips_per_s']['min']:.3g}-"
            f"{b['flips_per_s']['max']:.3g}]; ours/bare (median pair) wall {w['ratio']:.2f} "
            f"(middle half {w['pairs_q1']:.2f}-{w['pairs_q3']:.2f}, all "
            f"{w['pairs_min']:.2f}-{w['pairs_max']:.2f}: {w['verdict']}), CPU {c['ratio']:.2f} "
            f"(middle half {c['pairs_q1']:.2f}-{c['pairs_q3']:.2f}, all "
            f"{c['pairs_min']:.2f}-{c['pairs_max']:.2f}: {c['verdict']})",
            flush=True,
        )
    return result


if __name__ == "__main__":
    main()
