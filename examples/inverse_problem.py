r"""A learned energy as the prior of an inverse problem: inpainting noisy, half-hidden digits.

A digit :math:`x \in [0, 1]^{64}` is observed through a mask :math:`m \in \{0, 1\}^{64}` (by
default the bottom half of the image is hidden) and Gaussian noise,

.. math::

    y = m \odot x + \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, s^2 I),

and reconstructed from the posterior :math:`p(x \mid y) \propto p(x)\, \mathcal{N}(y;\ m \odot x,
s^2 I)` with a prior learned from the other digits: the noise-conditional energy
:math:`E_\theta(x, \sigma)` of ``ncsn_digits.py`` (NCSN, Song & Ermon 2019), trained the same
way and then, as ``numpyro-ebm train`` trains, by a maximum-likelihood stage at the prior's
level :math:`\sigma_p` (``ncsn_digits.Likelihood``: the NCSN loss plus the likelihood term of
``training.replica_exchange_pcd``), since score matching alone does not set the masses of the
energy's modes (Wenliang & Kanagawa 2020).

**One model.** The prior site is the learned energy as a *noise-conditional* prior,
``ne.EnergyDistribution(lambda x, s: E(x, s), event_shape, sigma=sigma_prior)``:
:math:`p(x) \propto e^{-E_\theta(x, \sigma_p)}`, the data density blurred by noise of
standard deviation :math:`\sigma_p`, the ladder level nearest 0.1 (at the smallest level, 0.02,
the energy is so rough that NUTS chains started at random stay in separate local modes: we
measured :math:`\hat R \approx 2.4` there). Several test digits are reconstructed at once: the
prior's event is ``(digits, 64)`` and its energy the sum of the digits' energies (the posterior
factorizes over them). The observation site is noise-conditional too,

.. math::

    -\log p_\sigma(y \mid x) = \frac{\lVert y - m \odot x \rVert^2}{2 v(\sigma)} + c(\sigma),
    \qquad v(\sigma) = s^2 + \sigma^2 - \sigma_p^2,

which at :math:`\sigma_p` is :math:`\mathcal{N}(y;\ m \odot x, s^2 I)`: the posterior that NUTS
samples. At a level :math:`\sigma > \sigma_p` the prior models :math:`x` blurred by
:math:`\sqrt{\sigma^2 - \sigma_p^2}` more noise, which :math:`y` sees with the variance
:math:`v(\sigma)`: the annealed likelihood of Jalal et al. (2021), their :math:`\gamma_t^2 =
\sigma^2 - \sigma_p^2`.

**One comparison.** ``ne.compare`` runs both samplers on that one model with the same key
and chains, and ranks only those whose chains mixed; the others are listed with the reason
(``mixed``, ``reason``, ``Comparison.notes``):

* ``ne.samplers.nuts()`` (Hoffman & Gelman 2014), on the posterior as written. The posterior
  of a digit whose visible top fits several bottoms has several modes, between which NUTS
  moves rarely, so it gets 5000 draws per chain. The likelihood stage changes that mixing, not
  always for the better (seed 0, 4 chains x 2000 draws: largest :math:`\hat R` 1.049 after NCSN
  alone, 1.015 after the stage as run here, 1.28 after a stage with two rungs up to
  :math:`T = 2`, which left one digit's chains in two modes).
* ``ne.samplers.annealed_langevin(sigmas=..., step_size=..., num_steps_per_level=...,
  metropolis=True)`` on the *model*: posterior annealed Langevin (Jalal et al. 2021), prior
  and likelihood moving down the ladder from its level nearest 1 to :math:`\sigma_p`, 30 steps
  per level, no Tweedie step at the end (``denoise=False``), which would move the draws off
  the posterior at :math:`\sigma_p`. Level :math:`i` moves with the noise variance
  :math:`\epsilon \sigma_i^2 / \sigma_p^2`, and every step is a MALA step, exact for its level.
  Why these choices (measured at full size, seed 0): with the likelihood at :math:`s^2` on
  every level, its curvature :math:`1/s^2` gets most proposals at the upper levels rejected
  (mean acceptance 0.26), the sweeps continue where the previous one ended, and the chains do
  not mix (:math:`\hat R` 1.49, bias check 5.6 MCSE at this budget); with :math:`v(\sigma)` and
  :math:`\epsilon = 0.1\,\sigma_p^2` (half the NCSN example's step), the acceptance is 0.38 at
  the first level and 0.87 to 0.92 below it, while at :math:`0.2\,\sigma_p^2` it is 0.00 at the
  first level and 0.12 at the third. Started at :math:`\sigma \approx 1`, a sweep forgets its
  start (the lag-1 autocorrelation of the hidden pixels between successive sweeps has median
  -0.02), so its draws are independent: no warm-up, and 400 per chain (``budgets=``).
  ``check_bias=True`` reruns it with half the step and twice the steps and marks it not mixed
  if the two disagree.

**What those checks cannot see.** A sweep ends after 30 steps at :math:`\sigma_p`, before the
slow directions of the posterior have settled: its draws are wider than the posterior at
:math:`\sigma_p`, and R-hat (independent sweeps agree with each other) and the bias check (the
rerun spends the same Langevin time per level) are both blind to it. So NUTS's run, an
exact sampler of the same posterior, is the comparison's ``reference``: a sampler whose means
lie more than 4 Monte Carlo standard errors from it is not ranked. The example also compares
the two posteriors (:func:`agreement`): annealed Langevin's hidden-pixel standard deviations
against NUTS's and the largest difference of the posterior means in NUTS's standard
deviations. At full size (seed 0) annealed Langevin passes R-hat (1.009) and its bias check
(3.5), but its means lie 47.8 MCSE from NUTS's and it is not ranked; its standard deviations
are 1.25 times NUTS's (median) and its means up to 3.9 of NUTS's standard deviations away;
MALA at :math:`\sigma_p` started from sweep ends needs about 1000 more steps before the
median standard deviation is within 5 % of NUTS's. Its draws are those of the annealing, not
of the posterior at :math:`\sigma_p`.

The reconstruction error (RMSE to the true digit) of each sampler's posterior mean is compared
with the observation-only baseline (the observed pixels of :math:`y`, the training set's mean
image in the hidden ones), and each posterior's calibration by the fraction of hidden pixels
whose true value lies within two posterior standard deviations of the mean. A sampler that did
not mix is reported with its numbers, but marked so in the printout, the figures and
``metrics.json``.

Writes ``reconstruction.png`` (truth, observation, baseline, each sampler's posterior mean and
standard deviation), ``posterior_draws.png``, ``ess_per_second.png`` (``ne.plots``: samplers
that did not mix in grey, with the reason), ``comparison.csv`` and one netCDF file per sampler
(``Comparison.save``) and ``metrics.json`` to ``--out``. (``Comparison.plot``'s trace and rank
plots are not drawn: they would have one row per pixel and digit.)

Run: ``python examples/inverse_problem.py [--smoke] [--out DIR] [--seed N]
[--mask bottom|random] [--noise S]``.

References
----------
A. Jalal, M. Arvinte, G. Daras, E. Price, A. G. Dimakis and J. Tamir (2021). Robust compressed
sensing MRI with deep generative priors. NeurIPS.
Y. Song and S. Ermon (2019). Generative modeling by estimating gradients of the data
distribution. NeurIPS.
L. K. Wenliang and H. Kanagawa (2020). Blindness of score-based methods to isolated
components and mixing proportions. arXiv:2008.10087.
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

import numpyro_ebm as ne

NAME = "inverse_problem"
SIGMA_PRIOR = 0.1  # the prior is E(x, sigma) at the ladder level nearest this
SIGMA_START = 1.0  # annealed Langevin starts at the ladder level nearest this


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below. ``num_chains`` is every sampler's;
    ``num_warmup`` and ``num_samples`` are NUTS's, annealed Langevin draws
    ``langevin_samples`` sweeps per chain with no warm-up."""

    ncsn: ncsn_digits.Config
    likelihood_steps: int
    likelihood_chains: int
    num_digits: int
    num_chains: int
    num_warmup: int
    num_samples: int
    nuts_max_doublings: int
    langevin_samples: int
    langevin_steps_per_level: int


