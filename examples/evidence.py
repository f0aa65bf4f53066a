r"""A Bayes factor with its error bar: the evidence of two NumPyro models by AIS and SMC.

Two explanations of the same data :math:`y_{1..n}`:

.. math::

    M_1:\ \sigma^2 \sim \text{InverseGamma}(a, b),\ y_i \sim \mathcal{N}(0, \sigma^2);
    \qquad
    M_2:\ \mu \sim \mathcal{N}(0, \tau^2),\ y_i \sim \mathcal{N}(\mu, 1).

Both are conjugate, so the evidences are closed-form: for :math:`M_1`, with
:math:`S = \sum y_i^2`, :math:`p(y) = (2\pi)^{-n/2} \frac{b^a}{\Gamma(a)}
\frac{\Gamma(a + n/2)}{(b + S/2)^{a + n/2}}`; for :math:`M_2`,
:math:`y \sim \mathcal{N}(0, I + \tau^2 \mathbf{1}\mathbf{1}^\top)`. The log Bayes factor
:math:`\log p(y \mid M_1) - \log p(y \mid M_2)` is estimated by
``numpyro_ebm.evidence.ais.model_ais`` and ``numpyro_ebm.evidence.smc.model_smc`` on each
model's unconstrained space (:math:`\log \sigma^2` for :math:`M_1`, whose posterior is not
Gaussian there), the error bar :math:`\sqrt{\mathrm{se}_1^2 + \mathrm{se}_2^2}` from the two
independent estimates.

Writes ``bayes_factor.png`` and ``metrics.json`` to ``--out`` and prints the table.

Run: ``python examples/evidence.py [--smoke] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # first: XLA flags for --smoke and the Agg canvas, before JAX and pyplot

# isort: split

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import gammaln

from numpyro_ebm.evidence.ais import model_ais
from numpyro_ebm.evidence.smc import model_smc

A, B, TAU = 3.0, 2.0, 2.0


def variance_model(y):
    variance = numpyro.sample("variance", dist.InverseGamma(A, B))
    numpyro.sample("y", dist.Normal(0.0, jnp.sqrt(variance)), obs=y)


def mean_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, TAU))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def log_evidence_variance(y) -> float:
    n, s = y.shape[0], float(jnp.sum(y**2))
    return (
        -0.5 * n * math.log(2 * math.pi) + A * math.log(B) - float(gammaln(A))
        + float(gammaln(A + n / 2)) - (A + n / 2) * math.log(B + s / 2)
    )


def log_evidence_mean(y) -> float:
    n = y.shape[0]
    covariance = jnp.eye(n) + TAU**2 * jnp.ones((n, n))
    return float(jax.scipy.stats.multivariate_normal.logpdf(y, jnp.zeros(n), covariance))


def main(argv=None) -> dict:
    args = _setup.parse_args("evidence", __doc__, argv)
    size = {"num_particles": 64, "num_steps": 20} if args.smoke else {"num_particles": 512}
    smc_size = {"num_particles": 64} if args.smoke else {"num_particles": 512}
    key = jax.random.key(args.seed)
    data_key, *keys = jax.random.split(key, 5)
    y = 0.4 + 1.2 * jax.random.normal(data_key, (30,))
    truth = log_evidence_variance(y) - log_evidence_mean(y)

    rows = {}
    for name, estimate in (
        ("ais", lambda k, m: model_ais(k, m, y, **size)[0]),
        ("smc", lambda k, m: model_smc(k, m, y, **smc_size)),
    ):
        first = estimate(keys.pop(), variance_model)
        second = estimate(keys.pop(), mean_model)
        log_bf = float(first.log_normalizer - second.log_normalizer)
        error = math.hypot(float(first.standard_error), float(second.standard_error))
        rows[name] = {
            "log_evidence_m1": float(first.log_normalizer),
            "log_evidence_m2": float(second.log_normalizer),
            "log_bayes_factor": log_bf,
            "standard_error": error,
            "num_grad_evals": int(first.num_grad_evals + second.num_grad_evals),
        }
    metrics = {
        "closed_form": {
            "log_evidence_m1": log_evidence_variance(y),
            "log_evidence_m2": log_evidence_mean(y),
            "log_bayes_factor": truth,
        },
        "estimates": rows,
        "smoke": args.smoke,
    }
    print(f"log Bayes factor M1 vs M2, closed form: {truth:.4f}")
    for name, row in rows.items():
        z = (row["log_bayes_factor"] - truth) / max(row["standard_error"], 1e-12)
        print(
            f"  {name}: {row['log_bayes_factor']:.4f} ± {row['standard_error']:.4f} "
            f"({z:+.2f} standard errors from the closed form, {row['num_grad_evals']} gradients)"
        )

    figure, axis = plt.subplots(figsize=(4.5, 3))
    for i, (name, row) in enumerate(rows.items()):
        axis.errorbar(i, row["log_bayes_factor"], yerr=2 * row["standard_error"], fmt="o",
                      capsize=4, label=f"{name} ± 2 se")
    axis.axhline(truth, color="k", lw=1, ls="--", label="closed form")
    axis.set_xticks(range(len(rows)), list(rows))
    axis.set_ylabel("log Bayes factor (M1 vs M2)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out / "bayes_factor.png", dpi=120)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
