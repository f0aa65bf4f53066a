r"""One training loop for every objective: optax, ``jit`` + ``lax.scan`` chunks, progress,
history, callbacks and resumable Orbax checkpoints.

Step :math:`t` (counted from 0, an int32) uses the key :math:`k_t = \text{fold\_in}(k, t)`,
split into one key for the minibatch and one for the objective, so that the whole run is a
function of the initial key and the step index alone (the objective's initial state comes
from :math:`\text{fold\_in}(k, 2^{32} - 1)`, an index no step reaches): how steps are grouped
into compiled chunks, and whether the run was interrupted and resumed, does not change a
single bit of the result on a given machine.

Minibatches are drawn **with replacement**: ``batch_size`` indices uniform on
:math:`\{0, \dots, n-1\}`, independently at every step. This costs :math:`O(b)` per step
whatever the data size, and makes each gradient an unbiased estimate of the full-data one.

With ``devices=``, training is data-parallel (see :func:`fit`): the same steps, each
minibatch split over the devices of a ``data`` mesh axis.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from numpyro_ebm import sharding as _sharding
from numpyro_ebm._checks import check_finite_array, check_int, check_key
from numpyro_ebm.training import _mixing
from numpyro_ebm.training._checkpoints import Checkpoints, tree_fingerprint
from numpyro_ebm.training._chunk import build_chunk
from numpyro_ebm.training.buffer import ReplayBuffer
from numpyro_ebm.training.objectives import Objective

__all__ = ["FitResult", "fit"]

Callback = Callable[[int, Any, dict[str, np.ndarray]], Any]


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    ``params`` and ``opt_state``: final parameters and optimizer state; ``loss_state``: the
    objective's final state (the replay buffer of :func:`~.objectives.pcd`, else ``None``);
    ``history``: per-chunk means of the loss and of every aux entry, with the ``"step"`` that
    ends each chunk; ``key``: the key the run used (restored from the checkpoint on resume).
    """

    params: Any
    opt_state: Any
    loss_state: Any
    history: dict[str, np.ndarray]
    key: jax.Array


def _check_objective(objective, params, data, batch_size, key, loss_state) -> None:
    """Trace the loss once on a batch's shape (``jax.eval_shape``: nothing runs or
    compiles), so that data the model cannot take are refused in our words before anything
    is compiled, and a loss that is not a scalar too."""
    batch = jax.tree.map(
        lambda d: jax.ShapeDtypeStruct((batch_size, *d.shape[1:]), d.dtype), data
    )
    try:
        value, _ = jax.eval_shape(objective.loss, params, batch, key, loss_state)
    except (TypeError, ValueError) as error:
        raise type(error)(
            f"the objective {objective.name!r} cannot be evaluated on batches of the data "
            f"({_describe_data(data)}); does the model take inputs of that shape? It raised: "
            f"{str(error).splitlines()[0]}"
        ) from error
    if jnp.shape(value) != ():
        raise ValueError(
            f"the objective {objective.name!r} must return a scalar loss, got shape "
            f"{jnp.shape(value)}"
        )


def _describe_data(data) -> str:
    if isinstance(data, jax.Array):
        return f"shape {tuple(data.shape)}: examples of shape {tuple(data.shape[1:])}"
    shapes = jax.tree_util.tree_map_with_path(
        lambda path, d: f"{jax.tree_util.keystr(path)} {tuple(d.shape)}", data
    )
    return "shapes " + ", ".join(jax.tree.leaves(shapes))


