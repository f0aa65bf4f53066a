#!/usr/bin/env python3
"""NUTS on posteriordb models: numpyro-ebm's ``sample(model, "nuts")`` (BlackJAX) vs NumPyro's
own ``MCMC(NUTS(model))``, one object per model reused across seeds, all timed the same way.

Each model is written in NumPyro with the parameterization of its Stan program in posteriordb
(``shared/posteriordb/<posterior>.json`` holds the data and the reference posterior):

* ``arK``: ``alpha ~ N(0, 10)``, ``beta`` (K) ``~ N(0, 10)``, ``sigma ~ Cauchy(0, 2.5)`` on
  ``sigma > 0``, ``y[t] ~ N(alpha + sum_k beta[k] y[t-k], sigma)`` for ``t > K``;
* ``eight_schools_centered``: ``mu ~ N(0, 5)``, ``tau ~ Cauchy(0, 5)`` on ``tau > 0``,
  ``theta ~ N(mu, tau)``, ``y ~ N(theta, sigma)`` (a funnel: NUTS diverges here; its reference
  is the noncentered one's, the same posterior);
* ``eight_schools_noncentered``: ``theta_trans ~ N(0, 1)``, ``mu ~ N(0, 5)``,
  ``tau ~ Cauchy(0, 5)`` on ``tau > 0``, ``theta = mu + tau * theta_trans`` (deterministic);
* ``garch11``: ``mu`` flat, ``alpha0`` flat on ``> 0``, ``alpha1`` flat on (0, 1), ``beta1``
  flat on (0, 1 - alpha1) (written ``beta1 = (1 - alpha1) * beta1_unit``, ``beta1_unit`` on
  (0, 1), plus the ``log(1 - alpha1)`` that makes the density flat in ``beta1`` as Stan's),
  ``sigma[1] = sigma1``, ``sigma[t]^2 = alpha0 + alpha1 (y[t-1] - mu)^2 + beta1 sigma[t-1]^2``,
  ``y ~ N(mu, sigma)``;
* ``kidiq_momhsiq``: ``beta`` (3) flat, ``sigma ~ Cauchy(0, 2.5)`` on ``sigma > 0``,
  ``kid_score ~ N(beta[1] + beta[2] mom_hs + beta[3] mom_iq, sigma)``;
* ``low_dim_gauss_mix``: ``mu`` ordered (2) ``~ N(0, 2)``, ``sigma`` (2) ``~ N(0, 2)`` on
  ``> 0``, ``theta ~ Beta(5, 5)``, ``y[n] ~ theta N(mu[1], sigma[1]) + (1 - theta)
  N(mu[2], sigma[2])``.

(posteriordb's ``gp_pois_regr`` is left out: it needs 64-bit JAX, and the others run in 32.)

How each side runs, per model, in this one process:

* ``ours``: ``numpyro_ebm.sample(model, "nuts", key=..., model_kwargs=data)``: BlackJAX NUTS
  with Stan's window adaptation (diagonal mass matrix, target acceptance 0.8, at most 10
  doublings), chains ``vmap``-ed in one program; a repeated call reuses the programs that
  ``sample`` keeps (keyed by what the model computes) and compiles nothing;
* ``numpyro_run``: **one** ``MCMC(NUTS(model), chain_method="vectorized",
  progress_bar=False)`` per model (NUTS' defaults: diagonal mass matrix, target acceptance
  0.8, tree depth 10), and ``mcmc.run(key, **data)`` again for each seed, the data arrays built
  once (NumPyro keys its cache by their identity). With NumPyro 0.22 / JAX 0.10 this still
  compiles its sampling loop (``_fori_collect_loop``) and its initialization (a ``scan``) in
  **every** ``run`` (``compiles`` counts them; ``jit_model_args=True`` and
  ``chain_method="sequential"`` do the same);
* ``numpyro_jit``: a second such MCMC object whose ``run`` is traced inside one ``jax.jit``
  function of the key (the pattern of MCMC's docstring, there under ``pmap``): it compiles in
  its first call only. Its repeated calls are NumPyro's compiled speed, and the headline
  ratios are against it (the conservative comparison for us).

Both start from NumPyro's ``init_to_uniform`` with the same key (the same distribution of
initial positions; the draws themselves differ, as the two split keys differently, and the
two NumPyro ways give the same draws up to rounding).

Timing, the same for all three: ``wall_s`` (``time.perf_counter``) and ``cpu_s``
(``time.process_time``, all threads of this process) around the whole call, warm-up included,
until the draws are on the host (ours returns host arrays; for NumPyro, ``get_samples`` and
``get_extra_fields`` through ``jax.device_get``). Nothing is subtracted. JAX's XLA
compilations during the call are counted apart (``compiles``, ``compile_s``, from
``jax.monitoring``), to show what each call compiled. The first call on a model is the
**first result** (compilation included); the next ``--seeds`` calls are **compiled** (steady
state). The order of the three alternates from call to call (and from model to model): ours
first, then last.

Diagnostics, the same function for both (``numpyro_ebm.mixing_report`` on the draws of all
posterior sites, deterministic ones included, outside the timer): ESS = minimum bulk ESS over
all coordinates; ``ess_per_1k_grads`` counts the gradients of the kept draws (warm-up
excluded); a run is **mixed** when it has no divergence, no non-finite chain and max R-hat
<= 1.01. Ratios ours / NumPyro are taken per seed (all on the same key, one after the
other), for each NumPyro way, over the compiled calls where **both** runs mixed; against a
way, a model is called ``faster`` only when ours mixed in every run (first call included)
and every such ratio of compiled ESS/s is above 1 (``slower`` when every one is below 1,
else ``within spread``; ``no claim`` with fewer than 2 such seeds). The first-result ratio
is one call per model and side: no spread within a model.

Accuracy against posteriordb's reference (10 x 1000 draws of long Stan runs), over the
reference quantities: ``max_std_mean_error`` = max |mean - ref mean| / ref sd (posteriordb's
convention), ``max_std_sd_error`` = max |sd - ref sd| / ref sd, ``max_z`` = max
|mean - ref mean| / sqrt(mcse^2 + ref mcse^2) (about |N(0, 1)| per quantity for a correct
sampler; the max over 4-10 quantities is usually below 3).

The measurement is guarded by ``_common.Contention`` (per model, and over the whole run): it
waits for a quiet machine and records the CPU that other processes used meanwhile; a model
measured while others used more than ``--max-foreign`` cores is marked ``contaminated``.

Writes ``--out`` (default ``benchmarks/results/nuts.json``) and prints it as the last line.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

import _common

RHAT_THRESHOLD = 1.01
SIDES = ("ours", "numpyro_run", "numpyro_jit")
NUMPYRO_WAYS = ("numpyro_jit", "numpyro_run")
HEADLINE = "numpyro_jit"  # NumPyro's compiled program: the conservative comparison
# what NumPyro collects besides the draws and "diverging": what ours keeps per draw
NUMPYRO_FIELDS = ("num_steps", "energy", "accept_prob", "potential_energy", "adapt_state.step_size")


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


def eight_schools_centered(J, y, sigma):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.sample("theta", dist.Normal(mu, tau).expand([J]).to_event(1))
    numpyro.sample("y", dist.Normal(theta, jnp.asarray(sigma)).to_event(1), obs=jnp.asarray(y))


def eight_schools_noncentered(J, y, sigma):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0).expand([J]).to_event(1))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.deterministic("theta", theta_trans * tau + mu)
    numpyro.sample("y", dist.Normal(theta, jnp.asarray(sigma)).to_event(1), obs=jnp.asarray(y))


def garch11(T, y, sigma1):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    y = jnp.asarray(y)
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
    alpha0 = numpyro.sample("alpha0", dist.ImproperUniform(constraints.positive, (), ()))
    alpha1 = numpyro.sample("alpha1", dist.Uniform(0.0, 1.0))
    beta1_unit = numpyro.sample("beta1_unit", dist.Uniform(0.0, 1.0))
    beta1 = numpyro.deterministic("beta1", (1.0 - alpha1) * beta1_unit)
    numpyro.factor("beta1_flat", jnp.log1p(-alpha1))  # flat in beta1 on (0, 1 - alpha1)
    first = jnp.asarray(sigma1, y.dtype)

    def step(sigma_prev, y_prev):
        s = jnp.sqrt(alpha0 + alpha1 * (y_prev - mu) ** 2 + beta1 * sigma_prev**2)
        return s, s

    _, rest = jax.lax.scan(step, first, y[:-1])
    sigma = jnp.concatenate([first[None], rest])
    numpyro.sample("y", dist.Normal(mu, sigma).to_event(1), obs=y)


def kidscore_momhsiq(N, kid_score, mom_hs, mom_iq, **unused):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    beta = numpyro.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (3,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    mu = beta[0] + beta[1] * jnp.asarray(mom_hs) + beta[2] * jnp.asarray(mom_iq)
    numpyro.sample("kid_score", dist.Normal(mu, sigma).to_event(1), obs=jnp.asarray(kid_score))


def low_dim_gauss_mix(N, y):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    y = jnp.asarray(y)
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.ordered_vector, (), (2,)))
    numpyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum())
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    one = jnp.log(theta) + dist.Normal(mu[0], sigma[0]).log_prob(y)
    two = jnp.log1p(-theta) + dist.Normal(mu[1], sigma[1]).log_prob(y)
    numpyro.factor("y", jax.nn.logsumexp(jnp.stack([one, two]), axis=0).sum())


# name -> (posteriordb posterior, NumPyro model)
MODELS = {
    "arK": ("arK-arK", ark),
    "eight_schools_centered": ("eight_schools-eight_schools_centered", eight_schools_centered),
    "eight_schools_noncentered": (
        "eight_schools-eight_schools_noncentered",
        eight_schools_noncentered,
    ),
    "garch11": ("garch-garch11", garch11),
    "kidiq_momhsiq": ("kidiq-kidscore_momhsiq", kidscore_momhsiq),
    "low_dim_gauss_mix": ("low_dim_gauss_mix-low_dim_gauss_mix", low_dim_gauss_mix),
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
    p.add_argument("--seed", type=int, default=0, help="seed of the first call")
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="compiled (repeated) calls per model after the first, seeds seed+1 .. seed+seeds",
    )
    p.add_argument(
        "--max-foreign", type=float, default=0.3, help="cores others may use (Contention)"
    )
    p.add_argument(
        "--max-wait", type=float, default=600.0, help="seconds to wait for a quiet machine"
    )
    p.add_argument("--out", default=str(_common.RESULTS / "nuts.json"))
    return p.parse_args(argv)


# --- one call of each side ---------------------------------------------------------------------


class CompileCounter:
    """XLA compilations (count and seconds) that JAX reports while a block runs."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        import jax

        self.count, self.seconds, self.active = 0, 0.0, False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if self.active and event == self.EVENT:
            self.count += 1
            self.seconds += duration

    def __enter__(self):
        self.count, self.seconds, self.active = 0, 0.0, True
        return self

    def __exit__(self, *exc):
        self.active = False
        return False


