"""The end-to-end workflow behind the ``numpyro-ebm`` command: train a network on data, save
it, load it back as an energy, and sample, compare and diagnose it.

Every step is a function of its inputs and a ``jax.random`` key; the command line only parses
arguments and reads files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from numpyro_ebm import storage, training
from numpyro_ebm._checks import check_finite_array, check_int, check_positive
from numpyro_ebm.kernels import replica_exchange
from numpyro_ebm.nets import as_pure

__all__ = [
    "OBJECTIVES",
    "TrainSettings",
    "Trained",
    "energy_of",
    "held_out_log_likelihood",
    "load",
    "noise_ladder",
    "sampler_options",
    "split_held_out",
    "train",
]

OBJECTIVES = ("ncsn", "dsm", "score_matching", "sliced_score_matching", "cd", "pcd")
#: The objectives blind to the masses of separated modes, which the likelihood stage follows.
SCORE_OBJECTIVES = ("ncsn", "dsm", "score_matching", "sliced_score_matching")


class TrainSettings(NamedTuple):
    """How :func:`train` trains.

    **Stage 1**, the objective: Adam with a cosine decay of the learning rate from
    ``learning_rate`` to 3% of it over ``num_steps`` (Loshchilov & Hutter 2017; on the demo's
    8-Gaussian ring, 6000 steps resolve the eight modes that a constant 1e-3 blurs into a
    ring). ``sigma_max``/``sigma_min`` default to :func:`noise_ladder`'s choice; ``sigma`` is
    the single noise level of ``dsm``; ``cd_steps`` and ``step_size`` are the Langevin
    negatives of ``cd``/``pcd``.

    **Stage 2**, maximum likelihood (score-based objectives only; ``likelihood_steps=0``
    skips it): score matching fits each mode's shape but not the modes' relative masses
    (:mod:`numpyro_ebm.training.tempered`), so ``likelihood_steps`` more updates add the
    likelihood term of :func:`~numpyro_ebm.training.tempered.replica_exchange_pcd`, whose
    ``likelihood_chains`` persistent ladders of ``num_replicas`` temperatures up to
    ``max_temperature`` cross between modes, to the stage-1 objective (kept, so every noise
    level keeps its shape), with Adam decaying from ``likelihood_learning_rate`` to zero.

    ``held_out``: the fraction of the data kept out of training, on which the trained
    density's log-likelihood is estimated (AIS, :func:`held_out_log_likelihood`); 0: none.
    """

    objective: str = "ncsn"
    num_steps: int = 6000
    batch_size: int = 256
    learning_rate: float = 3e-3
    hidden: tuple[int, ...] = (128, 128, 128)
    num_sigmas: int = 10
    sigma_max: float | None = None
    sigma_min: float | None = None
    sigma: float = 0.1
    cd_steps: int = 20
    step_size: float = 0.01
    checkpoint_every: int = 500
    likelihood_steps: int = 1000
    likelihood_learning_rate: float = 3e-4
    likelihood_chains: int = 512
    num_replicas: int = 5
    max_temperature: float = 40.0
    held_out: float = 0.1

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; known: {list(OBJECTIVES)}")
        for name in (
            "num_steps",
            "batch_size",
            "num_sigmas",
            "cd_steps",
            "checkpoint_every",
            "likelihood_chains",
        ):
            check_int(name, getattr(self, name))
        check_int("likelihood_steps", self.likelihood_steps, minimum=0)
        check_int("num_replicas", self.num_replicas, minimum=2)
        for name in ("learning_rate", "sigma", "step_size", "likelihood_learning_rate"):
            check_positive(name, getattr(self, name))
        if not float(self.max_temperature) > 1.0:
            raise ValueError(f"max_temperature must be > 1, got {self.max_temperature!r}")
        if not 0.0 <= float(self.held_out) < 0.5:
            raise ValueError(f"held_out must lie in [0, 0.5), got {self.held_out!r}")
        for width in self.hidden:
            check_int("hidden", width)

    @property
    def likelihood_stage(self) -> bool:
        """Whether :func:`train` runs the maximum-likelihood stage (score-based objectives)."""
        return self.likelihood_steps > 0 and self.objective in SCORE_OBJECTIVES


class Trained(NamedTuple):
    """A trained network: the module, its architecture ``spec`` and ``metadata`` (objective,
    noise ladder, data shape, training history summary)."""

    network: nnx.Module
    spec: dict[str, Any]
    metadata: dict[str, Any]


def noise_ladder(
    data: np.ndarray, num: int, sigma_max: float | None = None, sigma_min: float | None = None
) -> np.ndarray:
    r"""The geometric noise ladder of NCSN for ``data`` (n, ...).

    By default :math:`\sigma_1` is the largest Euclidean distance between two data points (of
    a subsample of 1000), so that the largest noise level connects every mode (Song & Ermon
    2020, technique 1), and :math:`\sigma_L = \sigma_1 / 100`.
    """
    flat = np.asarray(data, np.float64).reshape(len(data), -1)[:1000]
    if sigma_max is None:
        sigma_max = float(np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1).max()))
    if sigma_min is None:
        sigma_min = sigma_max / 100.0
    return np.asarray(training.geometric_sigmas(sigma_max, sigma_min, num), np.float32)


def _objective(settings: TrainSettings, apply, sigmas) -> training.Objective:
    """The objective ``settings.objective`` (pcd's replay buffer holds 10,000 chains)."""
    name = settings.objective
    if name == "ncsn":
        return training.ncsn(apply, sigmas)
    if name == "dsm":
        return training.dsm(apply, settings.sigma)
    if name == "score_matching":
        return training.score_matching(apply)
    if name == "sliced_score_matching":
        return training.sliced_score_matching(apply)
    options = dict(k=settings.cd_steps, step_size=settings.step_size, alpha=0.01)
    if name == "cd":
        return training.cd(apply, **options)
    return training.pcd(apply, **options, capacity=10_000)


def train(
    data: np.ndarray,
    settings: TrainSettings,
    *,
    key: jax.Array,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    truth: Callable | None = None,
) -> tuple[Trained, training.FitResult]:
    """Train an energy on ``data`` (n, *event_shape) and save it.

    ``ncsn`` trains a :class:`~numpyro_ebm.nets.NoiseConditionalMLP` energy over the noise
    ladder of :func:`noise_ladder`; every other objective an
    :class:`~numpyro_ebm.nets.MLPEnergy`. A fraction ``settings.held_out`` of the data (a
    random subset, a function of ``key``) is kept out of training. Score-based objectives are
    followed by the maximum-likelihood stage of :class:`TrainSettings`, which sets the masses
    of the modes. Writes ``out_dir/checkpoints`` (and ``checkpoints/likelihood`` for stage 2;
    Orbax, every ``checkpoint_every`` steps; ``resume=True`` continues a killed run exactly),
    ``out_dir/network`` (:func:`~numpyro_ebm.storage.save_network`) and
    ``out_dir/training.json``: the stage-1 history, stage 2's under ``likelihood/`` keys, and
    ``held_out``, the held-out log-likelihood of :func:`held_out_log_likelihood` (beside
    the true density's, where ``truth(points, noise)``, the data's log density smoothed by
    a normal of standard deviation ``noise``, is known, as for the embedded toy sets:
    :func:`~numpyro_ebm.datasets.toy_log_prob`).
    Returns the trained network and stage 1's :class:`~numpyro_ebm.training.FitResult`
    (with stage 2's history merged in).
    """
    settings.check()
    data = np.asarray(data, np.float32)
    if data.ndim < 2 or len(data) < 2:
        raise ValueError(f"data must have shape (n, *event_shape) with n >= 2, got {data.shape}")
    check_finite_array("data", data)
    data, held_out = split_held_out(data, settings.held_out, jax.random.fold_in(key, 2))
    if settings.batch_size > len(data):
        raise ValueError(
            f"batch_size={settings.batch_size} exceeds the {len(data)} training points"
            + (f" ({len(held_out)} more are held out)" if len(held_out) else "")
        )
    event_shape = list(data.shape[1:])
    out_dir = Path(out_dir)
    net_key, fit_key = jax.random.split(key)
    seed = int(jax.random.randint(net_key, (), 0, 2**31 - 1))
    metadata: dict[str, Any] = {"objective": settings.objective, "num_data": len(data)}
    if settings.objective == "ncsn":
        sigmas = noise_ladder(data, settings.num_sigmas, settings.sigma_max, settings.sigma_min)
        metadata["sigmas"] = sigmas.tolist()
        spec = {"network": "NoiseConditionalMLP", "event_shape": event_shape}
    else:
        sigmas = None
        spec = {"network": "MLPEnergy", "event_shape": event_shape}
    spec["hidden"] = list(settings.hidden)
    network = storage.build_network(spec, seed)
    apply, params = as_pure(network)
    objective = _objective(settings, apply, sigmas)
    chunk = chunk_length(settings.checkpoint_every)
    result = training.fit(
        objective,
        params,
        data,
        key=fit_key,
        optimizer=optax.adam(
            optax.cosine_decay_schedule(settings.learning_rate, settings.num_steps, alpha=0.03)
        ),
        num_steps=settings.num_steps,
        batch_size=settings.batch_size,
        steps_per_chunk=chunk,
        checkpoint_dir=out_dir / "checkpoints",
        checkpoint_every=settings.checkpoint_every,
        resume=resume,
        progress=progress,
        monitor_mixing=settings.objective == "pcd",
    )
    history = {name: np.asarray(values).tolist() for name, values in result.history.items()}
    metadata["final_loss"] = float(result.history["loss"][-1])
    metadata["num_steps"] = settings.num_steps
    if settings.likelihood_stage:
        level = _data_noise(settings, sigmas)
        stage = training.fit(
            training.combine(
                score=(objective, 1.0),
                likelihood=(_likelihood_objective(settings, apply, level, data, key), 1.0),
            ),
            result.params,
            data,
            key=jax.random.fold_in(key, 4),
            optimizer=optax.adam(
                optax.cosine_decay_schedule(
                    settings.likelihood_learning_rate, settings.likelihood_steps, alpha=0.0
                )
            ),
            num_steps=settings.likelihood_steps,
            batch_size=min(settings.likelihood_chains, len(data)),
            steps_per_chunk=chunk,
            checkpoint_dir=out_dir / "checkpoints" / "likelihood",
            checkpoint_every=settings.checkpoint_every,
            resume=resume,
            progress=progress,
        )
        history.update(
            {f"likelihood/{k}": np.asarray(v).tolist() for k, v in stage.history.items()}
        )
        metadata["likelihood_steps"] = settings.likelihood_steps
        metadata["likelihood_final"] = {
            k: float(np.asarray(v)[-1]) for k, v in stage.history.items() if k != "step"
        }
        result = result._replace(params=stage.params, loss_state=stage.loss_state)
    nnx.update(network, result.params)
    trained = Trained(network, spec, metadata)
    if len(held_out) >= 2:
        record = held_out_log_likelihood(
            trained, held_out, key=jax.random.fold_in(key, 5), truth=truth
        )
        metadata["held_out"] = history["held_out"] = record
    storage.save_network(out_dir / "network", network, spec, metadata)
    (out_dir / "training.json").write_text(json.dumps(history))
    return trained, result._replace(history=history)


def split_held_out(
    data: np.ndarray, fraction: float, key: jax.Array
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held_out)``: a random ``fraction`` of the rows of ``data`` (rounded, a
    function of ``key``) held out, the rest for training."""
    num_held = round(float(fraction) * len(data))
    order = np.asarray(jax.random.permutation(key, len(data)))
    return data[np.sort(order[num_held:])], data[np.sort(order[:num_held])]


def _data_noise(settings: TrainSettings, sigmas) -> float:
    r"""The noise level of the density that the trained energy models: :math:`\sigma_L` for
    ncsn, ``sigma`` for dsm, 0 for exact and sliced score matching."""
    if settings.objective == "ncsn":
        return float(sigmas[-1])
    return float(settings.sigma) if settings.objective == "dsm" else 0.0


def _likelihood_objective(settings: TrainSettings, apply, level, data, key):
    """The likelihood term of stage 2 on the energy at the data's noise ``level``; its
    ladders start at a random subset of the training data."""
    chains = settings.likelihood_chains
    starts = data[
        np.asarray(
            jax.random.choice(jax.random.fold_in(key, 3), len(data), (chains,), chains > len(data))
        )
    ]
    energy = (lambda p, x: apply(p, x, level)) if settings.objective == "ncsn" else apply
    return training.replica_exchange_pcd(
        energy,
        temperatures=replica_exchange.geometric_ladder(
            settings.num_replicas, settings.max_temperature
        ),
        num_chains=chains,
        data_noise=level,
        init_positions=starts,
    )


def chunk_length(checkpoint_every: int, longest: int = 100) -> int:
    """The longest chunk of training steps, at most ``longest``, that divides
    ``checkpoint_every``, so that checkpoints fall where asked."""
    return max(d for d in range(1, min(longest, checkpoint_every) + 1) if checkpoint_every % d == 0)


def held_out_log_likelihood(
    trained: Trained, held_out: np.ndarray, *, key: jax.Array, truth: Callable | None = None
) -> dict:
    r"""The mean log-likelihood per point of ``held_out`` under the trained density
    :math:`e^{-E(x)}/Z` (at :math:`\sigma_L` for a noise-conditional network, whose points
    are then smoothed by :math:`\mathcal{N}(0, \sigma_L^2 I)` first, the density that
    energy models), with :math:`\log Z` by annealed importance sampling
    (:func:`~numpyro_ebm.evidence.ais.log_likelihood`: 16 runs of 256 particles, 1000 MALA
    steps: on the 6-mode ring's trained densities, 3 seeds x 2 recipes, within 0.03 of the
    quadrature's log Z, 0.7 of their standard errors, on 2026-12-07; 200 HMC steps, tuned
    then to the particles they moved, had fallen 0.14 below it).

    Returns a dict: ``mean``, ``standard_error`` (the data's and AIS's, in quadrature),
    ``log_z``, ``log_z_standard_error``, ``num_points``, ``noise`` (the smoothing level) and,
    for 2-D data, ``log_z_quadrature`` (:math:`\log Z` by quadrature on a grid covering the
    points, a check of AIS) and ``mean_quadrature``. With ``truth(points, noise)``, the
    data's true log density smoothed at the same level: ``true_mean``, the true density's
    mean log-likelihood on the same smoothed points, and ``difference`` (the model's minus
    the truth's, by quadrature in 2-D, else AIS) with its paired ``difference_standard_error``.
    """
    from numpyro_ebm.evidence import ais, exact

    noise_key, ais_key = jax.random.split(key)
    level = float(trained.metadata["sigmas"][-1]) if "sigmas" in trained.metadata else 0.0
    points = jnp.asarray(held_out, jnp.float32).reshape(len(held_out), -1)
    points = points + level * jax.random.normal(noise_key, points.shape, points.dtype)
    energy = energy_of(trained)
    shape = tuple(trained.spec["event_shape"])

    def flat_energy(x):
        return energy(x.reshape(shape))

    result = ais.log_likelihood(
        ais_key,
        flat_energy,
        points,
        num_particles=256,
        num_runs=16,
        num_steps=1000,
        mutation="mala",
    )
    record = {
        "mean": float(result.mean_log_likelihood),
        "standard_error": float(result.standard_error),
        "log_z": float(result.log_normalizer.log_normalizer),
        "log_z_standard_error": float(result.log_normalizer.standard_error),
        "num_points": len(held_out),
        "noise": level,
    }
    energies = np.asarray(jax.vmap(flat_energy)(points), np.float64)  # once, for both below
    if points.shape[1] == 2:
        lower, upper = points.min(0), points.max(0)
        pad = 0.5 * (upper - lower)
        log_z = float(exact.grid_log_partition(flat_energy, lower - pad, upper + pad, 400))
        record.update(log_z_quadrature=log_z, mean_quadrature=-float(energies.mean()) - log_z)
    if truth is not None:
        log_z = record.get("log_z_quadrature", record["log_z"])
        model = -energies - log_z
        true = np.asarray(truth(points.reshape((-1, *shape)), level), np.float64)
        paired = model - true
        se = paired.std(ddof=1) / np.sqrt(len(paired))
        if "log_z_quadrature" not in record:
            se = float(np.hypot(se, record["log_z_standard_error"]))
        record.update(
            true_mean=float(true.mean()),
            difference=float(paired.mean()),
            difference_standard_error=float(se),
        )
    return record


def load(directory: str | os.PathLike) -> Trained:
    """A network saved by :func:`train` (``directory`` is its ``out_dir`` or the ``network``
    folder inside it)."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no such directory: {directory}")
    if (directory / "network").is_dir():
        directory = directory / "network"
    return Trained(*storage.load_network(directory))


def energy_of(trained: Trained) -> Callable:
    """The trained energy as a pure function of one configuration.

    A noise-conditional network gives ``E(x, sigma=sigma_L)``: one argument for samplers of
    the data distribution smoothed at the smallest noise level, two for
    ``"annealed_langevin"``, which sweeps the ladder.
    """
    apply, params = as_pure(trained.network)
    if "sigmas" not in trained.metadata:
        return lambda x: apply(params, x)
    sigma_min = float(trained.metadata["sigmas"][-1])

    def energy(x, sigma=sigma_min):
        return apply(params, x, sigma)

    return energy


def sampler_options(sampler: str, trained: Trained, steps_per_level: int = 100) -> dict:
    """Options that suit a trained network: annealed Langevin gets the training ladder and the
    step :math:`\\alpha_L = 0.2\\,\\sigma_L^2` of Song & Ermon (2019) (their
    :math:`\\epsilon = 2 \\cdot 10^{-5}` at :math:`\\sigma_L = 0.01`); others their defaults."""
    if sampler != "annealed_langevin":
        return {}
    if "sigmas" not in trained.metadata:
        raise ValueError(
            "annealed_langevin needs a noise-conditional network (train with --objective ncsn)"
        )
    sigmas = np.asarray(trained.metadata["sigmas"], np.float32)
    return {
        "sigmas": sigmas,
        "step_size": 0.2 * float(sigmas[-1]) ** 2,
        "num_steps_per_level": steps_per_level,
    }


def check_event_shape(data: np.ndarray, trained: Trained) -> None:
    """Raise ``ValueError`` when ``data``'s configurations are not the network's shape."""
    expected = tuple(trained.spec["event_shape"])
    if tuple(np.shape(data)[1:]) != expected:
        raise ValueError(
            f"data of shape {np.shape(data)} do not match the network's event shape {expected}"
        )