def _check_data(data):
    """``data`` as JAX arrays: an array ``(n, *event_shape)``, or a pytree of arrays sharing
    their first axis (labelled data ``{"x": images, "y": labels}``), each numeric and
    finite."""
    leaves = jax.tree_util.tree_flatten_with_path(data)[0]
    if not leaves:
        raise ValueError(f"data must hold at least one array of examples, got {data!r}")
    checked = []
    for path, leaf in leaves:
        name = "data" + jax.tree_util.keystr(path)
        leaf = np.asarray(leaf)
        if leaf.ndim < 1 or leaf.shape[0] == 0:
            raise ValueError(
                f"{name} must have shape (n, *event_shape) with n >= 1, got {leaf.shape}"
            )
        if not np.issubdtype(leaf.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got dtype {leaf.dtype}")
        check_finite_array(name, leaf)
        checked.append(jnp.asarray(leaf))
    sizes = {leaf.shape[0] for leaf in checked}
    if len(sizes) > 1:
        raise ValueError(
            f"the arrays of data must hold the same number of examples, got {sorted(sizes)}"
        )
    return jax.tree.unflatten(jax.tree.structure(data), checked)


def _num_examples(data) -> int:
    return jax.tree.leaves(data)[0].shape[0]


def _loss_state_sharding(loss_state, mesh, devices):
    """Each array leaf of the loss state split along its first axis over ``data`` (a replay
    buffer: each device holds a block of the chains), scalars replicated."""
    shards = _sharding.axis_size(mesh, "data")

    def one(leaf):
        if np.ndim(leaf) == 0:
            return _sharding.replicated(mesh)
        if np.shape(leaf)[0] % shards:
            raise ValueError(
                f"loss_state holds an array of shape {np.shape(leaf)}, whose first axis is not "
                f"a multiple of the {shards} devices of the 'data' axis (devices={devices!r}); "
                "use a buffer capacity divisible by the device count"
            )
        return _sharding.sharded(mesh, "data")

    return jax.tree.map(one, loss_state)


def _snapshot(history: dict[str, list[float]]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in history.items()}


# The key index of the objective's initial state: steps (int32) never reach it.
_INIT_INDEX = np.uint32(2**32 - 1)


class _Carry(NamedTuple):
    """The training state between chunks, as checkpoints hold it."""

    params: Any
    opt_state: Any
    loss_state: Any
    key_data: jax.Array
    mixing: _mixing.MixingTrace | None


def _fingerprint(objective: Objective, carry: _Carry, data) -> dict:
    """What a resumed run must share with the checkpoint: the parameter, optimizer-state and
    objective-state trees, the objective and its options, the data's event shape and dtype,
    and whether the mixing trace is kept."""
    return {
        "params": tree_fingerprint(carry.params),
        "opt_state": tree_fingerprint(carry.opt_state),
        "state": tree_fingerprint(carry.loss_state),
        "objective": {"name": objective.name, "options": dict(objective.options)},
        "data": jax.tree.map(
            lambda d: {"event_shape": list(d.shape[1:]), "dtype": str(d.dtype)}, data
        ),
        "monitor_mixing": carry.mixing is not None,
    }


def _warn_if_stuck(history: dict[str, list[float]], threshold: float) -> None:
    last_rhat = history.get("buffer_rhat", [float("nan")])[-1]
    if last_rhat > threshold:
        warnings.warn(
            f"the persistent negative chains do not mix: buffer R-hat {last_rhat:.3g} > "
            f"mixing_rhat_threshold={threshold} over the last {_mixing.WINDOW} "
            "chunks; use more sampler steps per update, a larger step size or a smaller "
            "reinitialization fraction",
            RuntimeWarning,
            stacklevel=3,
        )


def fit(
    objective: Objective,
    params,
    data,
    *,
    key,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    steps_per_chunk: int = 100,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    max_to_keep: int = 3,
    resume: bool = False,
    progress: bool = True,
    monitor_mixing: bool = False,
    mixing_rhat_threshold: float = 1.1,
    devices=None,
) -> FitResult:
    r"""Minimize an :class:`~numpyro_ebm.training.objectives.Objective` with optax.

    The objective's state starts as ``objective.init(fold_in(key, 2**32 - 1), params,
    example)`` with the first example ``data[0]`` (an index no step reaches). Step :math:`t`
    draws a minibatch (with replacement) and an objective key from ``fold_in(key, t)``, computes
    ``jax.value_and_grad(objective.loss, has_aux=True)`` and applies the optimizer's update.
    Steps run in compiled chunks of ``steps_per_chunk`` (one ``lax.scan`` each, aligned on
    multiples of ``steps_per_chunk``; at most two programs are compiled, the second for a
    shorter last chunk). Between chunks the loop only records: the history, the mixing
    check, the checkpoint, the progress bar, then the callbacks.

    Parameters
    ----------
    objective
        An :class:`~numpyro_ebm.training.objectives.Objective` (:func:`~.objectives.cd`,
        :func:`~.objectives.pcd`, :func:`~.objectives.dsm`... or
        :func:`~.objectives.from_loss` for a custom stateless loss).
    params
        Initial parameters (any pytree of arrays, e.g. the ``nnx.State`` of
        :func:`~numpyro_ebm.nets.as_pure`).
    data
        Array of shape ``(n, *event_shape)``, finite; or a pytree of such arrays sharing
        their first axis (labelled examples ``{"x": images, "y": labels}``, for
        :func:`~.hybrid.jem`), whose minibatches are the same pytree of ``batch_size`` rows.
    key
        PRNG key; the run is a function of it and the step index.
    optimizer
        An ``optax.GradientTransformation``.
    num_steps
        Total number of optimizer steps (including those of a resumed run).
    batch_size
        Examples per step, at most ``n``.
    steps_per_chunk
        Steps per compiled chunk; the history has one row per chunk.
    callbacks
        Functions ``fn(step, params, history)`` called after each chunk (``step`` is the number
        of steps done, ``history`` a dict of arrays), e.g. for evaluation or early logging.
    checkpoint_dir
        Directory of Orbax checkpoints (params, optimizer state, objective state, key, mixing
        trace, history, and a fingerprint of the run), written every ``checkpoint_every``
        steps and at the end.
    checkpoint_every
        A multiple of ``steps_per_chunk``; default: ``steps_per_chunk``.
    max_to_keep
        Checkpoints kept (the most recent).
    resume
        Continue from the latest readable checkpoint in ``checkpoint_dir`` (its key replaces
        ``key``); start from scratch if there is none. The result is bitwise the one of an
        uninterrupted run on the same machine. A damaged step (unreadable metadata or
        arrays, a missing item, an empty folder, arrays that fail their SHA-256 digest) is
        named in a ``RuntimeWarning``, moved to ``<step>.damaged`` and the next older one is
        used. A checkpoint of another run (other parameter or optimizer-state shapes, another
        objective or options, another data event shape or dtype) is refused with a
        ``ValueError`` naming the difference, before anything is written.
    progress
        Show a tqdm progress bar with the latest chunk's loss.
    monitor_mixing
        For an objective whose state is a :class:`~.buffer.ReplayBuffer` (:func:`~.pcd`):
        watch its first 64 slots as chains whose draws are their states at the last 8 chunk
        ends, and add to the history the worst rank-normalized :math:`\hat R`
        (``"buffer_rhat"``) and the smallest bulk ESS (``"buffer_ess_bulk"``) over slots'
        coordinates (Vehtari et al. 2021; :func:`numpyro_ebm.diagnostics.max_rhat_min_ess`),
        ``NaN`` until 8 chunks have been seen. The trace is checkpointed, so a resumed run
        reports (and warns) as the uninterrupted one. Persistent chains that mix give
        :math:`\hat R \approx 1`; chains stuck in different modes give :math:`\hat R \gg 1`.
    mixing_rhat_threshold
        With ``monitor_mixing``: a ``RuntimeWarning`` is issued at the end of the run when
        the last ``buffer_rhat`` exceeds it (the negative phase then samples a few modes of
        the model, not the model, and the gradient is biased).
    devices
        Data-parallel training: ``None`` (default: the default device), ``"all"`` (every
        device of ``jax.devices()``, all processes' after ``jax.distributed.initialize``), a
        sequence of devices, or a ``jax.sharding.Mesh`` with a ``"data"`` axis. ``params``,
        the optimizer state and ``data`` are replicated on every device; each step's
        minibatch is split over ``data`` (``batch_size`` must be a multiple of the device
        count), and each array of the objective's state (the replay buffer) is split along
        its first axis (a multiple of the device count). Every random draw comes from the
        same keys as on one device (partitionable Threefry), and the gradient of the batch
        mean is reduced across devices, so the run equals the single-device run up to the
        summation order of that reduction (float tolerance). Checkpoints store the global
        arrays: a run checkpointed on several devices resumes on any layout, bitwise on the
        same one. On several processes, every process passes the same ``params``, ``data``
        and ``key``.

    Returns
    -------
    FitResult

    Raises
    ------
    FloatingPointError
        When a step's loss, gradient or update is non-finite; the message names the step.
        Parameters are not updated by that step, and the checkpoints written before it are
        kept.
    """
    if not isinstance(objective, Objective):
        raise TypeError(
            "objective must be a numpyro_ebm.training.Objective (cd, pcd, dsm, ... or "
            f"from_loss(loss) for a custom loss(params, batch, key)), got {objective!r}"
        )
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {optimizer!r}")
    num_steps = check_int("num_steps", num_steps)
    batch_size = check_int("batch_size", batch_size)
    steps_per_chunk = check_int("steps_per_chunk", steps_per_chunk)
    data = _check_data(data)
    if batch_size > _num_examples(data):
        raise ValueError(
            f"batch_size ({batch_size}) must not exceed the number of examples "
            f"({_num_examples(data)})"
        )
    key = check_key(key)
    checkpoint_every = steps_per_chunk if checkpoint_every is None else checkpoint_every
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if checkpoint_every % steps_per_chunk:
        raise ValueError(
            f"checkpoint_every ({checkpoint_every}) must be a multiple of steps_per_chunk "
            f"({steps_per_chunk}): checkpoints are written between chunks"
        )
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    mesh = _sharding.device_mesh(devices, "data")
    if mesh is not None and batch_size % _sharding.axis_size(mesh, "data"):
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of the "
            f"{_sharding.axis_size(mesh, 'data')} devices of the 'data' axis (devices={devices!r})"
        )

    params = jax.tree.map(jnp.asarray, params)
    example = jax.tree.map(lambda d: d[0], data)
    loss_state = objective.init(jax.random.fold_in(key, _INIT_INDEX), params, example)
    _check_objective(objective, params, data, batch_size, key, loss_state)
    if monitor_mixing and not isinstance(loss_state, ReplayBuffer):
        raise ValueError(
            "monitor_mixing=True needs an objective whose state is a ReplayBuffer (persistent "
            f"negative chains, as pcd's), got {objective.name}'s {type(loss_state).__name__}"
        )
    carry = _Carry(
        params,
        optimizer.init(params),
        loss_state,
        jax.random.key_data(key),
        _mixing.init(loss_state) if monitor_mixing else None,
    )
    shardings = loss_state_sharding = None
    if mesh is not None:
        loss_state_sharding = _loss_state_sharding(loss_state, mesh, devices)
        everywhere = _sharding.replicated(mesh)
        shardings = jax.tree.map(lambda _: everywhere, carry)._replace(
            loss_state=loss_state_sharding
        )
        carry = _sharding.place(carry, shardings)
        data = _sharding.place(data, everywhere)

    history: dict[str, list[float]] = {}
    start = 0
    checkpoints = None
    if checkpoint_dir is not None:
        fingerprint = _fingerprint(objective, carry, data)
        checkpoints = Checkpoints(
            checkpoint_dir, check_int("max_to_keep", max_to_keep), fingerprint
        )
        try:
            if not resume and checkpoints.steps():
                raise ValueError(
                    f"checkpoint_dir {os.fspath(checkpoint_dir)!r} already holds a checkpoint "
                    f"(step {checkpoints.steps()[0]}); pass resume=True to continue it or use "
                    "an empty directory"
                )
            found = checkpoints.restore_latest(carry, shardings, max_step=num_steps)
        except BaseException:
            checkpoints.close()
            raise
        if found is not None:
            start, carry, history = found
    key = jax.random.wrap_key_data(carry.key_data, impl=jax.random.key_impl(key))
    chunk = build_chunk(objective.loss, optimizer, batch_size, mesh, loss_state_sharding)

    bar = tqdm(total=num_steps, initial=start, disable=not progress, desc="fit", unit="step")
    try:
        while start < num_steps:
            stop = min((start // steps_per_chunk + 1) * steps_per_chunk, num_steps)
            with contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh):
                params, opt_state, loss_state, bad_step, means = chunk(
                    carry.params,
                    carry.opt_state,
                    carry.loss_state,
                    key,
                    data,
                    jnp.int32(start),
                    length=stop - start,
                )
            if int(bad_step) >= 0:
                last = None if checkpoints is None else (checkpoints.steps() or [None])[0]
                raise FloatingPointError(
                    f"non-finite loss, gradient or update at step {int(bad_step)}; training stopped"
                    + ("" if last is None else f" (last good checkpoint: step {last})")
                )
            carry = carry._replace(params=params, opt_state=opt_state, loss_state=loss_state)
            history.setdefault("step", []).append(stop)
            for name, value in means.items():
                history.setdefault(name, []).append(float(value))
            if carry.mixing is not None:
                carry = carry._replace(mixing=_mixing.record(carry.mixing, loss_state))
                for name, value in _mixing.statistics(carry.mixing).items():
                    history.setdefault(name, []).append(value)
            if checkpoints is not None and (stop % checkpoint_every == 0 or stop == num_steps):
                checkpoints.save(stop, carry, history)
            bar.update(stop - start)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4g}")
            start = stop
            for callback in callbacks:
                callback(stop, carry.params, _snapshot(history))
    finally:
        bar.close()
        if checkpoints is not None:
            checkpoints.close()
    if monitor_mixing:
        _warn_if_stuck(history, mixing_rhat_threshold)
    return FitResult(carry.params, carry.opt_state, carry.loss_state, _snapshot(history), key)