def timed(fn, counter: CompileCounter):
    """``(fn(), {"wall_s", "cpu_s", "compiles", "compile_s"})``, warnings silenced (both
    sides alike) so that no printing enters the timer."""
    with warnings.catch_warnings(), counter:
        warnings.simplefilter("ignore")
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return out, {
        "wall_s": wall,
        "cpu_s": cpu,
        "compiles": counter.count,
        "compile_s": counter.seconds,
    }


def call_ours(model, data, key, args):
    import numpyro_ebm as ne

    return ne.sample(
        model,
        "nuts",
        key=key,
        num_chains=args.num_chains,
        num_samples=args.num_samples,
        num_warmup=args.num_warmup,
        model_kwargs=data,
    )


def call_numpyro(mcmc, data, key):
    """NumPyro as its API reads: ``mcmc.run`` again on the one MCMC object of the model, until
    the draws are on the host."""
    import jax

    mcmc.run(key, extra_fields=NUMPYRO_FIELDS, **data)
    samples = jax.device_get(mcmc.get_samples(group_by_chain=True))
    extra = jax.device_get(mcmc.get_extra_fields(group_by_chain=True))
    return samples, extra


def numpyro_jitted(mcmc, data):
    """The same ``mcmc.run`` traced inside one ``jax.jit`` function of the key (the pattern of
    MCMC's docstring, there under ``pmap``): compiled in its first call, reused after."""
    import jax

    @jax.jit
    def run(key):
        mcmc.run(key, extra_fields=NUMPYRO_FIELDS, **data)
        return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)

    return lambda key: jax.device_get(run(key))


