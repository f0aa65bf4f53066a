r"""Restricted Boltzmann machines on binarized 8x8 digits: CD-1, CD-10 and PCD with exact
held-out log-likelihoods, and a 500-unit RBM scored by annealed importance sampling.

scikit-learn's digits are binarized (pixel >= 8 of 16) and split as the peer benchmark does
(fixed shuffle, 1500 training images, 297 held out). A :class:`~numpyro_ebm.models.rbm.BernoulliRBM`
with 16 hidden units is trained three ways through :func:`~numpyro_ebm.training.rbm.train_rbm`
(block Gibbs negatives, the Rao-Blackwellized free-energy gradient, SGD with momentum 0.5,
batch 10, learning rate 0.05, weight decay 1e-4 on the weights):

* CD-1 and CD-10: chains restarted at the data batch, 1 or 10 block Gibbs sweeps;
* PCD-1: 10 persistent chains (Tieleman 2008), one sweep per update.

With 16 hidden units :math:`\log Z` is exact (a sum over :math:`2^{16}` hidden states), so the
held-out log-likelihood :math:`\frac1n\sum_k \log p(v_k) = -\overline{F(v)} - \log Z` is
reported after every epoch (150 updates). A 500-unit RBM trained by PCD is too large to
enumerate; its :math:`\log Z` comes from AIS with the base-rate RBM of Salakhutdinov & Murray
(2008), with a standard error over independent runs (and, as a check, AIS on the 16-unit RBM
against its exact value).

Writes ``loglik.png`` (held-out log-likelihood per epoch), ``samples.png`` (block Gibbs samples
of the PCD and 500-unit RBMs beside held-out digits), ``filters.png`` (the weights of the
hidden units as 8x8 images) and ``metrics.json`` to ``--out``; prints the numbers.
``--smoke`` runs a tiny configuration in seconds.

Run: ``python examples/rbm_digits.py [--smoke] [--out DIR] [--seed N]``.

References
----------
G. E. Hinton (2002). Training products of experts by minimizing contrastive divergence.
Neural Computation 14(8).
T. Tieleman (2008). Training restricted Boltzmann machines using approximations to the
likelihood gradient. ICML.
R. Salakhutdinov and I. Murray (2008). On the quantitative analysis of deep belief networks.
ICML.
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

from numpyro_ebm.evidence.rbm_ais import rbm_ais
from numpyro_ebm.kernels import block_gibbs
from numpyro_ebm.models.rbm import BernoulliRBM
from numpyro_ebm.training.rbm import train_rbm

NAME = "rbm_digits"
NUM_TRAIN = 1500  # the peer benchmark's split: 1500 training digits, 297 held out


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below."""

    epochs: int
    hidden: int
    large_hidden: int
    large_epochs: int
    ais_chains: int
    ais_runs: int
    ais_betas: int
    num_samples: int
    gibbs_sweeps: int


FULL = Config(
    epochs=20,
    hidden=16,
    large_hidden=500,
    large_epochs=20,
    ais_chains=100,
    ais_runs=5,
    ais_betas=2000,
    num_samples=50,
    gibbs_sweeps=1000,
)
SMOKE = Config(
    epochs=1,
    hidden=8,
    large_hidden=20,
    large_epochs=1,
    ais_chains=10,
    ais_runs=2,
    ais_betas=20,
    num_samples=10,
    gibbs_sweeps=20,
)
BATCH_SIZE = 10
LEARNING_RATE = 0.05
MOMENTUM = 0.5
WEIGHT_DECAY = 1e-4
METHODS = {"CD-1": ("cd", 1), "CD-10": ("cd", 10), "PCD-1": ("pcd", 1)}


