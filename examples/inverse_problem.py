r"""A learned energy as the prior of an inverse problem: inpainting noisy, half-hidden digits.

A digit :math:`x \in [0, 1]^{64}` is observed through a mask :math:`m \in \{0, 1\}^{64}` (by
default the bottom half of the image is hidden) and Gaussian noise,

.. math::

    y = m \odot x + \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, s^2 I),

and reconstructed from the posterior :math:`p(x \mid y) \propto p(x)\, \mathcal{N}(y;\ m \odot x,
s^2 I)` with a prior learned from the other digits: the noise-conditional energy
:math:`E_\theta(x, \sigma)` of ``ncsn_digits.py`` (NCSN, Song & Ermon 2019), trained here the
same way.

**One model.** The NumPyro model's prior site is the learned energy as a *noise-conditional*
prior, ``ne.EnergyDistribution(lambda x, s: E(x, s), event_shape, sigma=sigma_prior)``:
:math:`p(x) \propto e^{-E_\theta(x, \sigma_p)}`, the data density blurred by noise of
standard deviation :math:`\sigma_p`, the ladder level nearest 0.1 (at the smallest level, 0.02,
the energy is so rough that NUTS chains started at random stay in separate local modes: we
measured :math:`\hat R \approx 2.4` there). Several test digits are reconstructed at once: the
prior's event is ``(digits, 64)`` and its energy the sum of the digits' energies (the posterior
factorizes over them). It is one site rather than a ``numpyro.plate`` of ``(64,)`` events
because a plate wraps the site in NumPyro's ``ExpandedDistribution``, which hides the
noise-conditional prior from ``ne.at_noise_level`` and so from posterior annealed Langevin.

**One comparison.** ``ne.compare`` runs every sampler on that one model with the same key,
chains, warm-up and draws, and ranks only those whose chains mixed; the others are listed
with the reason (``mixed``, ``reason``, ``Comparison.notes``). The samplers:

* ``ne.samplers.nuts()`` (Hoffman & Gelman 2014), on the posterior as written;
* ``ne.samplers.annealed_langevin(sigmas=..., step_size=..., num_steps_per_level=...)`` on the
  *model*: posterior annealed Langevin (Jalal et al. 2021), whose prior moves down the noise
  levels while the likelihood stays as it is. Its schedule is the training ladder from 5 down
  to :math:`\sigma_p`, so that its last level is the posterior NUTS samples, and it ends
  without a Tweedie step (``denoise=False``), which would move the draws off that posterior.
  Sharing one model is the simpler choice; the price is that annealed Langevin stops at
  :math:`\sigma_p` instead of the clean-data level 0.02. Level :math:`i` moves with the noise
  variance :math:`\epsilon \sigma_i^2 / \sigma_L^2`, but the likelihood's curvature
  :math:`1/s^2` is the same at every level, so an *unadjusted* step diverges on the observed
  pixels at the large levels unless :math:`\epsilon < 4 s^2 \sigma_L^2 / \sigma_1^2`, a step
  so small that the chains hardly move at the small levels (at smoke size, with half that
  bound, we measured a hidden-pixel RMSE of 1.9 against the baseline's 0.27). So every step is
  a MALA step (``metropolis=True``) with the NCSN example's :math:`\epsilon = 0.2\,\sigma_L^2`:
  at the largest levels the proposals are rejected and the chains wait; at the smaller ones
  they move, each level's step exact for that level, the last one for the posterior NUTS
  samples. Its draws are sweeps started from the previous one's end, which R-hat cannot check
  for a bias they share: ``check_bias=True`` reruns it with half the step and twice the steps
  and marks it not mixed if the two disagree.

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
SIGMA_PRIOR = 0.1  # the prior is E(x, sigma) at the ladder level nearest this


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below. The budget (chains, warm-up, draws)
    is the same for every sampler of the comparison."""

    ncsn: ncsn_digits.Config
    num_digits: int
    num_chains: int
    num_warmup: int
    num_samples: int
    nuts_max_doublings: int
    langevin_steps_per_level: int