def numpyro_idata(samples, extra):
    """NumPyro's draws and statistics in the layout of ours (outside the timer), so that one
    diagnostics function reads both."""
    import numpy as np

    from numpyro_ebm import _arviz

    stats = {
        "diverging": np.asarray(extra["diverging"], bool),
        "num_grad_evals": np.asarray(extra["num_steps"]),
        "energy": np.asarray(extra["energy"]),
        "potential_energy": np.asarray(extra["potential_energy"]),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "step_size": np.asarray(extra["adapt_state.step_size"]),
    }
    posterior = {k: np.asarray(v) for k, v in samples.items()}
    return _arviz.from_dict({"posterior": posterior, "sample_stats": stats})


# --- what one run gives ------------------------------------------------------------------------


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


def run_row(idata, timing: dict, reference: dict, keep_per_quantity: bool) -> dict:
    """Cost, mixing and accuracy of one run (diagnostics by ``mixing_report``, for both)."""
    import numpy as np

    import numpyro_ebm as ne
    from numpyro_ebm import _arviz

    report = ne.mixing_report(idata, display=False)
    stats = _arviz.group(idata, "sample_stats")
    grads = int(np.asarray(stats["num_grad_evals"].values).sum())
    min_ess = float(report.table["ess_bulk"].min())
    max_rhat = float(report.table["rhat"].max())
    acc = accuracy(report.table, reference)
    if not keep_per_quantity:
        acc.pop("per_quantity")
    mixed = report.divergences == 0 and report.nonfinite_chains == 0 and max_rhat <= RHAT_THRESHOLD
    return {
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in timing.items()},
        "variables": sorted(_arviz.group(idata, "posterior").data_vars),
        "min_ess_bulk": min_ess,
        "min_ess_tail": float(report.table["ess_tail"].min()),
        "grad_evals": grads,
        "ess_per_s": min_ess / timing["wall_s"],
        "ess_per_cpu_s": min_ess / timing["cpu_s"],
        "ess_per_1k_grads": 1000.0 * min_ess / grads,
        "max_rhat": max_rhat,
        "divergences": int(report.divergences),
        "nonfinite_chains": int(report.nonfinite_chains),
        "min_bfmi": min(report.bfmi) if report.bfmi else None,
        "mixed": bool(mixed),
        "accuracy": acc,
    }


