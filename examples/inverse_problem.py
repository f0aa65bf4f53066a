r"""A learned energy as the prior of an inverse problem: inpainting noisy, half-hidden digits.

A digit :math:`x \in [0, 1]^{64}` is observed through a mask :math:`m \in \{0, 1\}^{64}` (by
default the bottom half of the image is hidden) and Gaussian noise,

.. math::

    y = m \odot x + \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, s^2 I),

and reconstructed from the posterior :math:`p(x \mid y) \propto p(x)\, \mathcal{N}(y;\ m \odot x,
s^2 I)` with a prior learned from the other digits: the noise-conditional energy
:math:`E_\theta(x, \sigma)` of ``ncsn_digits.py`` (NCSN, Song & Ermon 2019), trained here the
same way. Two posterior samplers:

* **NUTS** on a NumPyro model whose prior site is
  ``ne.EnergyDistribution(lambda x: E(x, sigma_prior), event_shape=(64,))``, i.e.
  :math:`p(x) \propto e^{-E_\theta(x, \sigma_p)}`, the data density blurred by noise of
  standard deviation :math:`\sigma_p`. We take the ladder level nearest 0.1: at the
  smallest level (0.02) the energy is so rough that NUTS chains started at random stay in
  separate local modes (we measured :math:`\hat R \approx 2.4`), while at 0.1 they mix
  (:math:`\hat R \approx 1.06` in the full-size run).
* **Posterior annealed Langevin** (Jalal et al. 2021; Song et al. 2022): annealed Langevin
  dynamics on the noise-conditional posterior energy

  .. math::

      E_{post}(x, \sigma) = E_\theta(x, \sigma) + \frac{\|m \odot x - y\|^2}{2 (s^2 + \sigma^2)},

  whose likelihood term is that of :math:`y` given the *noisy* image
  :math:`x_\sigma = x + \sigma z` (variance :math:`s^2 + \sigma^2` on observed pixels), passed
  as a noise-conditional energy to ``ne.sample(..., "annealed_langevin")``. It ends at the
  clean-data prior (:math:`\sigma_L = 0.02`, then a Tweedie denoising step).

Several test digits are reconstructed at once (the posterior factorizes over them: a NumPyro
plate for NUTS, a sum of energies for annealed Langevin). The reconstruction error (RMSE to
the true digit) of each posterior mean is compared with the observation-only baseline: the
observed pixels of :math:`y` with the training set's mean image in the hidden ones.

Writes ``reconstruction.png`` (truth, observation, baseline, posterior means and standard
deviations), ``posterior_draws.png`` and ``metrics.json`` to ``--out``.

Run: ``python examples/inverse_problem.py [--smoke] [--out DIR] [--seed N]
[--mask bottom|random] [--noise S]``.

References
----------
A. Jalal, M. Arvinte, G. Daras, E. Price, A. G. Dimakis and J. Tamir (2021). Robust compressed
sensing MRI with deep generative priors. NeurIPS.
Y. Song, L. Shen, L. Xing and S. Ermon (2022). Solving inverse problems in medical imaging with
score-based generative models. ICLR.
Y. Song and S. Ermon (2019). Generative modeling by estimating gradients of the data
distribution. NeurIPS.
M. D. Hoffman and A. Gelman (2014). The No-U-Turn sampler. JMLR 15.
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
import ncsn_digits  # the sibling example: its energy, training and plotting
import numpy as np
import numpyro
import numpyro.distributions as dist

import numpyro_ebm as ne

NAME = "inverse_problem"
SIGMA_PRIOR = 0.1  # NUTS's prior is E(x, sigma) at the ladder level nearest this


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below."""

    ncsn: ncsn_digits.Config
    num_digits: int
    nuts_chains: int
    nuts_warmup: int
    nuts_samples: int
    nuts_max_doublings: int
    langevin_draws: int


FULL = Config(
    ncsn=ncsn_digits.FULL,
    num_digits=8,
    nuts_chains=4,
    nuts_warmup=300,
    nuts_samples=300,
    nuts_max_doublings=8,
    langevin_draws=64,
)
SMOKE = Config(
    ncsn=ncsn_digits.SMOKE,
    num_digits=2,
    nuts_chains=2,
    nuts_warmup=30,
    nuts_samples=30,
    nuts_max_doublings=4,
    langevin_draws=8,
)


def make_mask(kind: str, key: jax.Array) -> np.ndarray:
    """``"bottom"``: the top four rows observed; ``"random"``: each pixel observed with
    probability 1/2. Returns a float32 vector of 64 zeros and ones."""
    if kind == "bottom":
        mask = np.zeros((8, 8), np.float32)
        mask[:4] = 1.0
        return mask.ravel()
    if kind == "random":
        return np.asarray(jax.random.bernoulli(key, 0.5, (64,)), np.float32)
    raise ValueError(f"mask must be 'bottom' or 'random', got {kind!r}")


def one_digit_per_class(labels: np.ndarray, num: int) -> np.ndarray:
    """Indices of the first example of each of the first ``num`` classes to appear."""
    _, first = np.unique(labels, return_index=True)
    return np.sort(first)[:num]


