r"""Compare samplers on a hierarchical NumPyro model with an energy-based prior term.

The eight-schools model (Rubin 1981; Gelman et al. 2013, sec. 5.5) in its non-centered form,

.. math::

    \mu \sim \mathcal{N}(0, 5^2), \quad \tau \sim \text{HalfCauchy}(5), \quad
    \tilde\theta_j \sim \mathcal{N}(0, 1), \quad \theta_j = \mu + \tau \tilde\theta_j, \quad
    y_j \sim \mathcal{N}(\theta_j, \sigma_j^2),

gets one more prior term through ``ne.energy_factor``: a Markov-random-field energy on the
school effects, a pseudo-Huber *fusion* penalty over all pairs (a smooth total-variation prior
in the spirit of the fused lasso, Tibshirani et al. 2005),

.. math::

    E(\theta) = \lambda \sum_{i < j} c \left(\sqrt{1 + (\theta_i - \theta_j)^2 / c^2} - 1
    \right), \qquad \lambda = 0.01,\ c = 2,

quadratic for differences below :math:`c` and linear above, so it pulls similar schools
together without shrinking the outlying ones as hard as a Gaussian would. The posterior
(funnel-shaped in :math:`\tau`) is then sampled by ``ne.compare`` with ``nuts``, ``hmc``,
``mala``, ``parallel_tempering`` and NumPyro's own NUTS (``numpyro_nuts``), the reference for
the accuracy columns, all with the same key, chains, warm-up and draws (``--smoke``: ``mala``
and ``hmc`` only, ``hmc`` the reference).

Only the samplers whose chains mixed are ranked (``mixed``, ``reason``: R-hat at most 1.01,
no divergence, no non-finite chain, means within 4 Monte Carlo standard errors of the
reference); a run shorter than the timer's floor gets no ESS per second.

Writes ``comparison.csv``, one netCDF file per sampler, ``ess_per_second.png`` (samplers that
did not mix in grey), ArviZ trace and rank plots ``trace_<sampler>.png``,
``rank_<sampler>.png`` and ``posterior_tau.png`` to ``--out``, and prints the table and what
it means.

Run: ``python examples/compare_samplers.py [--smoke] [--out DIR] [--seed N]``.

References
----------
D. B. Rubin (1981). Estimation in parallel randomized experiments. J. Educational Statistics 6.
A. Gelman, J. B. Carlin, H. S. Stern, D. B. Dunson, A. Vehtari and D. B. Rubin (2013). Bayesian
Data Analysis, 3rd ed. CRC Press.
R. Tibshirani, M. Saunders, S. Rosset, J. Zhu and K. Knight (2005). Sparsity and smoothness
via the fused lasso. JRSS B 67(1).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # first: XLA flags for --smoke and the Agg canvas, before JAX and pyplot

# isort: split

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist

import numpyro_ebm as ne

NAME = "compare_samplers"
SAMPLERS = ("nuts", "hmc", "mala", "parallel_tempering", "numpyro_nuts")
REFERENCE = "numpyro_nuts"
# --smoke compiles two samplers only: compilation, not sampling, is most of a small run
SMOKE_SAMPLERS = ("mala", "hmc")
SMOKE_REFERENCE = "hmc"
# The eight schools (Rubin 1981): estimated coaching effects and their standard errors.
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32)
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32)
FUSION_WEIGHT = 0.01
FUSION_SCALE = 2.0


class Config(NamedTuple):
    num_chains: int
    num_warmup: int
    num_samples: int


FULL = Config(num_chains=4, num_warmup=1000, num_samples=1000)
SMOKE = Config(num_chains=2, num_warmup=50, num_samples=50)


def fusion_energy(theta: jax.Array) -> jax.Array:
    r"""The pseudo-Huber fusion energy
    :math:`\lambda \sum_{i<j} c(\sqrt{1 + (\theta_i - \theta_j)^2/c^2} - 1)`."""
    diff = theta[:, None] - theta[None, :]
    pairs = FUSION_SCALE * (jnp.sqrt(1.0 + (diff / FUSION_SCALE) ** 2) - 1.0)
    return FUSION_WEIGHT * 0.5 * jnp.sum(pairs)  # each pair appears twice in the matrix


def model(sigma, y=None):
    """Non-centered eight schools with the fusion energy as an extra prior factor."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", sigma.shape[0]):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
    theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
    ne.energy_factor("fusion", fusion_energy, theta)
    with numpyro.plate("schools_obs", sigma.shape[0]):
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def plot_tau(path: Path, comparison) -> None:
    """Posterior densities of log tau per sampler (histograms over all chains)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(-6, 4, 61)
    for name, data in comparison.idata.items():
        tau = np.asarray(data.posterior["tau"]).ravel()
        ax.hist(np.log(tau), bins=bins, density=True, histtype="step", lw=1.5, label=name)
    ax.set(xlabel="log tau", ylabel="density", title="eight schools + fusion energy: log tau")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    samplers, reference = (SMOKE_SAMPLERS, SMOKE_REFERENCE) if args.smoke else (SAMPLERS, REFERENCE)
    started = time.perf_counter()
    comparison = ne.compare(
        model,
        samplers,
        key=jax.random.key(args.seed),
        reference=reference,
        num_chains=config.num_chains,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        model_args=(jnp.asarray(SIGMA),),
        model_kwargs={"y": jnp.asarray(Y)},
        var_names=["mu", "tau", "theta_tilde"],
    )
    seconds = time.perf_counter() - started
    comparison.save(args.out)
    comparison.plot(args.out)
    plot_tau(args.out / "posterior_tau.png", comparison)

    table = comparison.table
    theta = {
        name: np.asarray(data.posterior["theta"]).reshape(-1, Y.size).mean(0).round(2).tolist()
        for name, data in comparison.idata.items()
    }
    metrics = {"seconds": seconds, "table": json.loads(table.to_json(orient="index"))} | {
        "theta_posterior_mean": theta
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(
        f"compare_samplers ({'smoke' if args.smoke else 'full'} size): eight schools + fusion "
        f"energy, {config.num_chains} chains x {config.num_samples} draws after "
        f"{config.num_warmup} warm-up, {seconds:.1f} s in all"
    )
    columns = [
        c
        for c in (
            "wall_s",
            "compile_s",
            "grad_evals",
            "max_rhat",
            "min_ess_bulk",
            "ess_per_s",
            "ess_per_1k_grads",
            "divergences",
            "mean_error",
            "sd_error",
            "mean_z",
            "mixed",
        )
        if c in table.columns
    ]
    print(table[columns].to_string(float_format=lambda v: f"{v:.3g}"))
    for label, reason in table["reason"].items():
        if reason:
            print(f"{label}: {reason}")
    for note in comparison.notes:
        print(f"* {note}")
    print(f"posterior mean of theta ({reference}): {theta[reference]}")
    print(f"outputs in {args.out}")
    return metrics


if __name__ == "__main__":
    main()