# --- one model ----------------------------------------------------------------------------------


def spread(values) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "n": len(values),
    }


def verdict(ours_unmixed: int, clean_ratios: list[float]) -> str:
    """Whether the compiled ESS/s ratios make ours faster: never with an unmixed run of ours,
    and only when every clean seed's ratio lies on the same side of 1."""
    if ours_unmixed:
        return "no claim: ours did not mix in every run"
    if len(clean_ratios) < 2:
        return "no claim: fewer than 2 seeds where both mixed"
    if min(clean_ratios) > 1:
        return "faster"
    if max(clean_ratios) < 1:
        return "slower"
    return "within spread"


def prepare_data(data: dict) -> dict:
    """The model's data as arrays built once (NumPyro's cache is keyed by their identity);
    integers stay Python integers (shapes)."""
    import numpy as np

    out = {}
    for k, v in data.items():
        if isinstance(v, list):
            a = np.asarray(v)
            out[k] = a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int32)
        else:
            out[k] = v
    return out


def run_model(index: int, key_name: str, pdb: Path, args, counter: CompileCounter) -> dict:
    """The first call of each side (first result), then ``--seeds`` compiled calls, the order
    alternating; per call every side's row and the ratios ours / each NumPyro way."""
    import jax
    from numpyro.infer import MCMC, NUTS

    posterior, model = MODELS[key_name]
    spec = json.loads((pdb / f"{posterior}.json").read_text())
    data = prepare_data(spec["data"])
    reference = spec["reference"]

    def new_mcmc():
        return MCMC(
            NUTS(model),
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            num_chains=args.num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )

    mcmc_run, jitted = new_mcmc(), numpyro_jitted(new_mcmc(), data)
    runners = {
        "ours": lambda key: call_ours(model, data, key, args),
        "numpyro_run": lambda key: call_numpyro(mcmc_run, data, key),
        "numpyro_jit": jitted,
    }
    calls = []
    for call in range(args.seeds + 1):
        seed = args.seed + call
        key = jax.random.PRNGKey(seed)
        order = SIDES if (index + call) % 2 == 0 else SIDES[::-1]
        rows = {}
        for side in order:
            out, timing = timed(lambda side=side, key=key: runners[side](key), counter)
            idata = out if side == "ours" else numpyro_idata(*out)
            rows[side] = run_row(idata, timing, reference, keep_per_quantity=call == 0)
        ours = rows["ours"]
        calls.append(
            {
                "call": call,
                "kind": "first" if call == 0 else "compiled",
                "seed": seed,
                "order": list(order),
                **{
                    f"ratio_vs_{way}": {
                        "both_mixed": ours["mixed"] and rows[way]["mixed"],
                        "ess_per_s": ours["ess_per_s"] / rows[way]["ess_per_s"],
                        "ess_per_cpu_s": ours["ess_per_cpu_s"] / rows[way]["ess_per_cpu_s"],
                        "ess_per_1k_grads": ours["ess_per_1k_grads"]
                        / rows[way]["ess_per_1k_grads"],
                        "min_ess_bulk": ours["min_ess_bulk"] / rows[way]["min_ess_bulk"],
                        "wall_theirs_over_ours": rows[way]["wall_s"] / ours["wall_s"],
                        "cpu_theirs_over_ours": rows[way]["cpu_s"] / ours["cpu_s"],
                    }
                    for way in NUMPYRO_WAYS
                },
                **rows,
            }
        )
    return summarize_model(posterior, spec, calls)


