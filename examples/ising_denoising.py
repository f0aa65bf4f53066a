r"""Image denoising with an Ising prior and an unknown noise level: Gibbs within HMC against
NumPyro's DiscreteHMCGibbs on one model.

A binary image :math:`s \in \{-1, +1\}^{L \times L}` (a disc and a bar) is observed with
Gaussian noise, :math:`y = s + \sigma_\star \varepsilon`. The model
(``ne.models.ising.denoising_model``; Geman & Geman 1984) puts the Ising prior
:math:`p(s) \propto e^{\beta \sum_{\langle ij \rangle} s_i s_j}` on the spins, a
:math:`\text{HalfNormal}(1)` prior on :math:`\sigma`, and :math:`y_i \sim \mathcal N(s_i,
\sigma^2)`: a posterior over :math:`L^2` discrete sites and one continuous one. Two samplers
run it, 4 chains each:

* ours, ``ne.samplers.hmc_gibbs(discrete=checkerboard(flip_ratio="curvature"),
  continuous="nuts")``: red-black heat-bath sweeps of the spins (the Gaussian likelihood is
  quadratic in each spin, so the flip log ratios take the curvature), then a NUTS move of
  :math:`\sigma`;
* NumPyro's ``DiscreteHMCGibbs(NUTS(model))``: a heat-bath sweep of the spins in a random
  order, one model evaluation per spin, then NUTS.

Both are judged by the same function (``ne.mixing_report``): R-hat, bulk ESS of :math:`\sigma`
and the median over pixels of the spins' bulk ESS, per second of the compiled run (each run
twice, the second timed). The posterior is judged against the truth: the posterior of
:math:`\sigma` should cover :math:`\sigma_\star`, and the pixels whose posterior
:math:`P(s_i = +1)` is on the wrong side of 1/2 are counted.

Figures: ``denoising.png`` (truth, observation, both posterior means of the spins) and
``sigma.png`` (both posteriors of :math:`\sigma` with :math:`\sigma_\star`); ``metrics.json``.

Run: ``python examples/ising_denoising.py [--smoke] [--out DIR] [--seed N]``.

References
----------
S. Geman and D. Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
restoration of images. IEEE TPAMI 6(6).
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
from numpyro.infer import MCMC, NUTS, DiscreteHMCGibbs

import numpyro_ebm as ne
from numpyro_ebm import _arviz
from numpyro_ebm.models.ising import Ising, denoising_model

NAME = "ising_denoising"


class Config(NamedTuple):
    L: int
    beta: float
    sigma: float
    num_chains: int
    num_warmup: int
    num_samples: int


FULL = Config(16, 0.4, 0.8, 4, 500, 1000)
SMOKE = Config(8, 0.4, 0.8, 2, 50, 100)


def truth_image(L: int) -> np.ndarray:
    """A disc and a horizontal bar, +1 on the shapes and -1 elsewhere."""
    rows, columns = np.mgrid[:L, :L] / L
    disc = (rows - 0.4) ** 2 + (columns - 0.4) ** 2 < 0.07
    bar = (rows > 0.75) & (rows < 0.9) & (columns > 0.15)
    return np.where(disc | bar, 1.0, -1.0)


def runners(model, y, config) -> dict:
    """name -> ``run(key) -> InferenceData`` of each sampler: ours through ``ne.sample`` (its
    programs are cached, so a second call compiles nothing), NumPyro's ``MCMC.run`` traced
    inside one ``jax.jit`` of the key (MCMC's own pattern; ``run`` alone compiles its loop in
    every call)."""
    sampler = ne.samplers.hmc_gibbs(
        discrete=ne.samplers.checkerboard(flip_ratio="curvature"), continuous="nuts"
    )
    size = {"num_warmup": config.num_warmup, "num_samples": config.num_samples}

    def ours(key):
        return ne.sample(
            model, sampler, key=key, model_args=(y,), num_chains=config.num_chains, **size
        )

    mcmc = MCMC(
        DiscreteHMCGibbs(NUTS(model)),
        num_chains=config.num_chains,
        chain_method=jax.vmap,  # DiscreteHMCGibbs refuses "vectorized"; vmap is the same
        progress_bar=False,
        **size,
    )

    @jax.jit
    def draws(key):
        mcmc.run(key, y)
        return mcmc.get_samples(group_by_chain=True)

    def numpyro(key):
        samples = jax.device_get(draws(key))
        return _arviz.from_dict({"posterior": {name: samples[name] for name in ("sigma", "s")}}, {})

    return {"hmc_gibbs": ours, "numpyro_discrete_hmc_gibbs": numpyro}


def judge(result, seconds: float, truth: np.ndarray, sigma: float) -> dict:
    posterior = _arviz.group(result, "posterior")
    report = ne.mixing_report(result, var_names=["sigma", "s"], display=False)
    table = report.table
    spins = table.loc[[name for name in table.index if name.startswith("s[")]]
    sigma_draws = posterior["sigma"].values.ravel()
    marginal = (posterior["s"].values > 0).mean((0, 1))
    low, high = np.quantile(sigma_draws, [0.05, 0.95])
    return {
        "seconds": seconds,
        "max_rhat": float(table["rhat"].max()),
        "ess_sigma": float(table.loc["sigma", "ess_bulk"]),
        "ess_spins_median": float(spins["ess_bulk"].median()),
        "ess_per_s_sigma": float(table.loc["sigma", "ess_bulk"]) / seconds,
        "ess_per_s_spins_median": float(spins["ess_bulk"].median()) / seconds,
        "sigma_mean": float(sigma_draws.mean()),
        "sigma_sd": float(sigma_draws.std()),
        "sigma_90": [float(low), float(high)],
        "sigma_covered": bool(low <= sigma <= high),
        "wrong_pixels": int(((marginal > 0.5) != (truth > 0)).sum()),
        "marginal": marginal.tolist(),
    }


def plot_images(path: Path, truth, y, rows: dict) -> None:
    fig, axes = plt.subplots(1, 2 + len(rows), figsize=(3 * (2 + len(rows)), 3.2))
    panels = [("truth", truth, (-1, 1)), ("observed y", y, None)]
    panels += [
        (f"{name}: P(s = +1)", np.asarray(row["marginal"]), (0, 1)) for name, row in rows.items()
    ]
    for axis, (title, image, limits) in zip(axes, panels, strict=True):
        vmin, vmax = limits if limits else (None, None)
        axis.imshow(image, cmap="gray", vmin=vmin, vmax=vmax)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_sigma(path: Path, draws: dict, sigma: float) -> None:
    fig, axis = plt.subplots(figsize=(5, 3.2))
    for name, values in draws.items():
        axis.hist(values, bins=40, density=True, histtype="step", label=name)
    axis.axvline(sigma, color="k", ls="--", lw=1, label=r"true $\sigma$")
    axis.set_xlabel(r"$\sigma$")
    axis.set_ylabel("posterior density")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    key = jax.random.key(args.seed)
    truth = truth_image(config.L)
    noise = np.asarray(jax.random.normal(jax.random.fold_in(key, 0), truth.shape))
    y = jnp.asarray(truth + config.sigma * noise, jnp.float32)
    model = denoising_model(Ising(config.L, beta=config.beta))

    rows, draws = {}, {}
    for i, (name, run) in enumerate(runners(model, y, config).items()):
        run_key = jax.random.fold_in(key, i + 1)
        run(run_key)  # compiles
        started = time.perf_counter()
        result = run(run_key)
        seconds = time.perf_counter() - started
        rows[name] = judge(result, seconds, truth, config.sigma)
        draws[name] = _arviz.group(result, "posterior")["sigma"].values.ravel()

    plot_images(args.out / "denoising.png", truth, np.asarray(y), rows)
    plot_sigma(args.out / "sigma.png", draws, config.sigma)
    ratio = {
        what: rows["hmc_gibbs"][what] / rows["numpyro_discrete_hmc_gibbs"][what]
        for what in ("ess_per_s_sigma", "ess_per_s_spins_median")
    }
    metrics = {
        "L": config.L,
        "beta": config.beta,
        "sigma_true": config.sigma,
        "num_chains": config.num_chains,
        "num_warmup": config.num_warmup,
        "num_samples": config.num_samples,
        "samplers": {
            name: {k: v for k, v in row.items() if k != "marginal"} for name, row in rows.items()
        },
        "ratio_ours_to_numpyro": ratio,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(f"ising_denoising ({'smoke' if args.smoke else 'full'} size), {config.L}x{config.L}:")
    print(
        f"{'sampler':28} {'s':>6} {'R-hat':>6} {'ESS/s sigma':>12} {'ESS/s spins':>12} "
        f"{'sigma (90%)':>20} {'wrong px':>9}"
    )
    for name, row in rows.items():
        interval = f"{row['sigma_mean']:.3f} [{row['sigma_90'][0]:.2f}, {row['sigma_90'][1]:.2f}]"
        print(
            f"{name:28} {row['seconds']:6.2f} {row['max_rhat']:6.3f} "
            f"{row['ess_per_s_sigma']:12.0f} {row['ess_per_s_spins_median']:12.0f} "
            f"{interval:>20} {row['wrong_pixels']:9d}"
        )
    print(
        f"ours / NumPyro, ESS per second: sigma {ratio['ess_per_s_sigma']:.2f}x, "
        f"spins (median pixel) {ratio['ess_per_s_spins_median']:.2f}x; true sigma "
        f"{config.sigma}"
    )
    return metrics


if __name__ == "__main__":
    main()
