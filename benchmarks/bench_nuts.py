#!/usr/bin/env python3
"""NUTS on posteriordb models: our BlackJAX path vs NumPyro's own NUTS, ESS per second.

Each model is written in NumPyro with the parameterization of its Stan program in posteriordb
(``shared/posteriordb/<posterior>.json`` holds the data and the reference posterior):

* ``eight_schools-eight_schools_noncentered``: ``theta_trans ~ N(0, 1)``, ``mu ~ N(0, 5)``,
  ``tau ~ Cauchy(0, 5)`` on ``tau > 0``, ``theta = mu + tau * theta_trans`` (deterministic),
  ``y ~ N(theta, sigma)``;
* ``kidiq-kidscore_momhsiq``: ``beta`` (3) flat, ``sigma ~ Cauchy(0, 2.5)`` on ``sigma > 0``,
  ``kid_score ~ N(beta[1] + beta[2] mom_hs + beta[3] mom_iq, sigma)``;
* ``arK-arK``: ``alpha ~ N(0, 10)``, ``beta`` (K) ``~ N(0, 10)``, ``sigma ~ Cauchy(0, 2.5)`` on
  ``sigma > 0``, ``y[t] ~ N(alpha + sum_k beta[k] y[t-k], sigma)`` for ``t > K``.

For each model, ``numpyro_ebm.compare(model, ["nuts", "numpyro_nuts"], ...)`` runs both samplers
with the same key (same initial positions), chains, draws and warm-up, in this one process:
``nuts`` is BlackJAX NUTS with Stan's window adaptation (diagonal mass matrix) through
``sample()``, ``numpyro_nuts`` is ``numpyro.infer.MCMC(NUTS(...), chain_method="vectorized")``
on the same unconstrained potential. ``wall_s`` excludes the compile time JAX reports
(``jax.monitoring``) and includes warm-up; ESS is the minimum bulk ESS over all posterior
coordinates (deterministic ones included); ``ess_per_1k_grads`` counts gradients of the draws
(warm-up excluded). CPU dispatch is synchronous in this benchmark, so that no compilation
overlaps a run and subtracting it removes compilation only. One run's minimum bulk ESS varies
by 10-20 % from seed to seed, so each model is run with ``--seeds`` keys (default 5), after an
untimed first run, and the ratios ours / NumPyro are medians over them (with their range);
tables and accuracy in full are the first seed's.

Accuracy against posteriordb's reference (10 x 1000 draws of long Stan runs), over the
reference quantities: ``max_std_mean_error`` = max |mean - ref mean| / ref sd (posteriordb's
convention), ``max_std_sd_error`` = max |sd - ref sd| / ref sd, ``max_z`` = max
|mean - ref mean| / sqrt(mcse^2 + ref mcse^2) (about |N(0, 1)| per quantity for a correct
sampler; the max over 4-10 quantities is usually below 3).

Writes ``--out`` (default ``benchmarks/results/nuts.json``) and prints it as the last line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

import _common

MODELS = {
    "eight_schools_noncentered": "eight_schools-eight_schools_noncentered",
    "kidiq_momhsiq": "kidiq-kidscore_momhsiq",
    "arK": "arK-arK",
}
SAMPLERS = ("nuts", "numpyro_nuts")


def eight_schools_noncentered(J, y, sigma):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0).expand([J]).to_event(1))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.deterministic("theta", theta_trans * tau + mu)
    numpyro.sample("y", dist.Normal(theta, jnp.asarray(sigma)).to_event(1), obs=jnp.asarray(y))


def kidscore_momhsiq(N, kid_score, mom_hs, mom_iq, **unused):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    beta = numpyro.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (3,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    mu = beta[0] + beta[1] * jnp.asarray(mom_hs) + beta[2] * jnp.asarray(mom_iq)
    numpyro.sample("kid_score", dist.Normal(mu, sigma).to_event(1), obs=jnp.asarray(kid_score))


def ark(K, T, y):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    y = jnp.asarray(y)
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    # lags[t - K, k] = y[t - k - 1] for t = K .. T-1 (0-based): beta[k] multiplies y[t-k-1]
    lags = jnp.stack([y[K - k - 1 : T - k - 1] for k in range(K)], axis=1)
    mu = alpha + lags @ beta
    numpyro.sample("y", dist.Normal(mu, sigma).to_event(1), obs=y[K:])


BUILDERS = {
    "eight_schools_noncentered": eight_schools_noncentered,
    "kidiq_momhsiq": kidscore_momhsiq,
    "arK": ark,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {list(MODELS)}")
    p.add_argument(
        "--posteriordb-dir",
        default=str(_common.ROOT.parent / "shared" / "posteriordb"),
        help="folder of the posteriordb JSON files (default: <repo>/../shared/posteriordb)",
    )
    p.add_argument("--num-chains", type=int, default=4)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--num-warmup", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="runs per model, seeds seed .. seed+seeds-1; ratios are medians over them",
    )
    p.add_argument("--out", default=str(_common.RESULTS / "nuts.json"))
    return p.parse_args(argv)


def reference_row(name: str) -> str:
    """posteriordb's 1-based ``beta[2]`` -> the report table's 0-based ``beta[1]``."""
    m = re.fullmatch(r"(\w+)\[([\d,]+)\]", name)
    if not m:
        return name
    idx = ",".join(str(int(i) - 1) for i in m.group(2).split(","))
    return f"{m.group(1)}[{idx}]"


def accuracy(table, reference: dict) -> dict:
    """Standardized errors of a run's summary table against posteriordb's reference."""
    import numpy as np

    per = {}
    for name, ref in reference.items():
        row = table.loc[reference_row(name)]
        delta = abs(float(row["mean"]) - ref["mean"])
        per[name] = {
            "mean": float(row["mean"]),
            "sd": float(row["sd"]),
            "mcse_mean": float(row["mcse_mean"]),
            "std_mean_error": delta / ref["sd"],
            "std_sd_error": abs(float(row["sd"]) - ref["sd"]) / ref["sd"],
            "z": delta / float(np.hypot(row["mcse_mean"], ref["mcse_mean"])),
        }

    def worst(key):
        name = max(per, key=lambda n: per[n][key])
        return per[name][key], name

    (e, e_at), (s, s_at), (z, z_at) = (worst(k) for k in ("std_mean_error", "std_sd_error", "z"))
    return {
        "max_std_mean_error": e,
        "max_std_mean_error_at": e_at,
        "max_std_sd_error": s,
        "max_std_sd_error_at": s_at,
        "max_z": z,
        "max_z_at": z_at,
        "per_quantity": per,
    }


RATIOS = ("ess_per_s", "ess_per_1k_grads", "min_ess_bulk", "wall_s", "grad_evals")


def run_model(key_name: str, pdb: Path, args) -> dict:
    """Both samplers on one model, once per seed after an untimed first run: the first seed's
    tables and accuracy in full, every seed's ratios, and their medians."""
    import jax
    import numpy as np

    import numpyro_ebm as ne

    posterior = MODELS[key_name]
    spec = json.loads((pdb / f"{posterior}.json").read_text())
    out = {"posterior": posterior, "stan_parameters": spec["stan_parameters"], "seeds": []}
    t0 = time.perf_counter()

    def run(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return ne.compare(
                BUILDERS[key_name],
                list(SAMPLERS),
                key=jax.random.PRNGKey(seed),
                num_chains=args.num_chains,
                num_samples=args.num_samples,
                num_warmup=args.num_warmup,
                model_kwargs=spec["data"],
            )

    run(2**31 - 1)  # untimed: our programs compile once, NumPyro's in every call
    for seed in range(args.seed, args.seed + args.seeds):
        comp = run(seed)
        tables = {
            name: {
                k: (v.item() if hasattr(v, "item") else v) for k, v in comp.table.loc[name].items()
            }
            for name in SAMPLERS
        }
        ours, theirs = (tables[n] for n in SAMPLERS)
        ratios = {k: ours[k] / theirs[k] if theirs[k] else None for k in RATIOS}
        out["seeds"].append({"seed": seed, "tables": tables, "ratio_ours_over_numpyro": ratios})
        if "samplers" not in out:
            out["samplers"] = {
                name: {
                    "table": tables[name],
                    "accuracy": accuracy(comp.reports[name].table, spec["reference"]),
                }
                for name in SAMPLERS
            }
    per_seed = {k: [r["ratio_ours_over_numpyro"][k] for r in out["seeds"]] for k in RATIOS}
    out["ratio_ours_over_numpyro"] = {
        k: float(np.median(v)) if None not in v else None for k, v in per_seed.items()
    }
    out["ratio_range"] = {k: [min(v), max(v)] for k, v in per_seed.items() if None not in v}
    out["compare_call_s"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    pdb = Path(args.posteriordb_dir)
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        sys.exit(f"error: unknown models {unknown}; known: {list(MODELS)}")
    missing = [MODELS[m] for m in names if not (pdb / f"{MODELS[m]}.json").is_file()]
    if missing:
        sys.exit(f"error: {missing} not found in {pdb} (pass --posteriordb-dir)")

    import jax

    # Compilation is subtracted from the wall time (NumPyro compiles in every call). With
    # asynchronous dispatch, a program compiles while the previous one still runs, and the
    # subtraction would then remove run time too: dispatch synchronously, for both samplers.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    result = {
        "benchmark": "nuts",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "config": {
            "samplers": list(SAMPLERS),
            "num_chains": args.num_chains,
            "num_samples": args.num_samples,
            "num_warmup": args.num_warmup,
            "seed": args.seed,
            "seeds": args.seeds,
            "x64": bool(jax.config.jax_enable_x64),
            "cpu_async_dispatch": False,
        },
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
        "git": _common.git_revision(),
        "models": {},
    }
    for name in names:
        t0 = time.perf_counter()
        result["models"][name] = run_model(name, pdb, args)
        r = result["models"][name]
        print(
            f"{name}: "
            + ", ".join(
                f"{s} ESS/s {r['samplers'][s]['table']['ess_per_s']:.4g} "
                f"max z {r['samplers'][s]['accuracy']['max_z']:.2f}"
                for s in SAMPLERS
            )
            + f"; ratio ESS/s median {r['ratio_ours_over_numpyro']['ess_per_s']:.3g} "
            f"over {args.seeds} seeds, range {r['ratio_range']['ess_per_s']} "
            f"({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    result["peak_rss_mib"] = _common.peak_rss_mib()
    _common.write_json(Path(args.out), result)
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