RATIO_KEYS = (
    "ess_per_s",
    "ess_per_cpu_s",
    "ess_per_1k_grads",
    "min_ess_bulk",
    "wall_theirs_over_ours",
    "cpu_theirs_over_ours",
)


def summarize_model(posterior: str, spec: dict, calls: list[dict]) -> dict:
    first, compiled = calls[0], calls[1:]
    sides = {}
    for side in SIDES:
        runs = [c[side] for c in calls]
        sides[side] = {
            "first_result": {
                k: first[side][k]
                for k in ("wall_s", "cpu_s", "compiles", "compile_s", "ess_per_s", "ess_per_cpu_s")
            },
            "compiled": {
                k: spread(c[side][k] for c in compiled)
                for k in ("ess_per_s", "ess_per_cpu_s", "wall_s", "cpu_s", "compiles", "compile_s")
            },
            "ess_per_1k_grads": spread(r["ess_per_1k_grads"] for r in runs),
            "min_ess_bulk": spread(r["min_ess_bulk"] for r in runs),
            "divergences": [r["divergences"] for r in runs],
            "max_rhat": [r["max_rhat"] for r in runs],
            "max_std_mean_error": [r["accuracy"]["max_std_mean_error"] for r in runs],
            "max_std_sd_error": [r["accuracy"]["max_std_sd_error"] for r in runs],
            "max_z": [r["accuracy"]["max_z"] for r in runs],
            "unmixed_runs": sum(not r["mixed"] for r in runs),
            "runs": len(runs),
        }
    versus = {}
    for way in NUMPYRO_WAYS:
        name = f"ratio_vs_{way}"
        clean = [c[name] for c in compiled if c[name]["both_mixed"]]
        versus[way] = {
            # compiled calls where both mixed: median, range, n
            "compiled": {k: spread(r[k] for r in clean) for k in RATIO_KEYS},
            "compiled_all_seeds": {k: spread(c[name][k] for c in compiled) for k in RATIO_KEYS},
            # one call each, compilation included
            "first_result": first[name],
            "clean_seeds": len(clean),
            "verdict": verdict(sides["ours"]["unmixed_runs"], [r["ess_per_s"] for r in clean]),
        }
    headline = versus[HEADLINE]["compiled"]["ess_per_s"]
    return {
        "posterior": posterior,
        "stan_parameters": spec["stan_parameters"],
        "calls": calls,
        "sides": sides,
        "versus": versus,
        "verdict": versus[HEADLINE]["verdict"],
        # md_gpu reads this: the compiled ESS/s ratio against NumPyro's compiled program
        "ratio_ours_over_numpyro": {"ess_per_s": (headline or {}).get("median")},
    }


