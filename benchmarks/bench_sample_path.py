#!/usr/bin/env python3
"""The sample path against the same kernel in a hand-written loop, side by side in one run.

For each sampler (ULA, MALA, HMC, annealed Langevin), on the peers' MLP energy
E(x) = Linear(dim, h)-SiLU-Linear(h, h)-SiLU-Linear(h, 1) (``numpyro_ebm.MLPEnergy``):

* **hand-written**: ``jax.jit`` of a ``lax.scan`` over steps of ``vmap(kernel.step)`` (one key
  per chain, split from the step's key), keeping every draw, copied to the host;
* **sample()**: ``ne.sample(energy, sampler, num_warmup=0, ...)`` from the same start, keeping
  the same draws (``keep_stats=()``), and with every statistic (the default).

Each side is called at several draw counts N (``--draws``, at least 4 values; divided by the
sampler's steps per draw so that every call does about the same work), first once to compile
(its time is recorded), then in ``--repeats`` interleaved rounds: each round calls every
(side, N) once, in an order that alternates which side runs first and whether N rises or
falls. The per-draw cost is the **least-squares slope** of wall time against N over all the
rounds' calls; the **intercept** is the fixed cost of a call (what a repeated call costs beyond
its draws). Their spread is given two ways: the range of the slopes (intercepts) fitted to each
round alone, and a 95 % bootstrap interval over rounds (rounds resampled with replacement, the
same rounds for both sides, so that the machine's drift is shared by numerator and
denominator). The figure of merit is the ratio of chain-steps per second, ``hand-written slope
/ sample() slope`` (> 1: ``sample()`` faster), with the same two spreads; the **whole call**
ratio ``t_hand(N) / t_sample(N)`` is given per N as the median and range over rounds (each
round's pair taken together). Every row measured is kept in the file.

The whole measurement of each sampler runs inside ``_common.Contention`` (the machine's load
and the CPU time others used are recorded; a contended row is marked ``contaminated``), and the
process CPU time of every call is recorded next to its wall time.

Writes ``benchmarks/results/sample_path.json`` (or ``--out``). Example (the 10^6-chain file)::

    python benchmarks/bench_sample_path.py --chains 1000000 --draws 1 2 3 4 --repeats 3 \
        --samplers ula --kinds hand_written sample_no_stats \
        --out benchmarks/results/sample_path_1m.json
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

import numpyro_ebm as ne
from numpyro_ebm.kernels import annealed_langevin, ula

SIGMAS = np.geomspace(1.0, 0.1, 4).astype(np.float32)
KINDS = ("hand_written", "sample_no_stats", "sample_all_stats")


def energy_fn(dim: int, hidden: int, seed: int):
    from flax import nnx

    net = ne.MLPEnergy((dim,), hidden=(hidden, hidden), rngs=nnx.Rngs(seed))
    apply, params = ne.as_pure(net)
    return lambda x: apply(params, x)


def kernels(energy, step_size, hmc_steps, per_level):
    """name -> (sampler value for sample(), BlackJAX-shaped algorithm for the loop, steps per
    draw). Both use the same step: ``step_size`` is the noise variance."""
    import blackjax

    logdensity = lambda x: -energy(x)
    nc_energy = lambda x, sigma: energy(x)
    al_step = step_size * float(SIGMAS[-1] / SIGMAS[0]) ** 2
    return {
        "ula": (
            ne.samplers.ula(step_size=step_size),
            ula.as_top_level_api(logdensity, step_size),
            1,
        ),
        "mala": (
            ne.samplers.mala(step_size=step_size),
            blackjax.mala(logdensity, step_size / 2),
            1,
        ),
        "hmc": (
            ne.samplers.hmc(num_integration_steps=hmc_steps, initial_step_size=0.05),
            blackjax.hmc(logdensity, 0.05, jnp.ones(2), hmc_steps),
            hmc_steps,
        ),
        "annealed_langevin": (
            ne.samplers.annealed_langevin(
                sigmas=SIGMAS, step_size=al_step, num_steps_per_level=per_level, denoise=False
            ),
            annealed_langevin.as_top_level_api(
                jnp.asarray(SIGMAS), al_step, per_level, energy_fn=nc_energy
            ),
            len(SIGMAS) * (per_level + 1),
        ),
    }


def hand_written(algorithm, x0, num_draws: int):
    """jit(scan(vmap(step))) keeping every draw; returns a function of the key."""
    num_chains = x0.shape[0]

    @jax.jit
    def run(key):
        state = jax.vmap(algorithm.init)(x0)

        def one(state, k):
            state, _ = jax.vmap(algorithm.step)(jax.random.split(k, num_chains), state)
            return state, state.position

        _, draws = jax.lax.scan(one, state, jax.random.split(key, num_draws))
        return draws

    return lambda key: np.asarray(run(key))


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, key) -> tuple[float, float]:
    """Wall and process CPU seconds of one call (its result is on the host when it returns)."""
    cpu, start = _cpu_s(), time.perf_counter()
    fn(key)
    return time.perf_counter() - start, _cpu_s() - cpu


def fit(ns, ts) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ts against ns."""
    slope, intercept = np.polyfit(np.asarray(ns, float), np.asarray(ts, float), 1)
    return float(slope), float(intercept)


