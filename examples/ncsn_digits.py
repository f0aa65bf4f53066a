r"""Noise-conditional energy on 8x8 digits: train with NCSN, sample with annealed Langevin.

A :class:`numpyro_ebm.NoiseConditionalMLP` energy :math:`E_\theta(x, \sigma)` is fit to
scikit-learn's digits (64 pixels in [0, 1]) by multi-scale denoising score matching over a
geometric ladder :math:`\sigma_1 > \dots > \sigma_L` (NCSN, Song & Ermon 2019),

.. math::

    \mathcal{L}(\theta) = \mathbb{E}_{i, x, z}\left[\tfrac12 \left\| -\sigma_i
    \nabla_x E_\theta(x + \sigma_i z, \sigma_i) + z \right\|^2\right],

with :math:`\sigma_1` about the largest distance between two training images (Song & Ermon
2020, technique 1). Digits are then drawn by annealed Langevin dynamics from
:math:`\mathcal{N}(0, \sigma_1^2 I)`: at level :math:`i`, :math:`T` steps
:math:`x \leftarrow x - \tfrac{\alpha_i}{2}\nabla_x E_\theta(x, \sigma_i) + \sqrt{\alpha_i} z`
with :math:`\alpha_i = \epsilon\, \sigma_i^2/\sigma_L^2`, followed by one Tweedie denoising step
:math:`x \leftarrow x - \sigma_L^2 \nabla_x E_\theta(x, \sigma_L)` (Jolicoeur-Martineau et al.
2021). We set :math:`\epsilon = 0.2\, \sigma_L^2`, Song & Ermon's :math:`\epsilon = 2\cdot 10^{-5}`
at :math:`\sigma_L = 0.01` rescaled to our :math:`\sigma_L`.

Sample quality is measured by nearest-neighbour distances to the training set: samples
should be as close to it as held-out real digits are (much farther means poor samples, much
closer means copies), and much closer than uniform noise images. A classifier (logistic
regression on the training split, its held-out accuracy printed) names the class of each sample:
their class shares against the data's, with the KL divergence and its standard error
(:func:`numpyro_ebm.metrics.class_weights`), say whether the model spreads its mass over the ten
digits as the data do.

``train_ncsn(..., likelihood=Likelihood(...))`` adds an optional maximum-likelihood stage
after NCSN, which this example does not run (``inverse_problem.py`` does): see
:class:`Likelihood`.

Writes ``samples.png`` (samples beside training images, and their class histogram) and
``loss.png`` to ``--out``, and ``metrics.json``; prints the numbers. ``--smoke`` runs a tiny
configuration in seconds.

Run: ``python examples/ncsn_digits.py [--smoke] [--out DIR] [--seed N]``.

References
----------
Y. Song and S. Ermon (2019). Generative modeling by estimating gradients of the data
distribution. NeurIPS.
Y. Song and S. Ermon (2020). Improved techniques for training score-based generative models.
NeurIPS.
A. Jolicoeur-Martineau, R. Piché-Taillefer, R. Tachet des Combes and I. Mitliagkas (2021).
Adversarial score matching and improved sampling for image generation. ICLR.
L. K. Wenliang and H. Kanagawa (2020). Blindness of score-based methods to isolated
components and mixing proportions. arXiv:2008.10087.
"""

from __future__ import annotations

import functools
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
import optax
from _digits import DigitClasses, describe, plot_class_histogram, show_images, summary
from flax import nnx

import numpyro_ebm as ne
from numpyro_ebm import datasets, training
from numpyro_ebm.kernels import replica_exchange
from numpyro_ebm.training import objectives