def summarize(models: dict) -> dict:
    """Per NumPyro way, over the models whose verdict is a claim either way: the compiled ESS/s
    medians and the lowest and highest seed; the first-result ratios of the models whose first
    calls mixed on both sides."""
    out = {}
    for way in NUMPYRO_WAYS:
        v = {n: m["versus"][way] for n, m in models.items()}
        claim = {n: r for n, r in v.items() if not r["verdict"].startswith("no claim")}
        first = {n: r["first_result"] for n, r in v.items() if r["first_result"]["both_mixed"]}
        out[way] = {
            "models_compared": sorted(claim),
            "models_without_claim": sorted(set(v) - set(claim)),
            "compiled_ess_per_s_model_medians": spread(
                r["compiled"]["ess_per_s"]["median"] for r in claim.values()
            ),
            "compiled_ess_per_s_seed_range": [
                min((r["compiled"]["ess_per_s"]["min"] for r in claim.values()), default=None),
                max((r["compiled"]["ess_per_s"]["max"] for r in claim.values()), default=None),
            ],
            "first_result_ess_per_s": spread(r["ess_per_s"] for r in first.values()),
            "first_result_models": sorted(first),
            "verdicts": {n: r["verdict"] for n, r in v.items()},
        }
    return out


def progress_line(name: str, r: dict, guard, seconds: float) -> str:
    sides, line = r["sides"], [f"{name} ({seconds:.0f} s, others {guard.foreign_cores:.2f} cores)"]
    for side in SIDES:
        s = sides[side]
        line.append(
            f"  {side}: compiled ESS/s {s['compiled']['ess_per_s']['median']:.4g}, first result "
            f"{s['first_result']['ess_per_s']:.4g}, divergences {s['divergences']}, max R-hat "
            f"{max(s['max_rhat']):.3f}"
        )
    for way, v in r["versus"].items():
        c = v["compiled"]["ess_per_s"]
        span = f"{c['median']:.3g} [{c['min']:.3g}, {c['max']:.3g}] n={c['n']}" if c else "n/a"
        line.append(
            f"  ours / {way}: compiled {span}, first result {v['first_result']['ess_per_s']:.3g}; "
            f"{v['verdict']}"
        )
    return "\n".join(line)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    pdb = Path(args.posteriordb_dir)
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        sys.exit(f"error: unknown models {unknown}; known: {list(MODELS)}")
    missing = [MODELS[m][0] for m in names if not (pdb / f"{MODELS[m][0]}.json").is_file()]
    if missing:
        sys.exit(f"error: {missing} not found in {pdb} (pass --posteriordb-dir)")
    if args.seeds < 1:
        sys.exit("error: --seeds must be at least 1 (the compiled calls)")

    import jax
    import jax.numpy as jnp
    import numpyro.infer  # noqa: F401  (imports outside every timer)

    import numpyro_ebm  # noqa: F401

    # the JAX runtime's own start (backend, first compilation) is paid before any timer
    jax.jit(lambda x: x + 1)(jnp.ones(2)).block_until_ready()
    counter = CompileCounter()
    result = {
        "benchmark": "nuts",
        "layout": 2,
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "command": " ".join(["python benchmarks/bench_nuts.py", *argv]),
        "git": _common.git_revision(),
        "config": {
            "num_chains": args.num_chains,
            "num_samples": args.num_samples,
            "num_warmup": args.num_warmup,
            "seed": args.seed,
            "seeds": args.seeds,
            "rhat_threshold": RHAT_THRESHOLD,
            "x64": bool(jax.config.jax_enable_x64),
            "numpyro_chain_method": "vectorized",
            "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,
            "cpu_async_dispatch": jax.config.values.get("jax_cpu_enable_async_dispatch"),
        },
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
        "models": {},
    }
    with _common.Contention(args.max_foreign, args.max_wait) as whole:
        for index, name in enumerate(names):
            t0 = time.perf_counter()
            with _common.Contention(args.max_foreign, args.max_wait) as guard:
                r = run_model(index, name, pdb, args, counter)
            r["contention"] = guard.record()
            result["models"][name] = r
            print(progress_line(name, r, guard, time.perf_counter() - t0), file=sys.stderr)
    result["contention"] = whole.record()
    result["contaminated_models"] = [
        n for n, m in result["models"].items() if m["contention"]["contaminated"]
    ]
    result["summary"] = summarize(result["models"])
    result["peak_rss_mib"] = _common.peak_rss_mib()
    _common.write_json(Path(args.out), result)
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