def analyse(
    wall: dict, draws: list[int], kinds, chains: int, steps: int, boot: int, seed: int, cpu=None
):
    """Slopes, intercepts and ratios with their spreads; ``wall[kind][n]`` lists the rounds
    (``cpu`` likewise: the same fit of process CPU time, without the bootstrap)."""
    rounds = len(wall[kinds[0]][draws[0]])

    def fit_rounds(kind, idx, times=wall):
        ns = [n for i in idx for n in draws]
        ts = [times[kind][n][i] for i in idx for n in draws]
        return fit(ns, ts)

    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, rounds, rounds) for _ in range(boot)]
    out = {}
    for kind in kinds:
        slope, icpt = fit_rounds(kind, range(rounds))
        per_round = [fit_rounds(kind, [i]) for i in range(rounds)]
        bs = np.array([fit_rounds(kind, s) for s in samples])
        tmax = float(np.median(wall[kind][draws[-1]]))
        out[kind] = {
            "per_draw_s": slope,
            "per_draw_s_round_range": [min(p[0] for p in per_round), max(p[0] for p in per_round)],
            "per_draw_s_boot95": np.percentile(bs[:, 0], [2.5, 97.5]).tolist(),
            "fixed_s": icpt,
            "fixed_s_round_range": [min(p[1] for p in per_round), max(p[1] for p in per_round)],
            "fixed_s_boot95": np.percentile(bs[:, 1], [2.5, 97.5]).tolist(),
            "chain_steps_per_s": chains * steps / slope if slope > 0 else float("nan"),
            "median_t_max_n_s": tmax,
            "fixed_fraction_of_t_max_n": icpt / tmax,
            "slope_of_minima_s": fit(draws, [min(wall[kind][n]) for n in draws])[0],
        }
        if cpu is not None:
            cslope, cicpt = fit_rounds(kind, range(rounds), cpu)
            per_round = [fit_rounds(kind, [i], cpu)[0] for i in range(rounds)]
            out[kind] |= {
                "per_draw_cpu_s": cslope,
                "per_draw_cpu_s_round_range": [min(per_round), max(per_round)],
                "fixed_cpu_s": cicpt,
            }
    if "hand_written" not in kinds:
        return out
    hw = out["hand_written"]
    for kind in kinds:
        if kind == "hand_written":
            continue
        per_round = [
            fit_rounds("hand_written", [i])[0] / fit_rounds(kind, [i])[0] for i in range(rounds)
        ]
        bs = [fit_rounds("hand_written", s)[0] / fit_rounds(kind, s)[0] for s in samples]
        whole = {}
        for n in draws:
            pairs = [wall["hand_written"][n][i] / wall[kind][n][i] for i in range(rounds)]
            whole[str(n)] = {
                "median": float(np.median(pairs)),
                "range": [min(pairs), max(pairs)],
            }
        out[kind] |= {
            "ratio_per_draw": hw["per_draw_s"] / out[kind]["per_draw_s"],
            "ratio_per_draw_round_range": [min(per_round), max(per_round)],
            "ratio_per_draw_boot95": np.percentile(bs, [2.5, 97.5]).tolist(),
            "ratio_per_draw_of_minima": hw["slope_of_minima_s"] / out[kind]["slope_of_minima_s"],
            "whole_call_ratio": whole,
        }
        if cpu is not None:
            per_round = [
                fit_rounds("hand_written", [i], cpu)[0] / fit_rounds(kind, [i], cpu)[0]
                for i in range(rounds)
            ]
            out[kind] |= {
                "ratio_per_draw_cpu": hw["per_draw_cpu_s"] / out[kind]["per_draw_cpu_s"],
                "ratio_per_draw_cpu_round_range": [min(per_round), max(per_round)],
            }
    return out


