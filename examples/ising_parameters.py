r"""Inferring the inverse temperature and field of an Ising lattice from observed
configurations: the exchange algorithm against calibrated pseudo-likelihood, both against the
exact posterior.

Configurations :math:`x_1, \dots, x_n` of a periodic :math:`L \times L` lattice are drawn
exactly (coupling from the past) at :math:`(\beta_\star, h_\star)` from

.. math::

    p(x \mid \beta, h) = \exp\Big(\beta \sum_{\langle ij \rangle} x_i x_j
    + \beta h \sum_i x_i\Big) \Big/ Z(\beta, h),

and the model puts :math:`\beta \sim \mathcal U(0, 0.4)`, :math:`h \sim \mathcal N(0, 0.5)`
on the parameters: the prior keeps :math:`\beta` below the critical point
:math:`\beta_c \approx 0.44`, where coupling from the past coalesces within tens of sweeps
(from the ordered phase a draw can take thousands, and every exchange proposal needs
:math:`n` of them). :math:`Z(\beta, h)` depends on both: the posterior is doubly intractable, and
``ne.sample(model, "nuts")`` refuses it. Two samplers run it, 4 chains each:

* ``ne.samplers.exchange()``: random-walk proposals accepted by the exchange algorithm, each
  with :math:`n` auxiliary configurations drawn exactly by coupling from the past (exact MCMC);
* ``ne.samplers.pseudo_likelihood()``: NUTS on Besag's pseudo-posterior, mapped onto the true
  posterior's mode and curvature, estimated from exact draws at the pseudo-posterior's mode.

The exact posterior comes from the transfer matrix (:math:`\log Z(\beta, h)` on a grid of the
posterior's region, :func:`numpyro_ebm.evidence.exact.transfer_matrix_log_partition`). Each
sampler is judged on the posterior means and sds (errors in exact posterior sds), its 90 %
intervals covering :math:`(\beta_\star, h_\star)`, R-hat, ESS per second of the compiled run
(each run twice, the second timed). Then the coverage of both samplers' 90 % intervals over
``num_datasets`` data sets drawn afresh at the truth, by shorter runs (``coverage_chains``
chains of ``coverage_samples`` draws): a calibrated posterior covers about 90 % of the time
(each data set compiles its own programs, which is what the coverage study costs).

Figures: ``posterior.png`` (the exact posterior's contours with both samplers' draws, and the
marginals) and ``coverage.png``; ``metrics.json``.

Run: ``python examples/ising_parameters.py [--smoke] [--out DIR] [--seed N]``.

References
----------
I. Murray, Z. Ghahramani and D. J. C. MacKay (2006). MCMC for doubly-intractable
distributions. UAI.
J. Stoehr and N. Friel (2015). Calibration of conditional composite likelihood for Bayesian
inference on Gibbs random fields. AISTATS.
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
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.special import logsumexp

import numpyro_ebm as ne
from numpyro_ebm import _arviz
from numpyro_ebm.evidence.exact import transfer_matrix_log_partition
from numpyro_ebm.kernels.cftp import ising_cftp
from numpyro_ebm.models.ising import Ising

NAME = "ising_parameters"
NAMES = ("beta", "h")
BETA_MAX = 0.4


class Config(NamedTuple):
    L: int
    beta: float
    h: float
    num_observed: int
    num_chains: int
    num_warmup: int
    num_samples: int
    num_datasets: int
    coverage_chains: int
    coverage_samples: int
    grid: int


FULL = Config(8, 0.3, 0.1, 10, 4, 500, 1000, 10, 2, 500, 60)
SMOKE = Config(4, 0.3, 0.1, 10, 2, 100, 200, 1, 2, 100, 25)


def model(x):
    beta = numpyro.sample("beta", dist.Uniform(0.0, BETA_MAX))
    h = numpyro.sample("h", dist.Normal(0.0, 0.5))
    with numpyro.plate("n", x.shape[0]):
        energy = Ising(x.shape[-1], h=h).energy
        site = ne.DiscreteEnergyDistribution(energy, x.shape[1:], temperature=1 / beta)
        numpyro.sample("x", site, obs=x)


def observe(key, config) -> jax.Array:
    """``num_observed`` exact draws at the truth, by coupling from the past."""
    spins, coalesced, _ = jax.vmap(
        lambda k: ising_cftp(k, (config.L, config.L), config.beta, config.beta * config.h)
    )(jax.random.split(key, config.num_observed))
    assert bool(coalesced.all())
    return spins


def exact_posterior(x, config) -> dict:
    """The posterior on a ``grid x grid`` box around its bulk: log Z(beta, h) by the transfer
    matrix, the box from a coarse grid first (where the density is above e^-12 of its peak)."""
    xs = np.asarray(x, np.float64)
    pairs = -float(np.asarray(jax.vmap(Ising(config.L).energy)(x), np.float64).sum())
    magnet = float(xs.sum())

    def log_post(betas, hs):
        log_z = np.array(
            [[transfer_matrix_log_partition(config.L, config.L, b, h=h) for h in hs] for b in betas]
        )
        return (
            betas[:, None] * (pairs + hs[None] * magnet)
            - len(xs) * log_z
            - hs[None] ** 2 / (2 * 0.5**2)
        )

    betas, hs = np.linspace(0.005, BETA_MAX - 0.005, 25), np.linspace(-1.5, 1.5, 25)
    coarse = log_post(betas, hs)
    inside = np.argwhere(coarse > coarse.max() - 12)
    low, high = inside.min(0) - 1, inside.max(0) + 1
    betas = np.linspace(betas[max(low[0], 0)], betas[min(high[0], 24)], config.grid)
    hs = np.linspace(hs[max(low[1], 0)], hs[min(high[1], 24)], config.grid)
    fine = log_post(betas, hs)
    weights = np.exp(fine - logsumexp(fine))
    grids = {"beta": betas[:, None], "h": hs[None, :]}
    moments = {}
    for name, grid in grids.items():
        mean = float((weights * grid).sum())
        moments[name] = {"mean": mean, "sd": float(np.sqrt((weights * (grid - mean) ** 2).sum()))}
    return {"betas": betas, "hs": hs, "weights": weights, "moments": moments}


def samplers(num_chains: int, num_samples: int, num_warmup: int) -> dict:
    size = {"num_warmup": num_warmup, "num_samples": num_samples, "num_chains": num_chains}

    def run(sampler):
        return lambda key, x: ne.sample(model, sampler, key=key, model_args=(x,), **size)

    return {
        "exchange": run(ne.samplers.exchange()),
        "pseudo_likelihood": run(ne.samplers.pseudo_likelihood()),
    }


def intervals(result) -> dict:
    posterior = _arviz.group(result, "posterior")
    return {
        name: [float(q) for q in np.quantile(posterior[name].values, [0.05, 0.95])]
        for name in NAMES
    }


def judge(result, seconds: float, exact: dict, config) -> dict:
    posterior = _arviz.group(result, "posterior")
    table = ne.mixing_report(result, var_names=list(NAMES), display=False).table
    truth = {"beta": config.beta, "h": config.h}
    row = {"seconds": seconds, "max_rhat": float(table["rhat"].max())}
    for name, (low, high) in intervals(result).items():
        draws = posterior[name].values
        moments = exact["moments"][name]
        row[name] = {
            "mean": float(draws.mean()),
            "sd": float(draws.std()),
            "mean_error_in_sd": (float(draws.mean()) - moments["mean"]) / moments["sd"],
            "sd_ratio": float(draws.std()) / moments["sd"],
            "ess_bulk": float(table.loc[name, "ess_bulk"]),
            "ess_per_s": float(table.loc[name, "ess_bulk"]) / seconds,
            "interval_90": [low, high],
            "covers_truth": bool(low <= truth[name] <= high),
        }
    return row


def plot_posterior(path: Path, exact: dict, draws: dict, config) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    betas, hs = exact["betas"], exact["hs"]
    axes[0].contour(hs, betas, exact["weights"], levels=6, colors="k", linewidths=0.8)
    for name, values in draws.items():
        axes[0].scatter(values["h"][::10], values["beta"][::10], s=2, alpha=0.4, label=name)
    axes[0].plot(config.h, config.beta, "r*", ms=10, label="truth")
    axes[0].set_xlabel("h")
    axes[0].set_ylabel(r"$\beta$")
    axes[0].legend(fontsize=7)
    marginals = {"beta": exact["weights"].sum(1), "h": exact["weights"].sum(0)}
    for axis, name, grid in ((axes[1], "beta", betas), (axes[2], "h", hs)):
        density = marginals[name] / (marginals[name].sum() * (grid[1] - grid[0]))
        axis.plot(grid, density, "k-", lw=1.5, label="exact (transfer matrix)")
        for label, values in draws.items():
            axis.hist(values[name], bins=50, density=True, histtype="step", label=label)
        axis.axvline(getattr(config, name), color="r", ls="--", lw=1, label="truth")
        axis.set_xlabel(name)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_coverage(path: Path, covered: dict, config) -> None:
    fig, axis = plt.subplots(figsize=(5, 3.2))
    labels = [f"{s}\n{n}" for s in covered for n in NAMES]
    rates = [np.mean(covered[s][n]) for s in covered for n in NAMES]
    axis.bar(range(len(rates)), rates)
    axis.axhline(0.9, color="k", ls="--", lw=1, label="nominal 90 %")
    axis.set_xticks(range(len(rates)), labels, fontsize=7)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel(f"coverage over {config.num_datasets} data sets")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    key = jax.random.key(args.seed)
    x = observe(jax.random.fold_in(key, 0), config)
    exact = exact_posterior(x, config)
    runs = samplers(config.num_chains, config.num_samples, config.num_warmup)
    short = samplers(config.coverage_chains, config.coverage_samples, config.num_warmup)

    rows, draws = {}, {}
    for i, (name, run) in enumerate(runs.items()):
        run_key = jax.random.fold_in(key, i + 1)
        run(run_key, x)  # compiles
        started = time.perf_counter()
        result = run(run_key, x)
        seconds = time.perf_counter() - started
        rows[name] = judge(result, seconds, exact, config)
        posterior = _arviz.group(result, "posterior")
        draws[name] = {n: posterior[n].values.ravel() for n in NAMES}

    truth = {"beta": config.beta, "h": config.h}
    covered = {name: {n: [] for n in NAMES} for name in runs}
    for d in range(config.num_datasets):
        data_key = jax.random.fold_in(key, 100 + d)
        data = observe(data_key, config)
        for i, (name, run) in enumerate(short.items()):
            for n, (low, high) in intervals(run(jax.random.fold_in(data_key, i), data)).items():
                covered[name][n].append(bool(low <= truth[n] <= high))

    plot_posterior(args.out / "posterior.png", exact, draws, config)
    plot_coverage(args.out / "coverage.png", covered, config)
    metrics = {
        **config._asdict(),
        "exact": exact["moments"],
        "samplers": rows,
        "coverage_90": {
            name: {n: float(np.mean(c)) for n, c in found.items()}
            for name, found in covered.items()
        },
        "speedup_pseudo_likelihood_to_exchange": {
            n: rows["pseudo_likelihood"][n]["ess_per_s"] / rows["exchange"][n]["ess_per_s"]
            for n in NAMES
        },
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(
        f"ising_parameters ({'smoke' if args.smoke else 'full'} size): {config.L}x{config.L}, "
        f"{config.num_observed} configurations at beta={config.beta}, h={config.h}"
    )
    print(
        "exact posterior: "
        + ", ".join(f"{n} {m['mean']:.4f} (sd {m['sd']:.4f})" for n, m in exact["moments"].items())
    )
    print(f"{'sampler':18} {'s':>6} {'R-hat':>6} " + " ".join(
        f"{n + ' mean (err/sd)':>22} {n + ' sd ratio':>12} {n + ' ESS/s':>10}" for n in NAMES
    ))
    for name, row in rows.items():
        cells = " ".join(
            f"{row[n]['mean']:>12.4f} ({row[n]['mean_error_in_sd']:+.2f}) "
            f"{row[n]['sd_ratio']:12.3f} {row[n]['ess_per_s']:10.1f}"
            for n in NAMES
        )
        print(f"{name:18} {row['seconds']:6.1f} {row['max_rhat']:6.3f} {cells}")
    for name, rates in metrics["coverage_90"].items():
        print(
            f"coverage of the 90 % intervals over {config.num_datasets} data sets, {name}: "
            + ", ".join(f"{n} {r:.2f}" for n, r in rates.items())
        )
    return metrics


if __name__ == "__main__":
    main()
