"""Checkerboard heat-bath sweeps of the 2-D Ising model: our kernel against a bare JAX loop.

Both sides run the same physics on one periodic L x L lattice at beta_c, ``--sweeps`` sweeps
inside one jitted ``lax.fori_loop``:

* ``ours``: ``numpyro_ebm.kernels.checkerboard`` on ``numpyro_ebm.models.ising.Ising``: each half
  sweep takes its local fields from the gradient of the log density (value and gradient, as
  the kernel caches both);
* ``bare``: a hand-written red-black loop, the neighbour sum by four ``jnp.roll`` and a heat-bath
  draw on the sublattice, nothing else (the loop of NVIDIA's ising-gpu examples, in JAX).

Site updates ("spin flips") per second = L^2 x sweeps / seconds, the median of ``--repeats``
interleaved repeats after one compile call per side; the ratio ours / bare is taken within the
run. Wall-clock and process CPU times are both recorded (a shared machine slows both sides).
``--gpu`` switches to the GPU size list (1024, 4096, 16384) and also reports flips per
nanosecond.

Example::

    python benchmarks/bench_ising.py --sizes 256 1024 --sweeps 50 --repeats 3 \\
        --out benchmarks/results/ising.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import _common
import jax
import jax.numpy as jnp

from numpyro_ebm.kernels import checkerboard
from numpyro_ebm.models.ising import Ising, critical_beta, sublattice_masks

CPU_SIZES = (256, 1024)
GPU_SIZES = (1024, 4096, 16384)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--sweeps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="the GPU size list, flips/ns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "ising.json")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(GPU_SIZES if args.gpu else CPU_SIZES)
    return args


def ours(model: Ising, num_sweeps: int):
    algorithm = checkerboard.as_top_level_api(model)

    def run(key, spins):
        def sweep(i, state):
            return algorithm.step(jax.random.fold_in(key, i), state)[0]

        return jax.lax.fori_loop(0, num_sweeps, sweep, algorithm.init(spins)).position

    return jax.jit(run)


def bare(model: Ising, num_sweeps: int):
    masks = sublattice_masks(model.shape)
    beta, coupling = model.beta, model.J

    def run(key, spins):
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
    """Wall-clock and process CPU seconds of one call."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    jax.block_until_ready(function())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_size(size: int, num_sweeps: int, repeats: int, seed: int) -> dict:
    model = Ising(size, beta=critical_beta())
    key = jax.random.key(seed)
    spins = 2.0 * jax.random.bernoulli(key, 0.5, model.shape) - 1.0
    sides = {"ours": ours(model, num_sweeps), "bare": bare(model, num_sweeps)}
    compile_s = {name: timed(lambda f=f: f(key, spins))[0] for name, f in sides.items()}
    walls = {name: [] for name in sides}
    cpus = {name: [] for name in sides}
    for _ in range(repeats):
        for name, function in sides.items():
            wall, cpu = timed(lambda f=function: f(key, spins))
            walls[name].append(wall)
            cpus[name].append(cpu)
    flips = size * size * num_sweeps
    out = {"L": size, "sweeps": num_sweeps, "compile_s": compile_s}
    for name in sides:
        wall = statistics.median(walls[name])
        out[name] = {
            "wall_s": wall,
            "cpu_s": statistics.median(cpus[name]),
            "flips_per_s": flips / wall,
            "flips_per_ns": flips / wall / 1e9,
        }
    out["ratio_ours_over_bare"] = out["ours"]["flips_per_s"] / out["bare"]["flips_per_s"]
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    results = [bench_size(s, args.sweeps, args.repeats, args.seed) for s in args.sizes]
    result = {
        "benchmark": "ising_checkerboard",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "beta": critical_beta(),
        "repeats": args.repeats,
        "results": results,
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
        "git": _common.git_revision(),
    }
    _common.write_json(args.out, result)
    for row in results:
        print(
            f"L={row['L']}: ours {row['ours']['flips_per_s']:.3g} flips/s, bare "
            f"{row['bare']['flips_per_s']:.3g} flips/s, ratio {row['ratio_ours_over_bare']:.2f}",
            flush=True,
        )
    print(json.dumps(result, default=float))
    return result


if __name__ == "__main__":
    main()