def model(y, mask, noise_sd, prior_energy):
    r"""``x_b ~ EnergyDistribution(prior_energy)`` for each digit ``b`` of a plate, and
    ``y_b ~ Normal(mask * x_b, noise_sd)``: the posterior is :math:`\prod_b p(x_b \mid y_b)`."""
    with numpyro.plate("digits", y.shape[0]):
        x = numpyro.sample("x", ne.EnergyDistribution(prior_energy, event_shape=(64,)))
        numpyro.sample("y", dist.Normal(mask * x, noise_sd).to_event(1), obs=y)


def posterior_nuts(energy, sigmas, y, mask, noise_sd, key, config: Config):
    """NUTS draws ``(draws, digits, 64)`` with the prior :math:`E_\\theta(x, \\sigma_p)`, and
    the worst R-hat over all coordinates."""
    sigma_prior = float(sigmas[np.argmin(np.abs(np.log(np.asarray(sigmas) / SIGMA_PRIOR)))])

    def prior_energy(x):
        return energy(x, sigma_prior)

    idata = ne.sample(
        model,
        "nuts",
        key=key,
        num_chains=config.nuts_chains,
        num_warmup=config.nuts_warmup,
        num_samples=config.nuts_samples,
        model_args=(jnp.asarray(y), jnp.asarray(mask), noise_sd, prior_energy),
        max_num_doublings=config.nuts_max_doublings,
    )
    draws = np.asarray(idata.posterior["x"])  # (chain, draw, digit, 64)
    rhat = ne.diagnostics.rhat(jnp.asarray(draws.reshape(*draws.shape[:2], -1)))
    stats = {
        "nuts_sigma_prior": sigma_prior,
        "nuts_max_rhat": float(jnp.nanmax(rhat)),
        "nuts_divergences": int(idata.sample_stats["diverging"].sum()),
        "nuts_mean_grad_evals_per_draw": float(idata.sample_stats["num_grad_evals"].mean()),
    }
    return draws.reshape(-1, *draws.shape[2:]), stats


def posterior_energy(energy, y, mask, noise_sd):
    r""":math:`E_{post}(x, \sigma) = \sum_b E_\theta(x_b, \sigma)
    + \|m \odot x - y\|^2 / (2(s^2 + \sigma^2))` for a batch ``x`` of shape ``(digits, 64)``."""
    y, mask = jnp.asarray(y), jnp.asarray(mask)

    def energy_fn(x, sigma):
        prior = jnp.sum(jax.vmap(energy, (0, None))(x, sigma))
        return prior + jnp.sum((mask * x - y) ** 2) / (2.0 * (noise_sd**2 + sigma**2))

    return energy_fn


def posterior_langevin(energy, sigmas, y, mask, noise_sd, key, config: Config):
    """Posterior annealed-Langevin draws ``(draws, digits, 64)``: one sweep per chain."""
    idata = ne.sample(
        posterior_energy(energy, y, mask, noise_sd),
        "annealed_langevin",
        key=key,
        event_shape=y.shape,
        num_chains=config.langevin_draws,
        num_samples=1,
        num_warmup=0,
        init_scale=float(sigmas[0]),
        sigmas=sigmas,
        step_size=ncsn_digits.langevin_step_size(sigmas),
        num_steps_per_level=config.ncsn.num_steps_per_level,
        denoise=True,
    )
    return np.asarray(idata.posterior["x"]).reshape(-1, *y.shape)


def errors(estimate, truth, mask) -> dict[str, float]:
    """RMSE over all pixels and over the hidden ones."""
    squared = (np.asarray(estimate) - truth) ** 2
    hidden = np.broadcast_to(mask == 0, squared.shape)
    return {
        "rmse": float(np.sqrt(squared.mean())),
        "rmse_hidden": float(np.sqrt(squared[hidden].mean())),
    }


def coverage(draws, truth, mask) -> float:
    """Fraction of hidden pixels whose true value lies within two posterior standard
    deviations of the posterior mean."""
    mean, sd = draws.mean(axis=0), draws.std(axis=0)
    inside = np.abs(truth - mean) <= 2.0 * sd
    return float(inside[np.broadcast_to(mask == 0, inside.shape)].mean())


