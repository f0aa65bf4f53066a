#!/usr/bin/env python3
"""Scaling of a Langevin sampler: time per step and peak memory vs chains and vs dimension.

The sampler is the ULA kernel ``numpyro_ebm.kernels.ula`` (BlackJAX form) vmapped over
chains inside a ``lax.scan`` of steps, one key per chain, in one ``jax.jit``: the peer
benchmark's Langevin task (``peer_bench.py`` (a)), returning only the final state, so memory is
the sampler's, not stored draws'. The energy is the peers' float32 MLP,
``numpyro_ebm.MLPEnergy((dim,), hidden=(128, 128))`` through ``numpyro_ebm.as_pure``; step size
eps = 0.02.

Two sweeps: chains in {1, 10, 100, 1000, 10_000, 100_000} at dim 2, and dims in
{2, 16, 64, 256, 1024} at 1024 chains. Each point runs in a fresh subprocess (this script with
``--point CHAINS,DIM``), so its peak memory is its own: ``peak_rss_mib`` is the process's
high-water resident memory (``VmHWM``) after compiling and timing, ``baseline_rss_mib`` the
same after importing JAX and running one tiny jitted op, and ``extra_rss_mib`` their
difference; on a GPU, ``device_peak_mib`` is the device allocator's ``peak_bytes_in_use``.

Timing: one compiled call runs ``chunk`` steps (chosen so that a call does about
``--chunk-chain-steps`` chain-steps at dim 2, scaled down by the MLP's cost at larger dims);
after the compiling call, calls are repeated until ``--min-time`` seconds and at least 3 calls;
``s_per_step`` is the median call time / chunk (all chains), ``chain_steps_per_s`` = chains /
``s_per_step``; ``cpu_s_per_step`` and ``chain_steps_per_cpu_s`` the same from the process's
CPU time per call (``time.process_time``, all threads). ``pct_peak`` is the achieved matmul
rate, 2 * 2 * (d h + h^2 + h) FLOPs per chain-step (forward and input-gradient of the MLP),
over the f32 matmul peak (``_common.CPU_PEAK_GFLOPS``, 420 GFLOP/s measured on the 2-core CPU
on 2026-12-06; see ``_common.peak_gflops``).

Each point's process runs inside ``_common.Contention`` (in this parent: it waits for a quiet
machine, records wall and CPU time, others' cores and the load averages, and marks a point
measured while others used more than ``--max-foreign`` cores ``contaminated``); the whole
sweep has a record too.

Writes ``--out`` (``benchmarks/results/scaling.json``) and ``--png``
(``docs/figures/benchmarks/scaling.png``); prints the JSON as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common

CHAINS = (1, 10, 100, 1000, 10_000, 100_000)
DIMS = (2, 16, 64, 256, 1024)
HIDDEN = 128
STEP_SIZE = 0.02  # eps of x + (eps/2) grad log p + sqrt(eps) z (the peers' 2 * 0.01)


def matmul_flops(dim: int, hidden: int = HIDDEN) -> float:
    """Matmul FLOPs of one chain-step: forward and input-gradient of the MLP."""
    return 2.0 * 2.0 * (dim * hidden + hidden * hidden + hidden)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chains", default=",".join(map(str, CHAINS)), help="chain counts at dim 2")
    p.add_argument("--dims", default=",".join(map(str, DIMS)), help="dims at --dim-chains chains")
    p.add_argument("--dim-chains", type=int, default=1024)
    p.add_argument("--min-time", type=float, default=2.0, help="timed seconds per point")
    p.add_argument(
        "--chunk-chain-steps",
        type=float,
        default=3e5,
        help="chain-steps per compiled call at dim 2 (scaled by the MLP cost at other dims)",
    )
    p.add_argument("--max-chunk", type=int, default=2000, help="most steps per compiled call")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-foreign", type=float, default=0.3, help="cores others may use")
    p.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait (per point)")
    p.add_argument("--peak-gflops", type=float, default=_common.CPU_PEAK_GFLOPS, help="CPU peak")
    p.add_argument("--out", default=str(_common.RESULTS / "scaling.json"))
    p.add_argument(
        "--png", default=str(_common.ROOT / "docs" / "figures" / "benchmarks" / "scaling.png")
    )
    p.add_argument("--no-png", action="store_true")
    p.add_argument("--point", default=None, help=argparse.SUPPRESS)  # CHAINS,DIM: one point
    return p.parse_args(argv)


def chunk_steps(chains: int, dim: int, args) -> int:
    steps = args.chunk_chain_steps * matmul_flops(2) / (matmul_flops(dim) * chains)
    return int(min(args.max_chunk, max(5, round(steps))))


def run_point(chains: int, dim: int, args) -> dict:
    """One configuration, in this (fresh) process."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import numpyro_ebm as ne
    from numpyro_ebm.kernels import ula

    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.ones(4)))
    baseline = _common.peak_rss_mib()
    steps = chunk_steps(chains, dim, args)
    apply, params = ne.as_pure(
        ne.MLPEnergy((dim,), hidden=(HIDDEN, HIDDEN), rngs=nnx.Rngs(args.seed))
    )
    algorithm = ula.as_top_level_api(lambda x: -apply(params, x), step_size=STEP_SIZE)

    @jax.jit
    def run(x0, key):
        state = jax.vmap(algorithm.init)(x0)

        def one_step(state, step_key):
            state, _ = jax.vmap(algorithm.step)(jax.random.split(step_key, chains), state)
            return state, None

        state, _ = jax.lax.scan(one_step, state, jax.random.split(key, steps))
        return state.position

    key = jax.random.PRNGKey(args.seed)
    x0 = jax.random.normal(key, (chains, dim), jnp.float32)
    t0 = time.perf_counter()
    x = jax.block_until_ready(run(x0, jax.random.fold_in(key, 0)))
    first_call = time.perf_counter() - t0
    walls, cpus = [], []
    t_start = time.perf_counter()
    while len(walls) < 3 or time.perf_counter() - t_start < args.min_time:
        t0, c0 = time.perf_counter(), time.process_time()
        x = jax.block_until_ready(run(x, jax.random.fold_in(key, len(walls) + 1)))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    s_per_step = statistics.median(walls) / steps
    cpu_s_per_step = statistics.median(cpus) / steps
    device = _common.jax_device()
    peak, _ = _common.peak_gflops(device, args.peak_gflops)
    rate = chains / s_per_step
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    out = {
        "chains": chains,
        "dim": dim,
        "hidden": HIDDEN,
        "chunk_steps": steps,
        "calls": len(walls),
        "s_per_step": s_per_step,
        "s_per_step_range": [min(walls) / steps, max(walls) / steps],
        "chain_steps_per_s": rate,
        "cpu_s_per_step": cpu_s_per_step,
        "chain_steps_per_cpu_s": chains / cpu_s_per_step,
        "first_call_s": first_call,
        "matmul_gflops": rate * matmul_flops(dim) / 1e9,
        "pct_peak": 100 * rate * matmul_flops(dim) / (peak * 1e9) if peak else None,
        "peak_rss_mib": _common.peak_rss_mib(),
        "baseline_rss_mib": baseline,
        "state_mib": 3 * chains * dim * 4 / 2**20,  # position, gradient, next position
        "device_peak_mib": stats["peak_bytes_in_use"] / 2**20
        if stats and "peak_bytes_in_use" in stats
        else None,
        "finite": bool(jnp.all(jnp.isfinite(x))),
        "backend": device["backend"],
    }
    out["extra_rss_mib"] = out["peak_rss_mib"] - baseline
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dev = result["device"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    panels = (
        ("chains", result["vs_chains"], "chains (dim 2)"),
        ("dim", result["vs_dim"], f"dimension ({result['config']['dim_chains']} chains)"),
    )
    for ax, (key, points, xlabel) in zip(axes, panels, strict=True):
        points = [p for p in points if "error" not in p]
        if not points:
            ax.set_title(f"no data: {xlabel}")
            continue
        xs = [p[key] for p in points]
        ax.plot(xs, [p["chain_steps_per_s"] for p in points], "o-", color="C0")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("chain-steps / s", color="C0")
        for p in points:
            if p.get("pct_peak") is not None:
                ax.annotate(
                    f"{p['pct_peak']:.0f}%",
                    (p[key], p["chain_steps_per_s"]),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                    color="C0",
                )
        on_device = bool(points[0].get("device_peak_mib"))
        ax2 = ax.twinx()
        if on_device:
            ax2.plot(xs, [p["device_peak_mib"] for p in points], "s--", color="C3")
            ax2.set_ylabel("peak device memory, MiB", color="C3")
        else:
            ax2.plot(xs, [p["peak_rss_mib"] for p in points], "s--", color="C3", label="peak")
            ax2.plot(
                xs,
                [p["baseline_rss_mib"] for p in points],
                ":",
                color="0.5",
                label="after importing JAX",
            )
            ax2.set_ylabel("peak RSS of the process, MiB", color="C3")
            ax2.legend(loc="center right", fontsize=7)
        ax2.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"ULA on the peers' MLP energy (h 128): chain-steps/s (labels: % of the "
        f"{result['peak_label']}) and peak memory"
        f"\n{dev['device_kind']} ({dev['backend']}), {result['machine']['nproc']} cores, "
        f"{result['date']}",
        fontsize=9,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.point:
        chains, dim = (int(v) for v in args.point.split(","))
        print(json.dumps(run_point(chains, dim, args)))
        return 0

    chains_list = [int(c) for c in args.chains.split(",") if c]
    dims = [int(d) for d in args.dims.split(",") if d]
    probe = subprocess.run(
        [sys.executable, "-c", "import json, _common; print(json.dumps(_common.jax_device()))"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    device = json.loads(probe.stdout.strip().splitlines()[-1])
    peak, peak_label = _common.peak_gflops(device, args.peak_gflops)
    result = {
        "benchmark": "scaling",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "sampler": "numpyro_ebm.kernels.ula (ULA) vmapped over chains in lax.scan, jit",
        "config": {
            "hidden": HIDDEN,
            "step_size": STEP_SIZE,
            "dim_chains": args.dim_chains,
            "min_time_s": args.min_time,
            "chunk_chain_steps": args.chunk_chain_steps,
            "seed": args.seed,
            "flops_per_chain_step": "2 * 2 * (d h + h^2 + h)",
        },
        "peak_gflops": peak,
        "peak_label": peak_label,
        "machine": _common.machine_info(),
        "device": device,
        "versions": _common.local_versions(),
        "git": _common.git_revision(),
        "vs_chains": [],
        "vs_dim": [],
    }
    plan = [("vs_chains", c, 2) for c in chains_list] + [
        ("vs_dim", args.dim_chains, d) for d in dims
    ]
    cache = {}
    flags = [
        f"--min-time={args.min_time}",
        f"--chunk-chain-steps={args.chunk_chain_steps}",
        f"--max-chunk={args.max_chunk}",
        f"--seed={args.seed}",
        f"--peak-gflops={args.peak_gflops}",
    ]
    t_all = time.perf_counter()
    whole = _common.Contention(args.max_foreign, args.max_wait).__enter__()
    for sweep, chains, dim in plan:
        if (chains, dim) not in cache:  # (1024, 2) is on both sweeps: run it once
            cmd = [sys.executable, __file__, "--point", f"{chains},{dim}", *flags]
            with _common.Contention(args.max_foreign, args.max_wait) as guard:
                t0 = time.perf_counter()
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    lines = p.stdout.strip().splitlines()
                    point = (
                        json.loads(lines[-1])
                        if p.returncode == 0 and lines
                        else {"chains": chains, "dim": dim, "error": p.stderr[-600:]}
                    )
                except subprocess.TimeoutExpired:
                    point = {"chains": chains, "dim": dim, "error": f"timeout {args.timeout}s"}
                point["process_wall_s"] = time.perf_counter() - t0
            point["contention"] = guard.record()
            cache[(chains, dim)] = point
            msg = (
                f"chains {chains:>6} dim {dim:>4}: "
                + (
                    f"{point['chain_steps_per_s']:.4g} chain-steps/s, "
                    f"{point['s_per_step'] * 1e3:.3g} ms/step, "
                    f"peak RSS {point['peak_rss_mib']:.0f} MiB"
                    + (f", {point['pct_peak']:.1f}% peak" if point.get("pct_peak") else "")
                    if "error" not in point
                    else "FAILED " + point["error"][-200:]
                )
                + f" ({point['process_wall_s']:.0f} s)"
            )
            print(msg, file=sys.stderr, flush=True)
        result[sweep].append(cache[(chains, dim)])
    whole.__exit__(None, None, None)
    result["total_s"] = time.perf_counter() - t_all
    result["command"] = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result["contention"] = whole.record()
    result["contaminated_points"] = [
        [p["chains"], p["dim"]]
        for p in cache.values()
        if (p.get("contention") or {}).get("contaminated")
    ]
    result["contaminated"] = whole.contaminated or bool(result["contaminated_points"])
    if not args.no_png:
        result["png"] = str(Path(args.png).resolve())
        plot(result, Path(args.png))
    _common.write_json(Path(args.out), result)
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
