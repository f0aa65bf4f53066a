r"""Training restricted Boltzmann machines and deep belief nets: CD-k and PCD-k with block
Gibbs negatives (Hinton 2002; Tieleman 2008), Hinton's practical guide's optimizer, and the
greedy layer-wise training of a DBN (Hinton, Osindero & Teh 2006).

An RBM is trained as any energy is: the contrastive objectives
(:func:`numpyro_ebm.training.cd`, :func:`~numpyro_ebm.training.pcd`) on its free energy, whose
gradient is the Rao-Blackwellized statistic of the guide (see :mod:`numpyro_ebm.models.rbm`),
with :mod:`~numpyro_ebm.kernels.block_gibbs` as the negative-phase kernel, driven by
:func:`numpyro_ebm.training.fit` (checkpoints, resume, chunks). :func:`train_rbm` is what
``numpyro-ebm train --model rbm`` runs.

References
----------
G. E. Hinton (2002). Training products of experts by minimizing contrastive divergence.
Neural Computation 14(8).

T. Tieleman (2008). Training restricted Boltzmann machines using approximations to the
likelihood gradient. ICML.

G. E. Hinton, S. Osindero and Y.-W. Teh (2006). A fast learning algorithm for deep belief
nets. Neural Computation 18(7).

G. Desjardins, A. Courville, Y. Bengio, P. Vincent and O. Delalleau (2010). Tempered Markov
chain Monte Carlo for training of restricted Boltzmann machines. AISTATS.

K. Cho, T. Raiko and A. Ilin (2010). Parallel tempering is efficient for learning restricted
Boltzmann machines. IJCNN.

G. E. Hinton (2010). A practical guide to training restricted Boltzmann machines. UTML TR
2010-003.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from numpyro_ebm._checks import check_int, check_positive
from numpyro_ebm.kernels import block_gibbs
from numpyro_ebm.models.dbn import DBN
from numpyro_ebm.models.rbm import (
    BernoulliRBM,
    RBMParams,
    binary_noise,
    check_binary,
    check_params,
    check_rows,
)
from numpyro_ebm.training.fit import fit
from numpyro_ebm.training.objectives import cd, pcd
from numpyro_ebm.training.tempered import rbm_move, replica_exchange_pcd

__all__ = ["DBNFit", "RBMFit", "fit_dbn", "fit_rbm", "rbm_optimizer", "train_rbm"]

_PROPAGATE = ("samples", "probabilities")


class RBMFit(NamedTuple):
    """What :func:`train_rbm` returns: the ``model``, its trained ``params`` and ``fit``'s
    ``history`` (per-chunk means of the loss, of the free energies of the positive and
    negative samples, with the ``"step"`` ending each chunk)."""

    model: BernoulliRBM
    params: RBMParams
    history: dict[str, np.ndarray]


def rbm_optimizer(
    learning_rate: float | optax.Schedule, momentum: float = 0.0, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    r"""Hinton's guide's update as an optax chain: L2 weight decay on ``W`` only (not the
    biases), then SGD with (heavy-ball) momentum,
    ``optax.chain(optax.add_decayed_weights(weight_decay, mask), optax.sgd(lr, momentum))``.
    ``learning_rate`` is a positive number or an optax schedule, such as the linear decay to 0
    that lets persistent chains catch up with a model that moves ever less (Tieleman 2008):
    ``optax.linear_schedule(0.05, 0.0, num_steps)``."""
    if not callable(learning_rate):
        check_positive("learning_rate", learning_rate)
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    if not (math.isfinite(float(weight_decay)) and float(weight_decay) >= 0.0):
        raise ValueError(f"weight_decay must be finite and >= 0, got {weight_decay!r}")

    def weights_only(params):
        return type(params)(*[name == "W" for name in params._fields])

    return optax.chain(
        optax.add_decayed_weights(float(weight_decay), mask=weights_only),
        optax.sgd(learning_rate, momentum=float(momentum) or None),
    )


_METHODS = ("cd", "pcd", "replica_exchange")


def fit_rbm(
    model,
    params,
    data,
    *,
    key: jax.Array,
    method: str = "pcd",
    k: int = 1,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 3000,
    batch_size: int = 10,
    num_chains: int | None = None,
    temperatures=None,
    steps_per_chunk: int = 100,
    callbacks: Sequence[Callable] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> RBMFit:
    r"""Train an RBM from ``params`` on ``data`` with CD-k, PCD-k or PCD over replica exchange.

    The objective is :func:`numpyro_ebm.training.cd` or :func:`~numpyro_ebm.training.pcd` on
    the free energy (the Rao-Blackwellized gradient, see the module docstring), with
    :mod:`~numpyro_ebm.kernels.block_gibbs` as the negative-phase kernel, driven by
    :func:`numpyro_ebm.training.fit`. PCD keeps ``num_chains`` persistent chains (default
    ``batch_size``, Tieleman 2008) in a replay buffer that is never re-initialized (chains start
    at Bernoulli(1/2) noise); each update advances ``batch_size`` of them by ``k`` sweeps.

    ``method="replica_exchange"`` keeps ``num_chains`` persistent ladders of replicas of the
    tempered joint :math:`p(v, h)^{1/T_k}` (``temperatures``; default
    :func:`~numpyro_ebm.training.replica_exchange_pcd`'s), each update advancing every ladder
    by ``k`` block Gibbs sweeps and swaps, the cold replicas being the negatives
    (:func:`~numpyro_ebm.training.replica_exchange_pcd` with
    :func:`~numpyro_ebm.training.rbm_move`; Desjardins et al. 2010, Cho, Raiko & Ilin 2010):
    the negatives cross between the modes (digit classes) that one block Gibbs chain leaves
    only rarely, so the gradient sees their relative masses.

    Parameters
    ----------
    model
        A :class:`BernoulliRBM` or :class:`GaussianBernoulliRBM`.
    params
        Initial parameters.
    data
        Array of shape ``(n, n_visible)``: 0/1 for a Bernoulli RBM (probabilities in [0, 1]
        are accepted too: the free energy is defined there), finite reals for a Gaussian one.
    key
        PRNG key; the run is a function of it.
    method
        ``"pcd"``, ``"cd"`` or ``"replica_exchange"``.
    k
        Block Gibbs sweeps per update, >= 1.
    optimizer
        Default :func:`rbm_optimizer` ``(0.05)``: plain SGD.
    num_steps, batch_size, steps_per_chunk, callbacks, progress
        As in :func:`numpyro_ebm.training.fit` (minibatches are drawn with replacement).
    checkpoint_dir, checkpoint_every, resume
        As in :func:`numpyro_ebm.training.fit`: Orbax checkpoints of the parameters, the
        optimizer state and PCD's persistent chains; ``resume=True`` continues the latest one
        bit for bit.
    num_chains
        PCD's persistent chains, at least ``batch_size``; replica exchange's ladders (default
        ``batch_size``; every ladder gives a negative at each update).
    temperatures
        Replica exchange's ladder :math:`1 = T_0 < \dots < T_{K-1}`.

    Returns
    -------
    RBMFit
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    check_params(model, params)
    data = np.asarray(check_rows("data", data, model.n_visible, False), np.float32)
    if model.binary_visible and (data.min() < 0 or data.max() > 1):
        raise ValueError(
            f"data of a {type(model).__name__} must lie in [0, 1] (0/1, or probabilities), "
            f"got values from {float(data.min())} to {float(data.max())}"
        )
    optimizer = rbm_optimizer(0.05) if optimizer is None else optimizer
    kernel = block_gibbs.kernel_factory(model)
    if temperatures is not None and method != "replica_exchange":
        raise ValueError(f"temperatures is an option of method='replica_exchange', not {method!r}")
    if method == "cd":
        objective = cd(model.free_energy, k=k, kernel=kernel)
    elif method == "replica_exchange":
        objective = replica_exchange_pcd(
            model.free_energy,
            temperatures=temperatures,
            num_chains=batch_size if num_chains is None else num_chains,
            k=k,
            move=rbm_move(model),
        )
    else:
        batch_size = check_int("batch_size", batch_size)
        num_chains = batch_size if num_chains is None else check_int("num_chains", num_chains)
        if num_chains < batch_size:
            raise ValueError(
                f"num_chains ({num_chains}) must be at least batch_size ({batch_size})"
            )
        noise = binary_noise() if model.binary_visible else _normal_noise
        objective = pcd(
            model.free_energy,
            k=k,
            kernel=kernel,
            reinit_fraction=0.0,
            noise=noise,
            capacity=num_chains,
        )
    result = fit(
        objective,
        params,
        data,
        key=key,
        optimizer=optimizer,
        num_steps=num_steps,
        batch_size=batch_size,
        steps_per_chunk=steps_per_chunk,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
    )
    return RBMFit(model, result.params, result.history)


def _normal_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(key, shape, jnp.result_type(float))


def train_rbm(
    data,
    n_hidden: int,
    *,
    key: jax.Array,
    method: str = "pcd",
    k: int = 1,
    learning_rate: float = 0.05,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    num_steps: int = 3000,
    batch_size: int = 10,
    num_chains: int | None = None,
    init_scale: float = 0.01,
    steps_per_chunk: int = 100,
    callbacks: Sequence[Callable] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> RBMFit:
    r"""Train a :class:`BernoulliRBM` with ``n_hidden`` hidden units on binary ``data``: what
    ``numpyro-ebm train --model rbm`` runs.

    Visible biases start at the data's log-odds, weights at
    :math:`\mathcal{N}(0, \text{init\_scale}^2)` (Hinton's guide, sec. 8); then
    :func:`fit_rbm` with :func:`rbm_optimizer` ``(learning_rate, momentum, weight_decay)``.

    Parameters
    ----------
    data
        Binary array of shape ``(n, n_visible)`` (checked by :func:`check_binary`).
    n_hidden
        Hidden units, >= 1.
    key
        PRNG key; the run is a function of it.
    learning_rate, momentum, weight_decay
        See :func:`rbm_optimizer`.
    init_scale
        Standard deviation of the initial weights.
    method, k, num_steps, batch_size, num_chains, steps_per_chunk, callbacks, progress
        See :func:`fit_rbm`.
    checkpoint_dir, checkpoint_every, resume
        See :func:`fit_rbm`; a resumed run must be given the same ``data`` and ``key``.

    Returns
    -------
    RBMFit
    """
    data = check_binary("data", data)
    if data.ndim != 2:
        raise ValueError(f"data must have shape (n, n_visible), got shape {data.shape}")
    model = BernoulliRBM(data.shape[1], n_hidden)
    key_init, key_fit = jax.random.split(key)
    return fit_rbm(
        model,
        model.init(key_init, init_scale, data=data),
        data,
        key=key_fit,
        method=method,
        k=k,
        optimizer=rbm_optimizer(learning_rate, momentum, weight_decay),
        num_steps=num_steps,
        batch_size=batch_size,
        num_chains=num_chains,
        steps_per_chunk=steps_per_chunk,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
    )


class DBNFit(NamedTuple):
    """What :func:`fit_dbn` returns: ``params`` (one
    :class:`~numpyro_ebm.models.rbm.RBMParams` per layer, bottom first), ``histories`` (each
    layer's ``fit`` history) and ``layer_data`` (the training data of each layer: the data,
    then their propagated representations)."""

    params: tuple[RBMParams, ...]
    histories: tuple[dict[str, np.ndarray], ...]
    layer_data: tuple[np.ndarray, ...]


def fit_dbn(
    dbn: DBN,
    data,
    *,
    key: jax.Array,
    method: str = "cd",
    k: int = 1,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int | Sequence[int] = 3000,
    batch_size: int = 10,
    propagate: str = "samples",
    init_scale: float = 0.01,
    progress: bool = False,
) -> DBNFit:
    r"""Train the deep belief net ``dbn`` greedily, layer by layer (Hinton et al. 2006).

    Each layer is initialized (visible biases at its data's log-odds) and trained with
    :func:`fit_rbm` on its data, then the data are propagated up
    (``propagate="samples"``: one binary draw of :math:`p(h \mid \cdot)` per example;
    ``"probabilities"``: the probabilities).

    Parameters
    ----------
    data
        Binary array of shape ``(n, layer_sizes[0])``.
    key
        PRNG key; the result is a function of it.
    method, k, optimizer, batch_size
        As in :func:`fit_rbm`, for every layer.
    num_steps
        Steps per layer: one number, or one per layer.
    propagate
        ``"samples"`` or ``"probabilities"``.
    init_scale
        Standard deviation of each layer's initial weights.
    progress
        Show ``fit``'s progress bars.
    """
    data = check_binary("data", data)
    if data.ndim != 2 or data.shape[1] != dbn.layer_sizes[0]:
        raise ValueError(f"data must have shape (n, {dbn.layer_sizes[0]}), got shape {data.shape}")
    if propagate not in _PROPAGATE:
        raise ValueError(f"propagate must be one of {_PROPAGATE}, got {propagate!r}")
    steps = [num_steps] * len(dbn.layers) if np.ndim(num_steps) == 0 else list(num_steps)
    if len(steps) != len(dbn.layers):
        raise ValueError(
            f"num_steps must be one number or {len(dbn.layers)} (one per layer), got {num_steps!r}"
        )
    params, histories, layer_data = [], [], [np.asarray(data, np.float32)]
    for rbm, layer_key, layer_steps in zip(
        dbn.layers, jax.random.split(key, len(dbn.layers)), steps, strict=True
    ):
        key_init, key_fit, key_up = jax.random.split(layer_key, 3)
        x = layer_data[-1]
        result = fit_rbm(
            rbm,
            rbm.init(key_init, init_scale, data=x),
            x,
            key=key_fit,
            method=method,
            k=k,
            optimizer=optimizer,
            num_steps=layer_steps,
            batch_size=batch_size,
            progress=progress,
        )
        params.append(result.params)
        histories.append(result.history)
        probs = jax.vmap(rbm.hidden_probs, (None, 0))(result.params, jnp.asarray(x))
        if propagate == "samples":
            probs = jax.random.bernoulli(key_up, probs).astype(probs.dtype)
        layer_data.append(np.asarray(probs))
    return DBNFit(tuple(params), tuple(histories), tuple(layer_data[:-1]))