NAME = "ncsn_digits"


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below."""

    hidden: tuple[int, ...]
    num_levels: int
    num_steps: int
    batch_size: int
    learning_rate: float
    num_samples: int
    num_steps_per_level: int


FULL = Config(
    hidden=(256, 256, 256),
    num_levels=20,
    num_steps=15_000,
    batch_size=128,
    learning_rate=2e-3,
    num_samples=100,
    num_steps_per_level=50,
)
SMOKE = Config(
    hidden=(64, 64),
    num_levels=5,
    num_steps=500,
    batch_size=64,
    learning_rate=2e-3,
    num_samples=16,
    num_steps_per_level=30,
)

SIGMA_MAX = 5.0  # about the largest pixel-space distance between two digits (4.8)
SIGMA_MIN = 0.02  # a third of one grey level (1/16)
NUM_TEST = 180  # held-out digits: the reference for nearest-neighbour distances


# --------------------------------------------------------------------------------------------
# pieces shared with inverse_problem.py


def digit_split(key: jax.Array, num_test: int = NUM_TEST):
    """Shuffle the digits with ``key`` and split them: ``(train, test, train_labels,
    test_labels)``, images of shape ``(n, 64)`` in [0, 1]."""
    images, labels = datasets.digits()
    order = jax.random.permutation(key, images.shape[0])
    images, labels = np.asarray(images)[order], np.asarray(labels)[order]
    return images[num_test:], images[:num_test], labels[num_test:], labels[:num_test]


def sigma_ladder(num_levels: int) -> jax.Array:
    r"""The geometric noise ladder :math:`\sigma_1 = 5 > \dots > \sigma_L = 0.02`."""
    return objectives.geometric_sigmas(SIGMA_MAX, SIGMA_MIN, num_levels)


class Likelihood(NamedTuple):
    r"""The optional maximum-likelihood stage after NCSN (:mod:`numpyro_ebm.training.tempered`):
    score matching fits each mode's shape but not the modes' masses (Wenliang & Kanagawa
    2020), so ``num_steps`` more Adam updates, from ``learning_rate`` decaying to zero, add
    the likelihood term of :func:`~numpyro_ebm.training.replica_exchange_pcd` for the energy
    at the level ``sigma`` to the NCSN loss (kept, so every level keeps its score), as
    ``numpyro_ebm.workflow.train`` does at :math:`\sigma_L`. Its positives are training digits
    plus :math:`\mathcal{N}(0, \sigma^2 I)` noise, its negatives the cold replicas of
    ``num_chains`` persistent ladders of ``num_replicas`` temperatures up to
    ``max_temperature`` (the workflow's ladder), started at training digits, whose MALA step
    starts at :math:`0.2\,\sigma^2` (this example's Langevin step at that level) and adapts.
    The learning rate starts below the workflow's 3e-4 (not tried here) because the NCSN stage
    ends at 4e-5."""

    sigma: float
    num_steps: int
    num_chains: int
    learning_rate: float = 1e-4
    num_replicas: int = 5
    max_temperature: float = 40.0


def likelihood_objective(apply, train: np.ndarray, key: jax.Array, sigmas, stage: Likelihood):
    """The stage-2 objective of :class:`Likelihood`: NCSN's loss plus the likelihood term,
    whose ladders start at ``stage.num_chains`` training digits drawn with ``key``."""
    starts = train[np.asarray(jax.random.choice(key, len(train), (stage.num_chains,), False))]
    return training.combine(
        score=(objectives.ncsn(apply, sigmas), 1.0),
        likelihood=(
            training.replica_exchange_pcd(
                lambda params, x: apply(params, x, stage.sigma),
                temperatures=replica_exchange.geometric_ladder(
                    stage.num_replicas, stage.max_temperature
                ),
                num_chains=stage.num_chains,
                step_size=0.2 * stage.sigma**2,
                data_noise=stage.sigma,
                init_positions=starts,
            ),
            1.0,
        ),
    )


def train_ncsn(
    train: np.ndarray,
    key: jax.Array,
    config: Config,
    progress: bool = True,
    likelihood: Likelihood | None = None,
):
    r"""Fit a noise-conditional energy to ``train`` with :func:`~numpyro_ebm.training.ncsn`,
    then, if ``likelihood`` is given, run its maximum-likelihood stage (:class:`Likelihood`).

    Adam with a cosine-decayed learning rate (to 2 % of its initial value) over
    ``config.num_steps`` minibatch steps.

    Returns
    -------
    energy
        ``energy(x, sigma) -> scalar``, the trained :math:`E_\theta` (a pure function).
    history
        ``fit``'s history (per-chunk mean losses); the likelihood stage's under
        ``likelihood/`` keys.
    """
    init_key, fit_key = jax.random.split(key)
    net = ne.NoiseConditionalMLP(
        (train.shape[1],), hidden=config.hidden, output="energy", rngs=nnx.Rngs(params=init_key)
    )
    apply, params = ne.as_pure(net)
    sigmas = sigma_ladder(config.num_levels)
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_steps, alpha=0.02)
    result = ne.fit(
        objectives.ncsn(apply, sigmas),
        params,
        train,
        key=fit_key,
        optimizer=optax.adam(schedule),
        num_steps=config.num_steps,
        batch_size=config.batch_size,
        steps_per_chunk=min(500, config.num_steps),
        progress=progress,
    )
    history = dict(result.history)
    if likelihood is not None:
        result = ne.fit(
            likelihood_objective(apply, train, jax.random.fold_in(key, 3), sigmas, likelihood),
            result.params,
            train,
            key=jax.random.fold_in(key, 4),
            optimizer=optax.adam(
                optax.cosine_decay_schedule(
                    likelihood.learning_rate, likelihood.num_steps, alpha=0.0
                )
            ),
            num_steps=likelihood.num_steps,
            batch_size=min(likelihood.num_chains, len(train)),
            steps_per_chunk=min(100, likelihood.num_steps),
            progress=progress,
        )
        history |= {f"likelihood/{name}": v for name, v in result.history.items()}
    return functools.partial(apply, result.params), history


def langevin_step_size(sigmas) -> float:
    r""":math:`\epsilon = 0.2\,\sigma_L^2`: the variance of the last level's Langevin noise is
    a fifth of that level's noise variance."""
    return 0.2 * float(sigmas[-1]) ** 2


def nearest_neighbour(points: np.ndarray, reference: np.ndarray):
    """Euclidean distance from each row of ``points`` to its nearest row of ``reference``,
    and that row's index."""
    points, reference = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    d2 = (
        np.sum(points**2, axis=1)[:, None]
        - 2.0 * points @ reference.T
        + np.sum(reference**2, axis=1)[None, :]
    )
    index = np.argmin(d2, axis=1)
    return np.sqrt(np.maximum(d2[np.arange(d2.shape[0]), index], 0.0)), index


# --------------------------------------------------------------------------------------------
# this example


def sample_digits(energy, sigmas, key: jax.Array, config: Config) -> np.ndarray:
    """``config.num_samples`` digits: one annealed-Langevin sweep per chain from
    :math:`\\mathcal{N}(0, \\sigma_1^2 I)`, Tweedie-denoised at the end."""
    idata = ne.sample(
        energy,
        "annealed_langevin",
        key=key,
        event_shape=(64,),
        num_chains=config.num_samples,
        num_samples=1,
        num_warmup=0,
        init_scale=float(sigmas[0]),
        sigmas=sigmas,
        step_size=langevin_step_size(sigmas),
        num_steps_per_level=config.num_steps_per_level,
        denoise=True,
    )
    return np.asarray(idata.posterior["x"]).reshape(config.num_samples, 64)


def quality(samples, train, test, key) -> dict[str, float]:
    """Nearest-neighbour distances to the training set of the samples, of held-out digits
    and of uniform-noise images."""
    noise = np.asarray(jax.random.uniform(key, samples.shape))
    d_samples, _ = nearest_neighbour(samples, train)
    return {
        "nn_distance_samples": float(d_samples.mean()),
        "nn_distance_heldout_digits": float(nearest_neighbour(test, train)[0].mean()),
        "nn_distance_uniform_noise": float(nearest_neighbour(noise, train)[0].mean()),
        "min_nn_distance_samples": float(d_samples.min()),
    }


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    key_split, key_train, key_sample, key_noise, key_show = jax.random.split(
        jax.random.key(args.seed), 5
    )
    train, test, train_labels, test_labels = digit_split(key_split)
    classes = DigitClasses(train, train_labels, test, test_labels)
    sigmas = sigma_ladder(config.num_levels)

    started = time.perf_counter()
    energy, history = train_ncsn(train, key_train, config, progress=not args.smoke)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    samples = sample_digits(energy, sigmas, key_sample, config)
    sample_seconds = time.perf_counter() - started

    weights = classes.weights(samples)  # independent chains: one sample each
    metrics = quality(samples, train, test, key_noise) | {
        "classifier_accuracy": classes.accuracy,
        "classes": summary(weights),
        "final_loss": float(history["loss"][-1]),
        "train_seconds": train_seconds,
        "sample_seconds": sample_seconds,
        "num_samples": config.num_samples,
        "num_train_steps": config.num_steps,
    }

    ncols = int(np.ceil(np.sqrt(config.num_samples)))
    shown = np.asarray(jax.random.choice(key_show, train.shape[0], (config.num_samples,), False))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), width_ratios=[1, 1, 1.2])
    show_images(axes[0], samples, ncols, f"annealed Langevin samples ({config.num_samples})")
    show_images(axes[1], train[shown], ncols, "training digits")
    plot_class_histogram(axes[2], {"annealed Langevin samples": weights})
    fig.suptitle(
        "NCSN energy on 8x8 digits; nearest-neighbour distance to the training set: "
        f"samples {metrics['nn_distance_samples']:.2f}, held-out digits "
        f"{metrics['nn_distance_heldout_digits']:.2f}, noise "
        f"{metrics['nn_distance_uniform_noise']:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out / "samples.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["step"], history["loss"])
    ax.set(xlabel="step", ylabel="NCSN loss (chunk mean)", title="training")
    fig.tight_layout()
    fig.savefig(args.out / "loss.png", dpi=120)
    plt.close(fig)

    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"ncsn_digits ({'smoke' if args.smoke else 'full'} size)")
    print(
        f"  trained {config.num_steps} steps in {train_seconds:.1f} s, final loss "
        f"{metrics['final_loss']:.3f}"
    )
    print(f"  drew {config.num_samples} samples in {sample_seconds:.1f} s")
    print("  mean nearest-neighbour distance to the training set:")
    print(f"    samples            {metrics['nn_distance_samples']:.3f}")
    print(f"    held-out digits    {metrics['nn_distance_heldout_digits']:.3f}  (the target)")
    print(f"    uniform noise      {metrics['nn_distance_uniform_noise']:.3f}")
    print(
        f"  closest sample to a training digit: {metrics['min_nn_distance_samples']:.3f} "
        "(0 would be a copy)"
    )
    print(
        f"  classes (logistic regression, held-out accuracy {classes.accuracy:.3f}): "
        f"{describe(weights)}"
    )
    print(f"  figures: {args.out / 'samples.png'}, {args.out / 'loss.png'}")
    return metrics


if __name__ == "__main__":
    main()