FULL = Config(
    ncsn=ncsn_digits.FULL,
    num_digits=8,
    num_chains=4,
    num_warmup=300,
    num_samples=300,
    nuts_max_doublings=8,
    langevin_steps_per_level=20,
)
SMOKE = Config(
    ncsn=ncsn_digits.SMOKE,
    num_digits=2,
    num_chains=2,
    num_warmup=30,
    num_samples=30,
    nuts_max_doublings=4,
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


def prior_level(sigmas) -> int:
    """Index of the ladder level nearest :data:`SIGMA_PRIOR` (in log scale)."""
    return int(np.argmin(np.abs(np.log(np.asarray(sigmas) / SIGMA_PRIOR))))


def model(y, mask, noise_sd, energy, sigma_prior):
    r"""``x ~ EnergyDistribution(sum_b E(x_b, sigma), sigma=sigma_prior)`` for the digits
    ``x`` of shape ``(digits, 64)``, and ``y ~ Normal(mask * x, noise_sd)``: the posterior is
    :math:`\prod_b p(x_b \mid y_b)`. The prior is noise-conditional: ``ne.at_noise_level``
    (used by posterior annealed Langevin) evaluates it at another level."""

    def prior_energy(x, sigma):
        return jnp.sum(jax.vmap(energy, (0, None))(x, sigma))

    prior = ne.EnergyDistribution(prior_energy, event_shape=y.shape, sigma=sigma_prior)
    x = numpyro.sample("x", prior)
    numpyro.sample("y", dist.Normal(mask * x, noise_sd).to_event(2), obs=y)


def samplers(schedule, config: Config) -> list:
    """The sampler values compared on the model: NUTS and posterior annealed Langevin with
    MALA steps down ``schedule`` (see the module's docstring)."""
    return [
        ne.samplers.nuts(max_num_doublings=config.nuts_max_doublings),
        ne.samplers.annealed_langevin(
            sigmas=schedule,
            step_size=ncsn_digits.langevin_step_size(schedule),
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
    level = prior_level(sigmas)
    sigma_prior, schedule = float(sigmas[level]), sigmas[: level + 1]

    started = time.perf_counter()
    energy, _ = ncsn_digits.train_ncsn(train, keys[1], config.ncsn, progress=not args.smoke)
    train_seconds = time.perf_counter() - started

    truth = test[one_digit_per_class(test_labels, config.num_digits)]
    mask = make_mask(args.mask, keys[2])
    y = mask * truth + args.noise * np.asarray(jax.random.normal(keys[3], truth.shape))
    y = y.astype(np.float32)
    baseline = mask * y + (1.0 - mask) * train.mean(axis=0)

    started = time.perf_counter()
    comparison = ne.compare(
        model,
        samplers(schedule, config),
        key=keys[4],
        model_args=(jnp.asarray(y), jnp.asarray(mask), args.noise, energy, sigma_prior),
        num_chains=config.num_chains,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
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
        "langevin_sigmas": [float(s) for s in schedule],
        "langevin_step_size": ncsn_digits.langevin_step_size(schedule),
        "samplers": names,
    }
    metrics |= {f"baseline_{k}": v for k, v in errors(baseline, truth, mask).items()}
    for name, values in draws.items():
        metrics |= {f"{name}_{k}": v for k, v in errors(values.mean(0), truth, mask).items()}
        metrics[f"{name}_coverage_2sd_hidden"] = coverage(values, truth, mask)
    metrics |= {
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
    print(f"  trained the NCSN prior in {train_seconds:.1f} s")
    print(
        f"  ne.compare: {config.num_chains} chains x {config.num_samples} draws after "
        f"{config.num_warmup} warm-up each, {compare_seconds:.1f} s in all (annealed Langevin: "
        f"{len(schedule)} levels {schedule[0]:.3g} -> {schedule[-1]:.3g}, "
        f"{config.langevin_steps_per_level} MALA steps each, step size "
        f"{metrics['langevin_step_size']:.3g}, rerun for its bias check)"
    )
    columns = [c for c in COLUMNS if c in table.columns]
    print(table[columns].to_string(float_format=lambda v: f"{v:.3g}"))
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
    print(f"  outputs in {args.out}")
    return metrics


def _add_arguments(parser) -> None:
    parser.add_argument(
        "--mask", choices=["bottom", "random"], default="bottom", help="which pixels are hidden"
    )
    parser.add_argument("--noise", type=float, default=0.1, help="observation noise sd s > 0")


if __name__ == "__main__":
    main()
