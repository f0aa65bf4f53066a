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
import numpy as np
import optax
from flax import nnx

from numpyro_ebm import storage, training
from numpyro_ebm._checks import check_finite_array, check_int, check_positive
from numpyro_ebm.nets import as_pure

__all__ = [
    "OBJECTIVES",
    "TrainSettings",
    "Trained",
    "energy_of",
    "load",
    "noise_ladder",
    "sampler_options",
    "train",
]

OBJECTIVES = ("ncsn", "dsm", "score_matching", "sliced_score_matching", "cd", "pcd")


class TrainSettings(NamedTuple):
    """How :func:`train` trains: Adam with a cosine decay of the learning rate from
    ``learning_rate`` to 3% of it over ``num_steps`` (Loshchilov & Hutter 2017; on the demo's
    8-Gaussian ring, 6000 steps resolve the eight modes that a constant 1e-3 blurs into a
    ring). ``sigma_max``/``sigma_min`` default to :func:`noise_ladder`'s choice; ``sigma`` is
    the single noise level of ``dsm``; ``cd_steps`` and ``step_size`` are the Langevin
    negatives of ``cd``/``pcd``."""

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

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; known: {list(OBJECTIVES)}")
        for name in ("num_steps", "batch_size", "num_sigmas", "cd_steps", "checkpoint_every"):
            check_int(name, getattr(self, name))
        for name in ("learning_rate", "sigma", "step_size"):
            check_positive(name, getattr(self, name))
        for width in self.hidden:
            check_int("hidden", width)


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
) -> tuple[Trained, training.FitResult]:
    """Train an energy on ``data`` (n, *event_shape) and save it.

    ``ncsn`` trains a :class:`~numpyro_ebm.nets.NoiseConditionalMLP` energy over the noise
    ladder of :func:`noise_ladder`; every other objective an
    :class:`~numpyro_ebm.nets.MLPEnergy`. Writes ``out_dir/checkpoints`` (Orbax, every
    ``checkpoint_every`` steps; ``resume=True`` continues a killed run exactly),
    ``out_dir/network`` (:func:`~numpyro_ebm.storage.save_network`) and
    ``out_dir/training.json`` (the history).
    """
    settings.check()
    data = np.asarray(data, np.float32)
    if data.ndim < 2 or len(data) < 2:
        raise ValueError(f"data must have shape (n, *event_shape) with n >= 2, got {data.shape}")
    check_finite_array("data", data)
    if settings.batch_size > len(data):
        raise ValueError(f"batch_size={settings.batch_size} exceeds the {len(data)} data points")
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
    every = settings.checkpoint_every
    result = training.fit(
        _objective(settings, apply, sigmas),
        params,
        data,
        key=fit_key,
        optimizer=optax.adam(
            optax.cosine_decay_schedule(settings.learning_rate, settings.num_steps, alpha=0.03)
        ),
        num_steps=settings.num_steps,
        batch_size=settings.batch_size,
        steps_per_chunk=min(100, every),
        checkpoint_dir=out_dir / "checkpoints",
        checkpoint_every=every if every % min(100, every) == 0 else min(100, every),
        resume=resume,
        progress=progress,
        monitor_mixing=settings.objective == "pcd",
    )
    nnx.update(network, result.params)
    metadata["final_loss"] = float(result.history["loss"][-1])
    metadata["num_steps"] = settings.num_steps
    storage.save_network(out_dir / "network", network, spec, metadata)
    history = {name: np.asarray(values).tolist() for name, values in result.history.items()}
    (out_dir / "training.json").write_text(json.dumps(history))
    return Trained(network, spec, metadata), result


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