def binarized_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits with pixel >= 8 set to 1, shuffled by NumPy's
    ``default_rng(seed)`` and split into 1500 training and 297 held-out images (the peer
    benchmark's split, ``shared/peers/sklearn_rbm_bench.py``)."""
    from sklearn.datasets import load_digits

    images = (load_digits().data >= 8).astype(np.float32)
    images = images[np.random.default_rng(seed).permutation(len(images))]
    return images[:NUM_TRAIN], images[NUM_TRAIN:]


def train_with_eval(train, test, method, k, hidden, epochs, key, progress=False):
    """Train with :func:`train_rbm`, one chunk per epoch; returns the fit and, for an RBM
    small enough, the exact held-out log-likelihood after every epoch."""
    steps_per_epoch = train.shape[0] // BATCH_SIZE
    model = BernoulliRBM(train.shape[1], hidden)
    log_likelihood = jax.jit(model.log_likelihood)
    curve = []

    def evaluate(step, params, history):
        del history
        if hidden <= 20:  # exact: a sum over the 2^hidden hidden states
            curve.append((step / steps_per_epoch, float(log_likelihood(params, test))))

    result = train_rbm(
        train,
        hidden,
        key=key,
        method=method,
        k=k,
        learning_rate=LEARNING_RATE,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        num_steps=epochs * steps_per_epoch,
        batch_size=BATCH_SIZE,
        steps_per_chunk=steps_per_epoch,
        callbacks=[evaluate],
        progress=progress,
    )
    return result, curve


def gibbs_samples(model, params, key, num_samples, sweeps) -> np.ndarray:
    """``num_samples`` independent chains of ``sweeps`` block Gibbs sweeps from noise; the
    visible probabilities :math:`p(v = 1 \\mid h)` of each chain's last hidden draw (the
    usual way to show an RBM's samples)."""
    algorithm = block_gibbs.as_top_level_api(model=model, params=params)

    def chain(chain_key):
        key_start, key_run = jax.random.split(chain_key)
        start = jax.random.bernoulli(key_start, 0.5, (model.n_visible,)).astype(jnp.float32)

        def sweep(state, step_key):
            return algorithm.step(step_key, state)[0], None

        state, _ = jax.lax.scan(sweep, algorithm.init(start), jax.random.split(key_run, sweeps))
        return model.visible_probs(params, state.hidden)

    return np.asarray(jax.jit(jax.vmap(chain))(jax.random.split(key, num_samples)))


def ais_log_likelihood(model, params, train, test, key, config) -> dict[str, float]:
    """Held-out log-likelihood with :math:`\\log Z` from AIS (base rates of ``train``)."""
    started = time.perf_counter()
    result = rbm_ais(
        key,
        model,
        params,
        data=train,
        num_chains=config.ais_chains,
        num_runs=config.ais_runs,
        num_betas=config.ais_betas,
    )
    free = jax.vmap(model.free_energy, (None, 0))(params, jnp.asarray(test))
    return {
        "log_z": float(result.log_normalizer),
        "log_z_stderr": float(result.runs_standard_error),
        "test_loglik": float(-jnp.mean(free) - result.log_normalizer),
        "seconds": time.perf_counter() - started,
    }


def show_images(ax, images: np.ndarray, ncols: int, title: str, signed: bool = False) -> None:
    """Tile ``images`` (rows of 64 pixels) into one grid on ``ax``, 1 pixel apart."""
    nrows = -(-images.shape[0] // ncols)
    canvas = np.full((9 * nrows + 1, 9 * ncols + 1), np.nan)
    for i, image in enumerate(images):
        if signed:
            image = image / (np.abs(image).max() + 1e-12)
        row, col = divmod(i, ncols)
        canvas[1 + 9 * row : 9 * row + 9, 1 + 9 * col : 9 * col + 9] = image.reshape(8, 8)
    cmap = plt.get_cmap("RdBu_r" if signed else "gray_r").with_extremes(bad="#d8e4f0")
    low = -1.0 if signed else 0.0
    ax.imshow(canvas, cmap=cmap, vmin=low, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    train, test = binarized_digits(args.seed)
    keys = jax.random.split(jax.random.key(args.seed), 8)

    curves, fits, seconds = {}, {}, {}
    for (label, (method, k)), key in zip(METHODS.items(), keys[:3], strict=True):
        started = time.perf_counter()
        fits[label], curves[label] = train_with_eval(
            train, test, method, k, config.hidden, config.epochs, key, progress=not args.smoke
        )
        seconds[label] = time.perf_counter() - started
        print(
            f"{label}: held-out log-likelihood {curves[label][-1][1]:.3f} nats "
            f"after {config.epochs} epochs ({seconds[label]:.1f} s with evaluation)"
        )

    small = fits["PCD-1"]
    small_ais = ais_log_likelihood(small.model, small.params, train, test, keys[3], config)
    small_exact = curves["PCD-1"][-1][1]

    started = time.perf_counter()
    large, _ = train_with_eval(
        train,
        test,
        "pcd",
        1,
        config.large_hidden,
        config.large_epochs,
        keys[4],
        progress=not args.smoke,
    )
    large_seconds = time.perf_counter() - started
    large_ais = ais_log_likelihood(large.model, large.params, train, test, keys[5], config)
    print(
        f"PCD-1, {config.large_hidden} hidden units: AIS held-out log-likelihood "
        f"{large_ais['test_loglik']:.3f} +- {large_ais['log_z_stderr']:.3f} nats "
        f"(training {large_seconds:.1f} s, AIS {large_ais['seconds']:.1f} s)"
    )
    print(
        f"AIS check on the {config.hidden}-unit PCD RBM: {small_ais['test_loglik']:.3f} +- "
        f"{small_ais['log_z_stderr']:.3f} vs exact {small_exact:.3f}"
    )

    samples_small = gibbs_samples(
        small.model, small.params, keys[6], config.num_samples, config.gibbs_sweeps
    )
    samples_large = gibbs_samples(
        large.model, large.params, keys[7], config.num_samples, config.gibbs_sweeps
    )

    metrics = {
        "num_train": int(train.shape[0]),
        "num_test": int(test.shape[0]),
        "hidden": config.hidden,
        "epochs": config.epochs,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "momentum": MOMENTUM,
        "weight_decay": WEIGHT_DECAY,
        "curves": {label: [[e, ll] for e, ll in curve] for label, curve in curves.items()},
        "final_test_loglik": {label: curve[-1][1] for label, curve in curves.items()},
        "best_test_loglik": {label: max(ll for _, ll in curve) for label, curve in curves.items()},
        "train_seconds_with_eval": seconds,
        "ais_check_small": small_ais | {"exact_test_loglik": small_exact},
        "large_hidden": config.large_hidden,
        "large_epochs": config.large_epochs,
        "large_train_seconds": large_seconds,
        "large_ais": large_ais,
        "ais": {"chains": config.ais_chains, "runs": config.ais_runs, "betas": config.ais_betas},
    }

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, curve in curves.items():
        ax.plot(*np.asarray(curve).T, marker=".", label=label)
    ax.axhline(
        large_ais["test_loglik"],
        color="k",
        ls="--",
        lw=1,
        label=f"PCD-1, {config.large_hidden} hidden (AIS)",
    )
    ax.set(
        xlabel="epoch (150 updates of 10)",
        ylabel="held-out log-likelihood (nats)",
        title=f"{config.hidden} hidden units, exact log Z",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "loglik.png", dpi=110)
    plt.close(fig)

    ncols = 10
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2))
    show_images(axes[0], samples_small, ncols, f"PCD-1, {config.hidden} hidden: samples")
    show_images(axes[1], samples_large, ncols, f"PCD-1, {config.large_hidden} hidden: samples")
    show_images(axes[2], test[: config.num_samples], ncols, "held-out digits")
    fig.tight_layout()
    fig.savefig(args.out / "samples.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    show_images(
        axes[0], np.asarray(small.params.W).T, 4, f"PCD-1 filters ({config.hidden})", signed=True
    )
    shown = min(100, config.large_hidden)
    show_images(
        axes[1],
        np.asarray(large.params.W).T[:shown],
        10,
        f"first {shown} of {config.large_hidden} filters",
        signed=True,
    )
    fig.tight_layout()
    fig.savefig(args.out / "filters.png", dpi=110)
    plt.close(fig)

    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"figures: {args.out / 'loglik.png'}, {args.out / 'samples.png'}, "
        f"{args.out / 'filters.png'}"
    )
    return metrics


if __name__ == "__main__":
    main()
