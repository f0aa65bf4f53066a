#!/usr/bin/env python3
"""Gibbs within HMC on Ising-prior denoising: ESS per second of numpyro-ebm's
``hmc_gibbs(discrete=checkerboard(flip_ratio="curvature"), continuous="nuts")`` against
NumPyro's ``DiscreteHMCGibbs(NUTS(model))`` on the same NumPyro model
(``ne.models.ising.denoising_model``: a 16x16 spin image observed with Gaussian noise of unknown
scale, Ising prior at beta = 0.4; the runners and the judging are those of
``examples/ising_denoising.py``).

Per seed, each side draws 4 chains of 500 warm-up and 1000 kept transitions; the call is timed
from the key to the draws on the host (``time.perf_counter``), compilation excluded: each
side's first call (the **first result**, timed too) compiles, the later calls reuse the
program (ours: ``sample``'s program cache; NumPyro: ``MCMC.run`` traced inside one
``jax.jit``, its docstring's pattern, where a bare ``run`` compiles its loop in every call).
The side that runs first alternates from seed to seed. The same function judges both
(``ne.mixing_report``): bulk ESS of sigma and the median over pixels of the spins' bulk ESS,
divided by the call's seconds. The ratio ours / NumPyro is taken per seed; its median and
range are reported. The whole run sits in ``_common.Contention`` (a quiet machine is waited
for; contamination is recorded).

Run: ``python benchmarks/bench_mixed.py [--seeds 5] [--out benchmarks/results/mixed.json]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import _common
import ising_denoising as example
import jax
import jax.numpy as jnp

from numpyro_ebm.models.ising import Ising, denoising_model

RATES = ("ess_per_s_sigma", "ess_per_s_spins_median")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-foreign", type=float, default=0.3)
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "mixed.json")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    config = example.FULL
    truth = example.truth_image(config.L)
    key = jax.random.key(0)
    noise = np.asarray(jax.random.normal(jax.random.fold_in(key, 0), truth.shape))
    y = jnp.asarray(truth + config.sigma * noise, jnp.float32)
    model = denoising_model(Ising(config.L, beta=config.beta))
    runners = example.runners(model, y, config)
    names = list(runners)
    rows = {name: [] for name in names}
    first = {}
    with _common.Contention(args.max_foreign, args.max_wait) as guard:
        for seed in range(args.seeds):
            order = names if seed % 2 == 0 else names[::-1]
            for name in order:
                run_key = jax.random.fold_in(key, 1 + seed)
                if name not in first:
                    started = time.perf_counter()
                    runners[name](run_key)
                    first[name] = time.perf_counter() - started
                started = time.perf_counter()
                result = runners[name](run_key)
                seconds = time.perf_counter() - started
                row = example.judge(result, seconds, truth, config.sigma)
                row.pop("marginal")
                rows[name].append(row | {"seed": seed})
                print(
                    f"seed {seed} {name}: {seconds:.2f} s, R-hat {row['max_rhat']:.3f}, "
                    f"ESS/s sigma {row['ess_per_s_sigma']:.0f}, spins "
                    f"{row['ess_per_s_spins_median']:.0f}, sigma {row['sigma_mean']:.3f}",
                    flush=True,
                )
    ours, numpyro = names
    ratios = {
        rate: [a[rate] / b[rate] for a, b in zip(rows[ours], rows[numpyro], strict=True)]
        for rate in RATES
    }
    summary = {
        rate: {
            "median": float(np.median(values)),
            "min": float(np.min(values)),
            "max": float(np.max(values)),
        }
        for rate, values in ratios.items()
    }
    result = {
        "benchmark": "mixed_denoising",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "git": _common.git_revision(),
        "command": "python benchmarks/bench_mixed.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": config._asdict(),
        "first_result_s": first,
        "runs": rows,
        "ratio_ours_over_numpyro": summary,
        "contention": guard.record(),
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
    }
    _common.write_json(args.out, result)
    print(
        f"ours / NumPyro DiscreteHMCGibbs, ESS per second (median over {args.seeds} seeds): "
        f"sigma {summary['ess_per_s_sigma']['median']:.2f}x "
        f"[{summary['ess_per_s_sigma']['min']:.2f}-{summary['ess_per_s_sigma']['max']:.2f}], "
        f"spins {summary['ess_per_s_spins_median']['median']:.2f}x "
        f"[{summary['ess_per_s_spins_median']['min']:.2f}-"
        f"{summary['ess_per_s_spins_median']['max']:.2f}]; first result ours "
        f"{first[ours]:.1f} s, NumPyro {first[numpyro]:.1f} s"
        f"{'; CONTAMINATED' if guard.contaminated else ''}"
    )
    return result


if __name__ == "__main__":
    main()