FULL = Config(
    ncsn=ncsn_digits.FULL,
    likelihood_steps=400,
    likelihood_chains=256,
    num_digits=8,
    num_chains=4,
    num_warmup=500,
    num_samples=5000,
    nuts_max_doublings=8,
    langevin_samples=400,
    langevin_steps_per_level=30,
)
SMOKE = Config(
    ncsn=ncsn_digits.SMOKE,
    likelihood_steps=20,
    likelihood_chains=32,
    num_digits=2,
    num_chains=2,
    num_warmup=30,
    num_samples=30,
    nuts_max_doublings=4,
    langevin_samples=30,
    langevin_steps_per_level=10,
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


def nearest_level(sigmas, sigma: float) -> int:
    """Index of the ladder level nearest ``sigma`` (in log scale)."""
    return int(np.argmin(np.abs(np.log(np.asarray(sigmas) / sigma))))


def langevin_step_size(sigma_prior: float) -> float:
    r""":math:`\epsilon = 0.1\,\sigma_p^2`, half the NCSN example's step: the last level's
    noise variance is a tenth of that level's (see the module's docstring for the measured
    acceptance)."""
    return 0.1 * sigma_prior**2


def observation_energy(y, mean, noise_sd, sigma, sigma_prior):
    r""":math:`\lVert y - \mu \rVert^2 / (2 v)` with :math:`v = s^2 + \sigma^2 - \sigma_p^2`:
    :math:`-\log \mathcal{N}(y;\ \mu, v I)` up to a constant in :math:`\mu`, the annealed
    likelihood at the level :math:`\sigma` (Jalal et al. 2021), exact at :math:`\sigma_p`."""
    variance = noise_sd**2 + sigma**2 - sigma_prior**2
    return jnp.sum((y - mean) ** 2) / (2.0 * variance)


def model(y, mask, noise_sd, energy, sigma_prior):
    r"""``x ~ EnergyDistribution(sum_b E(x_b, sigma), sigma=sigma_prior)`` for the digits
    ``x`` of shape ``(digits, 64)``, and ``y`` observed through the noise-conditional
    :func:`observation_energy`, which at ``sigma_prior`` is ``Normal(mask * x, noise_sd)``: the
    posterior is :math:`\prod_b p(x_b \mid y_b)`. ``ne.at_noise_level`` (used by posterior
    annealed Langevin) evaluates both sites at another level."""

    def prior_energy(x, sigma):
        return jnp.sum(jax.vmap(energy, (0, None))(x, sigma))

    prior = ne.EnergyDistribution(prior_energy, event_shape=y.shape, sigma=sigma_prior)
    x = numpyro.sample("x", prior)

    def likelihood_energy(value, sigma):
        return observation_energy(value, mask * x, noise_sd, sigma, sigma_prior)

    likelihood = ne.EnergyDistribution(likelihood_energy, event_shape=y.shape, sigma=sigma_prior)
    numpyro.sample("y", likelihood, obs=y)


def samplers(schedule, config: Config) -> list:
    """The sampler values compared on the model: NUTS and posterior annealed Langevin with
    MALA steps down ``schedule`` (see the module's docstring)."""
    return [
        ne.samplers.nuts(max_num_doublings=config.nuts_max_doublings),
        ne.samplers.annealed_langevin(
            sigmas=schedule,
            step_size=langevin_step_size(float(schedule[-1])),
            num_steps_per_level=config.langevin_steps_per_level,
            metropolis=True,
            denoise=False,
        ),
    ]


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


def agreement(draws, reference, mask) -> dict[str, float]:
    """How far the posterior of ``draws`` lies from that of ``reference`` on the hidden
    pixels: the median ratio of their standard deviations, and the largest difference of
    their means in ``reference``'s standard deviations."""
    sd, reference_sd = draws.std(axis=0), reference.std(axis=0)
    hidden = np.broadcast_to(mask == 0, sd.shape)
    difference = np.abs(draws.mean(axis=0) - reference.mean(axis=0)) / reference_sd
    return {
        "sd_ratio_hidden": float(np.median(sd[hidden] / reference_sd[hidden])),
        "max_mean_difference_hidden": float(difference[hidden].max()),
    }


LABELS = {"nuts": "NUTS", "annealed_langevin": "annealed LD"}


def label(name: str, mixed: bool) -> str:
    """A sampler's name for figures, marked when its chains did not mix."""
    return LABELS.get(name, name) + ("" if mixed else " (not mixed)")


def plot_reconstructions(path, truth, y, baseline, draws, mixed, metrics) -> None:
    columns = [("truth", truth, (0, 1)), ("observed y", y, (0, 1)), ("baseline", baseline, (0, 1))]
    for name, values in draws.items():
        columns += [
            (f"{label(name, mixed[name])}\nmean", values.mean(0), (0, 1)),
            (f"{LABELS.get(name, name)} sd", values.std(0), (0, 0.5)),
        ]
    rows = truth.shape[0]
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.45 * len(columns), 1.45 * rows + 1.1))
    axes = np.atleast_2d(axes)
    for j, (title, images, (lo, hi)) in enumerate(columns):
        for i in range(rows):
            ax = axes[i, j]
            ax.imshow(images[i].reshape(8, 8), cmap="gray_r", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(title, fontsize=7)
    errors_text = ", ".join(
        f"{label(name, mixed[name])} {metrics[f'{name}_rmse_hidden']:.3f}" for name in draws
    )
    fig.suptitle(
        f"hidden-pixel RMSE: baseline {metrics['baseline_rmse_hidden']:.3f}, {errors_text}",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_draws(path, truth, y, draws, mixed, num_draws: int = 4) -> None:
    """Per digit: truth, observation and the first ``num_draws`` draws of each sampler (taken
    across chains)."""
    rows = truth.shape[0]
    titles = ["truth", "observed"]
    picked = []
    for name, values in draws.items():
        step = max(values.shape[0] // num_draws, 1)
        chosen = values[::step][:num_draws]
        picked.append(chosen)
        titles += [f"{label(name, mixed[name])}\ndraw {k + 1}" for k in range(chosen.shape[0])]
    cols = len(titles)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + 0.9))
    axes = np.atleast_2d(axes)
    for i in range(rows):
        images = [truth[i], y[i], *(image for chosen in picked for image in chosen[:, i])]
        for j, image in enumerate(images):
            axes[i, j].imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    for j, title in enumerate(titles):
        axes[0, j].set_title(title, fontsize=6)
    fig.suptitle("posterior draws", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: the comparison's columns printed (those present)
COLUMNS = (
    "wall_s",
    "compile_s",
    "grad_evals",
    "max_rhat",
    "min_ess_bulk",
    "ess_per_s",
    "divergences",
    "nonfinite_chains",
    "bias_check",
    "bias_z",
    "mixed",
)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv, _add_arguments)
    if not (np.isfinite(args.noise) and args.noise > 0):
        raise ValueError(f"--noise must be positive and finite, got {args.noise}")
    config = SMOKE if args.smoke else FULL
    keys = jax.random.split(jax.random.key(args.seed), 5)
    train, test, _, test_labels = ncsn_digits.digit_split(keys[0])
    sigmas = np.asarray(ncsn_digits.sigma_ladder(config.ncsn.num_levels))
    level = nearest_level(sigmas, SIGMA_PRIOR)
    sigma_prior = float(sigmas[level])
    schedule = sigmas[nearest_level(sigmas, SIGMA_START) : level + 1]

    started = time.perf_counter()
    stage = ncsn_digits.Likelihood(sigma_prior, config.likelihood_steps, config.likelihood_chains)
    energy, history = ncsn_digits.train_ncsn(
        train, keys[1], config.ncsn, progress=not args.smoke, likelihood=stage
    )
    train_seconds = time.perf_counter() - started
    likelihood_final = {
        name.removeprefix("likelihood/"): float(np.asarray(values)[-1])
        for name, values in history.items()
        if name.startswith("likelihood/") and name != "likelihood/step"  # stage 2's last chunk
    }

    truth = test[one_digit_per_class(test_labels, config.num_digits)]
    mask = make_mask(args.mask, keys[2])
    y = mask * truth + args.noise * np.asarray(jax.random.normal(keys[3], truth.shape))
    y = y.astype(np.float32)
    baseline = mask * y + (1.0 - mask) * train.mean(axis=0)

    started = time.perf_counter()
    values = samplers(schedule, config)
    comparison = ne.compare(
        model,
        values,
        key=keys[4],
        # NUTS's own run is the reference: an exact sampler of the same posterior, against
        # which annealed Langevin's means are tested (mean_z), since neither R-hat nor the
        # bias check can see a bias that all its sweeps share
        reference=values[0],
        model_args=(jnp.asarray(y), jnp.asarray(mask), args.noise, energy, sigma_prior),
        num_chains=config.num_chains,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        budgets={"annealed_langevin": {"num_samples": config.langevin_samples, "num_warmup": 0}},
        check_bias=True,
    )
    compare_seconds = time.perf_counter() - started
    comparison.save(args.out)
    ne.plots.ess_per_second(comparison.table, args.out / "ess_per_second.png")

    table = comparison.table
    names = list(comparison.idata)  # in the order given
    mixed = {name: bool(table.loc[name, "mixed"]) for name in names}
    draws = {
        name: np.asarray(data.posterior["x"]).reshape(-1, *truth.shape)
        for name, data in comparison.idata.items()
    }

    metrics = {
        "mask": args.mask,
        "noise_sd": args.noise,
        "num_digits": int(truth.shape[0]),
        "sigma_prior": sigma_prior,
        "likelihood_stage": stage._asdict() | {"final": likelihood_final},
        "langevin_sigmas": [float(s) for s in schedule],
        "langevin_step_size": langevin_step_size(sigma_prior),
        "samplers": names,
    }
    metrics |= {f"baseline_{k}": v for k, v in errors(baseline, truth, mask).items()}
    for name, values in draws.items():
        metrics |= {f"{name}_{k}": v for k, v in errors(values.mean(0), truth, mask).items()}
        metrics[f"{name}_coverage_2sd_hidden"] = coverage(values, truth, mask)
    versus_nuts = agreement(draws["annealed_langevin"], draws["nuts"], mask)
    metrics |= {
        "annealed_langevin_vs_nuts": versus_nuts,
        "table": json.loads(table.to_json(orient="index")),
        "notes": list(comparison.notes),
        "train_seconds": train_seconds,
        "compare_seconds": compare_seconds,
    }

    plot_reconstructions(args.out / "reconstruction.png", truth, y, baseline, draws, mixed, metrics)
    plot_draws(args.out / "posterior_draws.png", truth, y, draws, mixed)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(
        f"inverse_problem ({'smoke' if args.smoke else 'full'} size): {truth.shape[0]} digits, "
        f"mask {args.mask!r}, noise sd {args.noise}, prior at sigma {sigma_prior:.3f}"
    )
    print(
        f"  trained the NCSN prior and its likelihood stage ({stage.num_steps} steps at sigma "
        f"{sigma_prior:.3f}) in {train_seconds:.1f} s; at its end: cold-replica acceptance "
        f"{likelihood_final['likelihood/acceptance']:.2f}, smallest swap rate "
        f"{likelihood_final['likelihood/swap_rate_min']:.2g}"
    )
    print(
        f"  ne.compare: {config.num_chains} chains, NUTS {config.num_samples} draws after "
        f"{config.num_warmup} warm-up each, annealed Langevin {config.langevin_samples} sweeps "
        f"each ({len(schedule)} levels {schedule[0]:.3g} -> {schedule[-1]:.3g}, "
        f"{config.langevin_steps_per_level} MALA steps each, step size "
        f"{metrics['langevin_step_size']:.3g}, rerun for its bias check), "
        f"{compare_seconds:.1f} s in all"
    )
    columns = [c for c in COLUMNS if c in table.columns]
    print(table[columns].to_string(float_format=lambda v: f"{v:.4g}"))
    for note in comparison.notes:
        print(f"  * {note}")
    print("  reconstruction RMSE (all pixels / hidden pixels), hidden pixels within 2 sd:")
    print(
        f"    {'observation-only baseline':40s} {metrics['baseline_rmse']:.3f} / "
        f"{metrics['baseline_rmse_hidden']:.3f}"
    )
    for name in names:
        print(
            f"    {label(name, mixed[name]) + ' posterior mean':40s} "
            f"{metrics[f'{name}_rmse']:.3f} / {metrics[f'{name}_rmse_hidden']:.3f}, "
            f"{metrics[f'{name}_coverage_2sd_hidden']:.0%}"
        )
    print(
        "  annealed Langevin against NUTS on the hidden pixels: posterior sd "
        f"{versus_nuts['sd_ratio_hidden']:.2f} times NUTS's (median), means up to "
        f"{versus_nuts['max_mean_difference_hidden']:.2f} NUTS sd apart"
    )
    print(f"  outputs in {args.out}")
    return metrics


def _add_arguments(parser) -> None:
    parser.add_argument(
        "--mask", choices=["bottom", "random"], default="bottom", help="which pixels are hidden"
    )
    parser.add_argument("--noise", type=float, default=0.1, help="observation noise sd s > 0")


if __name__ == "__main__":
    main()
