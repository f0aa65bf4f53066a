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
import optax
from _digits import DigitClasses, describe, plot_class_histogram, show_images, summary

import numpyro_ebm as ne
from numpyro_ebm.energy import BoundEnergy
from numpyro_ebm.evidence.rbm_ais import rbm_ais
from numpyro_ebm.models.rbm import BernoulliRBM
from numpyro_ebm.training.rbm import fit_rbm, rbm_optimizer, train_rbm

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
    ladders: int  # replica exchange PCD's persistent ladders
    ladder_size: int
    class_chains: int  # block Gibbs chains whose draws are classified
    class_warmup: int
    class_draws: int
    thinning: int
    pt_chains: int  # parallel tempering over block Gibbs, against plain block Gibbs
    pt_replicas: int
    pt_warmup: int
    pt_draws: int


FULL = Config(
    epochs=20,
    hidden=16,
    large_hidden=500,
    large_epochs=20,
    ais_chains=100,
    ais_runs=5,
    ais_betas=2000,
    ladders=100,
    ladder_size=8,
    class_chains=50,
    class_warmup=1000,
    class_draws=1000,
    thinning=10,
    pt_chains=20,
    pt_replicas=32,
    pt_warmup=1000,
    pt_draws=2000,
)
SMOKE = Config(
    epochs=1,
    hidden=8,
    large_hidden=20,
    large_epochs=1,
    ais_chains=10,
    ais_runs=2,
    ais_betas=20,
    ladders=4,
    ladder_size=3,
    class_chains=4,
    class_warmup=10,
    class_draws=20,
    thinning=1,
    pt_chains=2,
    pt_replicas=3,
    pt_warmup=40,
    pt_draws=20,
)
BATCH_SIZE = 10
LEARNING_RATE = 0.05
MOMENTUM = 0.5
WEIGHT_DECAY = 1e-4
METHODS = {"CD-1": ("cd", 1), "CD-10": ("cd", 10), "PCD-1": ("pcd", 1)}
#: replica exchange PCD's ladder: geometric temperatures from 1 to this
LADDER_MAX_TEMPERATURE = 10.0
#: parallel tempering's hottest temperature when sampling a trained RBM (its ladder adapted)
PT_MAX_TEMPERATURE = 4.0


