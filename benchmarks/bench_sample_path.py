#!/usr/bin/env python3
"""The sample path against the same kernel in a hand-written loop, side by side in one run.

For each sampler (ULA, MALA, HMC, annealed Langevin) and chain count, on the peers' MLP energy
E(x) = Linear(dim, h)-SiLU-Linear(h, h)-SiLU-Linear(h, 1) (``numpyro_ebm.MLPEnergy``):

* **hand-written**: ``jax.jit`` of a ``lax.scan`` over steps of ``vmap(kernel.step)`` (one key
  per chain, split from the step's key), keeping every draw, copied to the host;
* **sample()**: ``ne.sample(energy, sampler, num_warmup=0, ...)`` from the same start, keeping
  the same draws (``keep_stats=()``; and with every statistic, the default).

Both are timed per kept draw with the fixed cost cancelled: ``(t(2N) - t(N)) / N`` over
interleaved repeats (the fastest of each: noise on a shared machine only adds time), after a
first, compiling call of each length. The ratio
``sample() / hand-written`` in chain-steps per second is the figure of merit (goal >= 0.9).
A repeated identical ``sample()`` call's overhead beyond its run, ``t(N) - N * per_draw``, is
reported as a fraction of ``t(N)`` (goal < 5 %, i.e. no recompilation), and the whole call's
time over the hand-written loop's for the same N draws.

Writes ``benchmarks/results/sample_path.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
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


def timed(fn, key) -> float:
    start = time.perf_counter()
    fn(key)
    return time.perf_counter() - start


KINDS = ("hand_written", "sample_no_stats", "sample_all_stats")


def measure(name, sampler, algorithm, energy, x0, n, repeats, steps_per_draw, kinds=KINDS):
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
    kinds = {kind: makers[kind] for kind in kinds}
    fns = {(kind, m): make(m) for kind, make in kinds.items() for m in (n, 2 * n)}
    compile_s = {}
    for (kind, m), fn in fns.items():  # the first call compiles
        compile_s[f"{kind}_{m}"] = timed(fn, jax.random.key(0))
    times = {key: [] for key in fns}
    for r in range(repeats):  # interleaved
        for key, fn in fns.items():
            times[key].append(timed(fn, jax.random.key(r + 1)))
    out = {"compile_s": compile_s}
    for kind in kinds:
        t1, t2 = min(times[(kind, n)]), min(times[(kind, 2 * n)])
        per_draw = (t2 - t1) / n
        out[kind] = {
            "t_n_s": t1,
            "t_2n_s": t2,
            "per_draw_s": per_draw,
            "chain_steps_per_s": (
                x0.shape[0] * steps_per_draw / per_draw if per_draw > 0 else float("nan")
            ),
            "call_overhead_fraction": (t1 - n * per_draw) / t1,
        }
    base = out["hand_written"]["chain_steps_per_s"]
    for kind in set(kinds) - {"hand_written"}:
        out[kind]["ratio_to_hand_written"] = out[kind]["chain_steps_per_s"] / base
        # the whole call against the hand-written loop's, same draws: fixed and per-draw costs
        out[kind]["time_over_hand_written"] = out[kind]["t_n_s"] / out["hand_written"]["t_n_s"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--chains", type=int, nargs="+", default=[1024])
    p.add_argument(
        "--draws",
        type=int,
        nargs="+",
        default=[250],
        help="N, draws of the shorter run: one value, or one per --chains value",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--samplers", nargs="+", default=["ula", "mala", "hmc", "annealed_langevin"])
    p.add_argument("--step-size", type=float, default=0.02)
    p.add_argument("--hmc-steps", type=int, default=4)
    p.add_argument("--per-level", type=int, default=5)
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="what to time")
    p.add_argument("--out", type=Path, default=_common.RESULTS / "sample_path.json")
    args = p.parse_args(argv)
    energy = energy_fn(args.dim, args.hidden, 0)
    table = kernels(energy, args.step_size, args.hmc_steps, args.per_level)
    results = {}
    if len(args.draws) not in (1, len(args.chains)):
        p.error("--draws takes one value or one per --chains value")
    per_count = args.draws * len(args.chains) if len(args.draws) == 1 else args.draws
    for chains, n in zip(args.chains, per_count, strict=True):
        x0 = jax.random.normal(jax.random.key(1), (chains, args.dim))
        for name in args.samplers:
            sampler, algorithm, steps = table[name]
            draws = max(2, n // (10 if name == "annealed_langevin" else 1))
            row = measure(
                name, sampler, algorithm, energy, x0, draws, args.repeats, steps, args.kinds
            )
            results[f"{name}/{chains}"] = row
            print(
                f"{name:18s} chains={chains:8d} draws={draws}/{2 * draws}",
                *(
                    f"{kind}={row[kind]['chain_steps_per_s']:.3g}"
                    + (
                        f" (per draw x{row[kind]['ratio_to_hand_written']:.2f}, whole call "
                        f"x{1 / row[kind]['time_over_hand_written']:.2f})"
                        if kind != "hand_written"
                        else ""
                    )
                    + f" overhead {row[kind]['call_overhead_fraction']:.1%}"
                    for kind in args.kinds
                ),
                flush=True,
            )
    record = {
        "benchmark": "sample_path",
        "date": _common.utc_now().isoformat(timespec="seconds"),
        "machine": _common.machine_info(),
        "versions": _common.local_versions(),
        "backend": jax.default_backend(),
        "settings": vars(args) | {"out": str(args.out)},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