def plot_reconstructions(path, truth, y, baseline, nuts, langevin, metrics) -> None:
    columns = [
        ("truth", truth, (0, 1)),
        ("observed y", y, (0, 1)),
        ("baseline", baseline, (0, 1)),
        ("NUTS mean", nuts.mean(0), (0, 1)),
        ("NUTS sd", nuts.std(0), (0, 0.5)),
        ("annealed LD mean", langevin.mean(0), (0, 1)),
        ("annealed LD sd", langevin.std(0), (0, 0.5)),
    ]
    rows = truth.shape[0]
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.45 * len(columns), 1.45 * rows + 0.9))
    axes = np.atleast_2d(axes)
    for j, (title, images, (lo, hi)) in enumerate(columns):
        for i in range(rows):
            ax = axes[i, j]
            ax.imshow(images[i].reshape(8, 8), cmap="gray_r", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(title, fontsize=8)
    fig.suptitle(
        "hidden-pixel RMSE: baseline "
        f"{metrics['baseline_rmse_hidden']:.3f}, NUTS {metrics['nuts_rmse_hidden']:.3f}, "
        f"annealed Langevin {metrics['langevin_rmse_hidden']:.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_draws(path, truth, y, langevin, num_draws: int = 8) -> None:
    rows = truth.shape[0]
    num_draws = min(num_draws, langevin.shape[0])
    fig, axes = plt.subplots(rows, num_draws + 2, figsize=(1.2 * (num_draws + 2), 1.2 * rows + 0.6))
    axes = np.atleast_2d(axes)
    for i in range(rows):
        images = [truth[i], y[i], *langevin[:num_draws, i]]
        for j, image in enumerate(images):
            axes[i, j].imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    for j, title in enumerate(["truth", "observed", *[f"draw {k + 1}" for k in range(num_draws)]]):
        axes[0, j].set_title(title, fontsize=8)
    fig.suptitle("posterior annealed-Langevin draws", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv, _add_arguments)
    if not (np.isfinite(args.noise) and args.noise > 0):
        raise ValueError(f"--noise must be positive and finite, got {args.noise}")
    config = SMOKE if args.smoke else FULL
    keys = jax.random.split(jax.random.key(args.seed), 6)
    train, test, _, test_labels = ncsn_digits.digit_split(keys[0])
    sigmas = ncsn_digits.sigma_ladder(config.ncsn.num_levels)

    started = time.perf_counter()
    energy, _ = ncsn_digits.train_ncsn(train, keys[1], config.ncsn, progress=not args.smoke)
    train_seconds = time.perf_counter() - started

    truth = test[one_digit_per_class(test_labels, config.num_digits)]
    mask = make_mask(args.mask, keys[2])
    y = mask * truth + args.noise * np.asarray(jax.random.normal(keys[3], truth.shape))
    y = y.astype(np.float32)
    baseline = mask * y + (1.0 - mask) * train.mean(axis=0)

    started = time.perf_counter()
    nuts, nuts_stats = posterior_nuts(energy, sigmas, y, mask, args.noise, keys[4], config)
    nuts_seconds = time.perf_counter() - started
    started = time.perf_counter()
    langevin = posterior_langevin(energy, sigmas, y, mask, args.noise, keys[5], config)
    langevin_seconds = time.perf_counter() - started

    metrics = {"mask": args.mask, "noise_sd": args.noise, "num_digits": int(truth.shape[0])}
    for name, estimate in [
        ("baseline", baseline),
        ("nuts", nuts.mean(0)),
        ("langevin", langevin.mean(0)),
    ]:
        metrics |= {f"{name}_{k}": v for k, v in errors(estimate, truth, mask).items()}
    metrics |= nuts_stats | {
        "nuts_coverage_2sd_hidden": coverage(nuts, truth, mask),
        "langevin_coverage_2sd_hidden": coverage(langevin, truth, mask),
        "train_seconds": train_seconds,
        "nuts_seconds": nuts_seconds,
        "langevin_seconds": langevin_seconds,
    }

    plot_reconstructions(
        args.out / "reconstruction.png", truth, y, baseline, nuts, langevin, metrics
    )
    plot_draws(args.out / "posterior_draws.png", truth, y, langevin)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(
        f"inverse_problem ({'smoke' if args.smoke else 'full'} size): {truth.shape[0]} digits, "
        f"mask {args.mask!r}, noise sd {args.noise}"
    )
    print(f"  trained the NCSN prior in {train_seconds:.1f} s")
    print(
        f"  NUTS ({config.nuts_chains} chains x {config.nuts_samples} draws, prior at sigma "
        f"{nuts_stats['nuts_sigma_prior']:.3f}): {nuts_seconds:.1f} s, max R-hat "
        f"{nuts_stats['nuts_max_rhat']:.3f}, {nuts_stats['nuts_divergences']} divergences"
    )
    print(
        f"  posterior annealed Langevin ({config.langevin_draws} draws): {langevin_seconds:.1f} s"
    )
    print("  reconstruction RMSE (all pixels / hidden pixels):")
    for name, label in [
        ("baseline", "observation-only baseline"),
        ("nuts", "NUTS posterior mean"),
        ("langevin", "annealed-Langevin posterior mean"),
    ]:
        print(
            f"    {label:34s} {metrics[f'{name}_rmse']:.3f} / {metrics[f'{name}_rmse_hidden']:.3f}"
        )
    print(
        "  hidden pixels within 2 posterior sd of the mean: NUTS "
        f"{metrics['nuts_coverage_2sd_hidden']:.0%}, annealed Langevin "
        f"{metrics['langevin_coverage_2sd_hidden']:.0%}"
    )
    print(f"  figures: {args.out / 'reconstruction.png'}, {args.out / 'posterior_draws.png'}")
    return metrics


def _add_arguments(parser) -> None:
    parser.add_argument(
        "--mask", choices=["bottom", "random"], default="bottom", help="which pixels are hidden"
    )
    parser.add_argument("--noise", type=float, default=0.1, help="observation noise sd s > 0")


if __name__ == "__main__":
    main()