def measure(name, sampler, algorithm, energy, x0, draws, repeats, kinds, seed):
    """Compile, then time every (kind, N) in interleaved rounds; returns the raw times."""
    target = energy if name != "annealed_langevin" else (lambda x, sigma: energy(x))

    def ours(m, keep_stats):
        return lambda key: ne.sample(
            target,
            sampler,
            key=key,
            init_position=x0,
            num_chains=x0.shape[0],
            num_warmup=0,
            num_samples=m,
            keep_stats=keep_stats,
        )

    makers = {
        "hand_written": lambda m: hand_written(algorithm, x0, m),
        "sample_no_stats": lambda m: ours(m, ()),
        "sample_all_stats": lambda m: ours(m, None),
    }
    fns = {(kind, m): makers[kind](m) for kind in kinds for m in draws}
    first = {kind: {} for kind in kinds}
    for i, ((kind, m), fn) in enumerate(fns.items()):  # the first call compiles
        w, c = timed(fn, jax.random.key(10_000 + i))
        first[kind][str(m)] = {"wall_s": w, "cpu_s": c}
    wall = {kind: {m: [] for m in draws} for kind in kinds}
    cpu = {kind: {m: [] for m in draws} for kind in kinds}
    orders = []
    rng = np.random.default_rng(seed)
    for r in range(repeats):
        order_kinds = list(kinds) if r % 2 == 0 else list(reversed(kinds))
        order_n = list(draws) if (r // 2) % 2 == 0 else list(reversed(draws))
        # rotate which kind leads within each N too, so no side always follows the other
        calls = []
        for j, m in enumerate(order_n):
            k = order_kinds[j % len(order_kinds) :] + order_kinds[: j % len(order_kinds)]
            calls += [(kind, m) for kind in k]
        orders.append([f"{kind}:{m}" for kind, m in calls])
        for kind, m in calls:
            w, c = timed(fns[(kind, m)], jax.random.key(int(rng.integers(1 << 30))))
            wall[kind][m].append(w)
            cpu[kind][m].append(c)
    return first, wall, cpu, orders


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--chains", type=int, default=1024)
    p.add_argument(
        "--draws",
        type=int,
        nargs="+",
        default=[125, 250, 375, 500],
        help="the N of the fit (at least 4 values) for a one-step sampler; divided by the "
        "sampler's steps per draw (HMC: 4, annealed Langevin: 24), at least 1",
    )
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--samplers", nargs="+", default=["ula", "mala", "hmc", "annealed_langevin"])
    p.add_argument("--step-size", type=float, default=0.02)
    p.add_argument("--hmc-steps", type=int, default=4)
    p.add_argument("--per-level", type=int, default=5)
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="what to time")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=_common.RESULTS / "sample_path.json")
    args = p.parse_args(argv)
    if len(set(args.draws)) < 4:
        p.error("--draws needs at least 4 distinct values (a slope over several N)")
    if args.repeats < 2:
        p.error("--repeats needs at least 2 rounds (a spread)")
    kinds = [k for k in KINDS if k in args.kinds]
    energy = energy_fn(args.dim, args.hidden, 0)
    table = kernels(energy, args.step_size, args.hmc_steps, args.per_level)
    x0 = jax.random.normal(jax.random.key(1), (args.chains, args.dim))
    jax.block_until_ready(x0)
    results = {}
    with _common.Contention() as whole:
        for name in args.samplers:
            sampler, algorithm, steps = table[name]
            draws = sorted({max(1, round(n / steps)) for n in args.draws})
            if len(draws) < len(set(args.draws)):  # small N collapsed: evenly spaced instead
                base = max(1, round(min(args.draws) / steps))
                draws = [base * (i + 1) for i in range(len(set(args.draws)))]
            with _common.Contention(max_wait=120.0) as guard:
                first, wall, cpu, orders = measure(
                    name, sampler, algorithm, energy, x0, draws, args.repeats, kinds, args.seed
                )
            row = {
                "draws": draws,
                "steps_per_draw": steps,
                "chains": args.chains,
                "rounds": args.repeats,
            }
            row |= analyse(
                wall, draws, kinds, args.chains, steps, args.bootstrap, args.seed, cpu=cpu
            )
            row |= {
                "first_call": first,
                "wall_s": {k: {str(n): v for n, v in d.items()} for k, d in wall.items()},
                "cpu_s": {k: {str(n): v for n, v in d.items()} for k, d in cpu.items()},
                "cpu_over_wall": {
                    k: sum(map(sum, cpu[k].values())) / sum(map(sum, wall[k].values()))
                    for k in kinds
                },
                "orders": orders,
                "contention": guard.record(),
            }
            results[f"{name}/{args.chains}"] = row
            line = [f"{name:18s} chains={args.chains} N={draws}"]
            for kind in kinds:
                r = row[kind]
                s = (
                    f"{kind}: {r['per_draw_s'] * 1e3:.4g} ms/draw "
                    f"[{r['per_draw_s_round_range'][0] * 1e3:.4g}, "
                    f"{r['per_draw_s_round_range'][1] * 1e3:.4g}] fixed {r['fixed_s'] * 1e3:.3g} ms"
                )
                if "ratio_per_draw" in r:
                    lo, hi = r["ratio_per_draw_boot95"]
                    w = r["whole_call_ratio"][str(draws[-1])]
                    s += (
                        f" ratio {r['ratio_per_draw']:.3f} (boot95 {lo:.3f}-{hi:.3f}) "
                        f"whole@N={draws[-1]} {w['median']:.3f} "
                        f"[{w['range'][0]:.3f}-{w['range'][1]:.3f}]"
                    )
                line.append(s)
            c = row["contention"]
            line.append(
                f"foreign cores {c['foreign_cores']} load {c['loadavg_start']}->"
                f"{c['loadavg_end']}{' CONTAMINATED' if c['contaminated'] else ''}"
            )
            print("\n  ".join(line), flush=True)
    record = {
        "benchmark": "sample_path",
        "date": _common.utc_now().isoformat(timespec="seconds"),
        "revision": _common.git_revision(),
        "command": " ".join(["python", "benchmarks/bench_sample_path.py", *sys.argv[1:]])
        if argv is None
        else " ".join(["python", "benchmarks/bench_sample_path.py", *argv]),
        "machine": _common.machine_info(),
        "versions": _common.local_versions(),
        "device": _common.jax_device(),
        "settings": vars(args) | {"out": str(args.out)},
        "method": (
            "per-draw cost: least-squares slope of wall time against N over all interleaved "
            "rounds; fixed cost: its intercept; spreads: range of per-round fits and 95 % "
            "bootstrap over rounds (paired across sides); ratio = hand-written slope / "
            "sample() slope (> 1: sample() faster); whole_call_ratio = t_hand(N) / t_sample(N) "
            "per round, median and range"
        ),
        "contention": whole.record(),
        "contaminated": whole.contaminated
        or any(r["contention"]["contaminated"] for r in results.values()),
        "results": results,
    }
    _common.write_json(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