def binarized_digits(seed: int = 0) -> tuple[np.ndarray, ...]:
    """scikit-learn's digits with pixel >= 8 set to 1, shuffled by NumPy's
    ``default_rng(seed)`` and split into 1500 training and 297 held-out images (the peer
    benchmark's split, ``shared/peers/sklearn_rbm_bench.py``): ``(train, test, train_labels,
    test_labels)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.data))
    images, labels = (digits.data[order] >= 8).astype(np.float32), digits.target[order]
    return images[:NUM_TRAIN], images[NUM_TRAIN:], labels[:NUM_TRAIN], labels[NUM_TRAIN:]


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


def train_large(train, config, key, method, progress=False):
    """The large RBM with a learning rate decaying linearly to 0 over the same number of
    updates as the constant-rate runs (Tieleman 2008): PCD-1 with ``BATCH_SIZE`` chains, or PCD
    over ``config.ladders`` replica-exchange ladders of ``config.ladder_size`` temperatures."""
    num_steps = config.large_epochs * (train.shape[0] // BATCH_SIZE)
    model = BernoulliRBM(train.shape[1], config.large_hidden)
    init_key, fit_key = jax.random.split(key)
    options = {}
    if method == "replica_exchange":
        options = {
            "num_chains": config.ladders,
            "temperatures": np.geomspace(1.0, LADDER_MAX_TEMPERATURE, config.ladder_size),
        }
    schedule = optax.linear_schedule(LEARNING_RATE, 0.0, num_steps)
    return fit_rbm(
        model,
        model.init(init_key, 0.01, data=train),
        train,
        key=fit_key,
        method=method,
        optimizer=rbm_optimizer(schedule, MOMENTUM, WEIGHT_DECAY),
        num_steps=num_steps,
        batch_size=BATCH_SIZE,
        steps_per_chunk=num_steps // config.large_epochs,
        progress=progress,
        **options,
    )


def block_gibbs_draws(fit, key, config) -> np.ndarray:
    """Draws of ``config.class_chains`` block Gibbs chains from noise, ``(chains, draws, 64)``,
    after ``config.class_warmup`` sweeps, every ``config.thinning``-th sweep."""
    data = ne.sample(
        BoundEnergy(fit.model.free_energy, fit.params),
        "block_gibbs",
        key=key,
        event_shape=(fit.model.n_visible,),
        support="01",
        num_chains=config.class_chains,
        num_warmup=config.class_warmup,
        num_samples=config.class_draws,
        thinning=config.thinning,
    )
    return np.asarray(data.posterior["x"])


def sampler_or_model(fit, key, config):
    """Plain block Gibbs against parallel tempering over block Gibbs on the same RBM, through
    :func:`numpyro_ebm.compare`: the tempered chains (an adapted ladder of
    ``config.pt_replicas`` temperatures up to :data:`PT_MAX_TEMPERATURE`) cross between the
    classes; if they mix and their class weights agree with block Gibbs', the samples show the
    model, not a sampler stuck in one class."""
    tempered = ne.samplers.parallel_tempering(
        inner=ne.samplers.block_gibbs(),
        num_replicas=config.pt_replicas,
        max_temperature=PT_MAX_TEMPERATURE,
        adapt_ladder=True,
    )
    return ne.compare(
        BoundEnergy(fit.model.free_energy, fit.params),
        ["block_gibbs", tempered],
        key=key,
        event_shape=(fit.model.n_visible,),
        support="01",
        num_chains=config.pt_chains,
        num_warmup=config.pt_warmup,
        num_samples=config.pt_draws,
    )


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


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    train, test, train_labels, test_labels = binarized_digits(args.seed)
    keys = iter(jax.random.split(jax.random.key(args.seed), 16))
    classes = DigitClasses(train, train_labels, test, test_labels)
    print(f"classifier (logistic regression): held-out accuracy {classes.accuracy:.3f}")

    curves, fits, seconds = {}, {}, {}
    for label, (method, k) in METHODS.items():
        started = time.perf_counter()
        fits[label], curves[label] = train_with_eval(
            train, test, method, k, config.hidden, config.epochs, next(keys), not args.smoke
        )
        seconds[label] = time.perf_counter() - started
        print(
            f"{label}: held-out log-likelihood {curves[label][-1][1]:.3f} nats "
            f"after {config.epochs} epochs ({seconds[label]:.1f} s with evaluation)"
        )

    small = fits["PCD-1"]
    small_ais = ais_log_likelihood(small.model, small.params, train, test, next(keys), config)
    small_exact = curves["PCD-1"][-1][1]
    print(
        f"AIS check on the {config.hidden}-unit PCD RBM: {small_ais['test_loglik']:.3f} +- "
        f"{small_ais['log_z_stderr']:.3f} vs exact {small_exact:.3f}"
    )

    # the large RBM three ways, at the same number of updates
    large, large_seconds = {}, {}
    for label, train_fn in {
        "PCD-1": lambda key: train_with_eval(
            train, test, "pcd", 1, config.large_hidden, config.large_epochs, key, not args.smoke
        )[0],
        "PCD-1, decaying rate": lambda key: train_large(train, config, key, "pcd"),
        "replica exchange": lambda key: train_large(train, config, key, "replica_exchange"),
    }.items():
        started = time.perf_counter()
        large[label] = train_fn(next(keys))
        large_seconds[label] = time.perf_counter() - started
    large_ais, draws, weights = {}, {}, {}
    for label, fit in large.items():
        large_ais[label] = ais_log_likelihood(
            fit.model, fit.params, train, test, next(keys), config
        )
        draws[label] = block_gibbs_draws(fit, next(keys), config)
        weights[label] = classes.weights(draws[label])
        print(
            f"{label}, {config.large_hidden} hidden: AIS held-out log-likelihood "
            f"{large_ais[label]['test_loglik']:.3f} +- {large_ais[label]['log_z_stderr']:.3f} "
            f"nats (training {large_seconds[label]:.1f} s); samples: {describe(weights[label])}"
        )
    draws_small = block_gibbs_draws(small, next(keys), config)
    weights_small = classes.weights(draws_small)
    print(f"PCD-1, {config.hidden} hidden: samples: {describe(weights_small)}")

    # the sampler or the model? tempered chains on the constant-rate PCD-1 RBM
    started = time.perf_counter()
    comparison = sampler_or_model(large["PCD-1"], next(keys), config)
    pt_seconds = time.perf_counter() - started
    tempered_run = comparison.idata["parallel_tempering"]
    weights_pt = classes.weights(np.asarray(tempered_run.posterior["x"]))
    round_trips = int(tempered_run.sample_stats["round_trips"].sum())
    print(comparison)
    print(
        f"parallel tempering on the PCD-1 {config.large_hidden}-hidden RBM: {round_trips} round "
        f"trips; {describe(weights_pt)} (block Gibbs: {describe(weights['PCD-1'])})"
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
        "classifier_accuracy": classes.accuracy,
        "curves": {label: [[e, ll] for e, ll in curve] for label, curve in curves.items()},
        "final_test_loglik": {label: curve[-1][1] for label, curve in curves.items()},
        "best_test_loglik": {label: max(ll for _, ll in curve) for label, curve in curves.items()},
        "train_seconds_with_eval": seconds,
        "ais_check_small": small_ais | {"exact_test_loglik": small_exact},
        "small_classes": summary(weights_small),
        "large_hidden": config.large_hidden,
        "large_epochs": config.large_epochs,
        "large_train_seconds": large_seconds,
        "large_ais": large_ais,
        "large_classes": {label: summary(w) for label, w in weights.items()},
        "ladders": config.ladders,
        "ladder_size": config.ladder_size,
        "ais": {"chains": config.ais_chains, "runs": config.ais_runs, "betas": config.ais_betas},
        "sampler_or_model": {
            "table": json.loads(comparison.table.to_json(orient="index")),
            "notes": list(comparison.notes),
            "parallel_tempering_classes": summary(weights_pt),
            "round_trips": round_trips,
            "seconds": pt_seconds,
        },
    }

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, curve in curves.items():
        ax.plot(*np.asarray(curve).T, marker=".", label=label)
    for (label, result), style in zip(large_ais.items(), ["--", "-.", ":"], strict=True):
        ax.axhline(
            result["test_loglik"],
            color="k",
            ls=style,
            lw=1,
            label=f"{label}, {config.large_hidden} hidden (AIS)",
        )
    ax.set(
        xlabel="epoch (150 updates of 10)",
        ylabel="held-out log-likelihood (nats)",
        title=f"{config.hidden} hidden units, exact log Z",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "loglik.png", dpi=110)
    plt.close(fig)

    ncols = 10
    last = {label: d[:, -1] for label, d in draws.items()}  # each chain's last draw
    fig, axes = plt.subplots(1, 4, figsize=(15, 4.2), width_ratios=[1, 1, 1, 1.3])
    show_images(axes[0], last["PCD-1"], ncols, f"PCD-1, {config.large_hidden} hidden")
    show_images(axes[1], last["replica exchange"], ncols, "replica exchange PCD, same updates")
    show_images(axes[2], test[: config.class_chains], ncols, "held-out digits")
    plot_class_histogram(
        axes[3],
        {
            "PCD-1": weights["PCD-1"],
            "PCD-1, tempered sampler": weights_pt,
            "PCD-1, decaying rate": weights["PCD-1, decaying rate"],
            "replica exchange PCD": weights["replica exchange"],
        },
    )
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
        np.asarray(large["replica exchange"].params.W).T[:shown],
        10,
        f"replica exchange PCD: first {shown} of {config.large_hidden} filters",
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
