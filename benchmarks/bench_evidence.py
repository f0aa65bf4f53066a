"""log Z error against cost: our AIS and tempered SMC beside a hand-written BlackJAX SMC loop.

Targets with a closed-form log Z: an unnormalized 2-D Gaussian mixture (log Z = log 3) and a
10-D Gaussian with AR(1) correlation 0.9 (log Z = log det(2 pi Sigma) / 2). Every method
starts from the same reference N(0, 3^2 I), uses the same number of particles, and is repeated
over ``--repeats`` keys; each row gives the root-mean-square error of log Z over the repeats,
the mean reported standard error, and the gradient evaluations of one estimate.

* ``ais``: ``evidence.ais.ais`` (HMC transitions tuned along the path, 4 runs).
* ``smc``: ``evidence.smc.smc`` (8 independent runs, HMC tuned per temperature).
* ``blackjax_smc``: BlackJAX's ``adaptive_tempered_smc`` in a ``while_loop`` written by hand
  as its documentation shows, HMC with a fixed step and identity mass matrix, over the same
  number of independent runs as ``smc`` and the runs combined the same way.

Writes ``--out`` (default ``benchmarks/results/evidence.json``) and prints it as the last line.
Run: ``python benchmarks/bench_evidence.py [--repeats 3] [--particles 256]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm.evidence.ais import ais, log_mean_exp
from numpyro_ebm.evidence.references import Gaussian
from numpyro_ebm.evidence.smc import smc as smc_evidence

WEIGHTS = jnp.array([0.3, 0.7])
MEANS = jnp.array([[-2.0, -2.0], [1.5, 1.5]])
SCALES = jnp.array([0.5, 1.0])
RHO, DIM = 0.9, 10
COVARIANCE = RHO ** jnp.abs(jnp.arange(DIM)[:, None] - jnp.arange(DIM)[None, :])
PRECISION = jnp.linalg.inv(COVARIANCE)


def mixture(x):
    log_components = jax.scipy.stats.norm.logpdf(x, MEANS, SCALES[:, None]).sum(-1)
    return jnp.log(3.0) + jax.scipy.special.logsumexp(log_components + jnp.log(WEIGHTS))


def correlated(x):
    return -0.5 * x @ PRECISION @ x


TARGETS = {
    "mixture_2d": (mixture, 2, math.log(3.0)),
    "correlated_gaussian_10d": (
        correlated,
        DIM,
        0.5 * float(jnp.linalg.slogdet(2 * math.pi * COVARIANCE)[1]),
    ),
}


def blackjax_smc(
    key,
    logdensity_fn,
    dim,
    num_particles,
    num_runs,
    step_size=0.3,
    num_integration_steps=5,
    num_mcmc_steps=5,
):
    """A hand-written BlackJAX adaptive tempered SMC loop: (log Z, se, grads)."""
    reference = Gaussian(jnp.zeros(dim), jnp.full(dim, 3.0))

    def loglikelihood(x):
        return logdensity_fn(x) - reference.logdensity(x)

    smc = blackjax.adaptive_tempered_smc(
        reference.logdensity,
        loglikelihood,
        blackjax.hmc.build_kernel(),
        blackjax.hmc.init,
        blackjax.smc.extend_params(
            {
                "step_size": step_size,
                "inverse_mass_matrix": jnp.ones(dim),
                "num_integration_steps": num_integration_steps,
            }
        ),
        blackjax.smc.resampling.systematic,
        target_ess=0.5,
        num_mcmc_steps=num_mcmc_steps,
    )

    def one_run(key):
        init_key, key = jax.random.split(key)
        state = smc.init(reference.sample(init_key, num_particles))

        def cond(carry):
            return carry[0].tempering_param < 1.0

        def body(carry):
            state, log_z, key, steps = carry
            key, subkey = jax.random.split(key)
            state, info = smc.step(subkey, state)
            return state, log_z + info.log_likelihood_increment, key, steps + 1

        _, log_z, _, steps = jax.lax.while_loop(
            cond, body, (state, jnp.zeros(()), key, jnp.asarray(0))
        )
        return log_z, steps

    log_z, steps = jax.jit(jax.vmap(one_run))(jax.random.split(key, num_runs))
    estimate, se = log_mean_exp(log_z)
    grads = int(jnp.sum(steps)) * num_particles * (1 + num_mcmc_steps * num_integration_steps)
    return float(estimate), float(se), grads


def methods(particles: int):
    def run_ais(key, f, dim):
        r = ais(
            key,
            f,
            Gaussian(jnp.zeros(dim), jnp.full(dim, 3.0)),
            num_particles=particles // 2,
            num_runs=4,
            num_steps=100,
        )
        return float(r.log_normalizer), float(r.standard_error), int(r.num_grad_evals)

    def run_smc(key, f, dim):
        r = smc_evidence(
            key,
            f,
            jnp.zeros(dim),
            reference=Gaussian(jnp.zeros(dim), jnp.full(dim, 3.0)),
            num_particles=particles,
            num_runs=8,
        )
        return float(r.log_normalizer), float(r.standard_error), int(r.num_grad_evals)

    def run_blackjax(key, f, dim):
        return blackjax_smc(key, f, dim, particles, 8)

    return {"ais": run_ais, "smc": run_smc, "blackjax_smc": run_blackjax}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--particles", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(_common.RESULTS / "evidence.json"))
    args = parser.parse_args(argv)
    result = {
        "benchmark": "evidence",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "command": _common.command_line("bench_evidence.py", argv),
        "config": {
            "repeats": args.repeats,
            "particles": args.particles,
            "seed": args.seed,
            "reference": "N(0, 3^2 I)",
            "x64": bool(jax.config.jax_enable_x64),
        },
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
        "git": _common.git_revision(),
        "targets": {},
    }
    # the contention guard: waits for a quiet machine, records the others' load meanwhile
    with _common.Contention() as guard:
        for target, (f, dim, truth) in TARGETS.items():
            rows = {}
            for name, run in methods(args.particles).items():
                errors, ses, grads, seconds = [], [], [], []
                for repeat in range(args.repeats):
                    key = jax.random.fold_in(jax.random.key(args.seed), repeat)
                    t0 = time.perf_counter()
                    estimate, se, cost = run(key, f, dim)
                    seconds.append(time.perf_counter() - t0)
                    errors.append(estimate - truth)
                    ses.append(se)
                    grads.append(cost)
                errors = np.asarray(errors)
                rows[name] = {
                    "rmse": float(np.sqrt(np.mean(errors**2))),
                    "mean_error": float(errors.mean()),
                    "mean_reported_se": float(np.mean(ses)),
                    "max_abs_z": float(np.max(np.abs(errors) / np.asarray(ses))),
                    "grad_evals": float(np.mean(grads)),
                    "seconds_first_call": seconds[0],
                    "seconds_later_calls": float(np.mean(seconds[1:]))
                    if len(seconds) > 1
                    else None,
                }
                print(f"{target} {name}: {rows[name]}", file=sys.stderr, flush=True)
            result["targets"][target] = {"log_z": truth, "methods": rows}
    result["contention"] = guard.record()
    result["peak_rss_mib"] = _common.peak_rss_mib()
    _common.write_json(Path(args.out), result)
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
