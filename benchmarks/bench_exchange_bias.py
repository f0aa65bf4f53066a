#!/usr/bin/env python3
"""The bias of the approximate exchange algorithm, and of calibrated pseudo-likelihood, against
the exact posterior of an Ising lattice's inverse temperature.

Five configurations of the periodic 4 x 4 lattice are drawn exactly at beta = 0.3
(enumeration, ``tests/test_exchange.py``'s ``observed``), under a Uniform(0, 1) prior; the
exact posterior mean and sd come from log Z(beta) by enumeration on a quadrature grid. Each
row runs 8 chains of 500 warm-up and 5000 kept draws: the exchange algorithm with auxiliary
draws by 1, 3, 10 and 30 Gibbs sweeps from the observations (the approximate algorithm of
Liang 2010), with exact auxiliary draws (enumeration), and calibrated pseudo-likelihood. Each
row reports the posterior mean, its error in Monte Carlo standard errors (ArviZ's
``mcse``) and in exact posterior sds, and the posterior sd against the exact one.

Run: ``python benchmarks/bench_exchange_bias.py [--out benchmarks/results/exchange_bias.json]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import _common
import arviz as az
import jax
from test_exchange import enumerated_log_z, exact_posterior, ising_beta_model, observed

import numpyro_ebm as ne
from numpyro_ebm.models.ising import Ising


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "exchange_bias.json")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    ising = Ising(4)
    x = observed(ising, 5, jax.random.key(1))
    mean, sd = exact_posterior(ising, x, enumerated_log_z(ising))
    rows = {
        f"exchange, {steps} Gibbs sweep{'s' if steps > 1 else ''}": ne.samplers.exchange(
            auxiliary=ne.samplers.gibbs(), auxiliary_steps=steps
        )
        for steps in (1, 3, 10, 30)
    }
    rows["exchange, exact (enumeration)"] = ne.samplers.exchange()
    rows["calibrated pseudo-likelihood"] = ne.samplers.pseudo_likelihood()
    results = {}
    with _common.Contention() as guard:
        for i, (name, sampler) in enumerate(rows.items()):
            idata = ne.sample(
                ising_beta_model(ising),
                sampler,
                key=jax.random.key(10 + i),
                model_args=(x,),
                num_chains=8,
                num_samples=5000,
                num_warmup=500,
            )
            draws = idata.posterior["beta"].values
            mcse = float(az.mcse(idata, var_names=["beta"])["beta"])
            results[name] = {
                "mean": float(draws.mean()),
                "mcse_mean": mcse,
                "error_in_mcse": (float(draws.mean()) - mean) / mcse,
                "error_in_sd": (float(draws.mean()) - mean) / sd,
                "sd": float(draws.std()),
                "sd_error": float(draws.std()) / sd - 1,
            }
            row = results[name]
            print(
                f"{name:34} mean {row['mean']:.4f} ({row['error_in_mcse']:+.1f} MCSE, "
                f"{row['error_in_sd']:+.2f} sd), sd {row['sd']:.4f} ({row['sd_error']:+.1%})",
                flush=True,
            )
    result = {
        "benchmark": "exchange_bias",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "git": _common.git_revision(),
        "command": _common.command_line("bench_exchange_bias.py", argv),
        "machine": _common.machine_info(),
        "exact": {"mean": mean, "sd": sd},
        "rows": results,
        "contention": guard.record(),
        "versions": _common.local_versions(),
    }
    _common.write_json(args.out, result)
    print(f"exact posterior: mean {mean:.4f}, sd {sd:.4f}")
    return result


if __name__ == "__main__":
    main()
