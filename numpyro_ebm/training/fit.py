r"""One training loop for every objective: optax, ``jit`` + ``lax.scan`` chunks, progress,
history, callbacks and resumable Orbax checkpoints.

Step :math:`t` (counted from 0) uses the key :math:`k_t = \text{fold\_in}(k, t)`, split into one
key for the minibatch and one for the objective, so that the whole run is a function of the
initial key and the step index alone: how steps are grouped into compiled chunks, and whether
the run was interrupted and resumed, does not change a single bit of the result on a given
machine.

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
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from numpyro_ebm import diagnostics
from numpyro_ebm import sharding as _sharding
from numpyro_ebm._checks import all_finite, check_finite_array, check_int
from numpyro_ebm.training.buffer import ReplayBuffer

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


def _typed_key(key) -> jax.Array:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype != jnp.uint32 or key.ndim != 1:
        raise TypeError(f"key must be a PRNG key (jax.random.key or PRNGKey), got {key!r}")
    return jax.random.wrap_key_data(key)


def _check_data(data) -> jax.Array:
    data = np.asarray(data)
    if data.ndim < 1 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (n, *event_shape) with n >= 1, got {data.shape}")
    if not np.issubdtype(data.dtype, np.number):
        raise TypeError(f"data must be numeric, got dtype {data.dtype}")
    check_finite_array("data", data)
    return jnp.asarray(data)


def _build_chunk(loss, optimizer, batch_size, stateful, mesh=None, loss_state_sharding=None):
    """The compiled chunk: ``length`` optimizer steps in one ``lax.scan``. Once a step's loss
    or gradient is non-finite the carry freezes and records that step.

    With a ``mesh``, each step's minibatch is split over the ``data`` axis and the loss state
    is held with ``loss_state_sharding``; parameters and optimizer state, replicated on entry,
    stay replicated (the partitioner all-reduces the gradient of the batch mean)."""
    if mesh is None:
        batch_sharded = state_sharded = lambda tree: tree
    else:
        batch_sharding = _sharding.sharded(mesh, "data")
        batch_sharded = lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)
        state_sharded = lambda tree: (
            tree
            if loss_state_sharding is None
            else jax.lax.with_sharding_constraint(tree, loss_state_sharding)
        )

    def objective(params, batch, key, loss_state):
        if stateful:
            return loss(params, batch, key, loss_state)
        value, aux = loss(params, batch, key)
        return value, (aux, loss_state)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(carry, t, key, data):
        params, opt_state, loss_state, bad_step = carry
        key_batch, key_loss = jax.random.split(jax.random.fold_in(key, t))
        indices = batch_sharded(jax.random.randint(key_batch, (batch_size,), 0, data.shape[0]))
        batch = batch_sharded(data[indices])
        (value, (aux, new_loss_state)), grads = grad_fn(params, batch, key_loss, loss_state)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new = (optax.apply_updates(params, updates), new_opt_state, new_loss_state)
        good = jnp.isfinite(value) & all_finite(grads)
        keep = good & (bad_step < 0)
        params, opt_state, loss_state = jax.tree.map(
            lambda a, b: jnp.where(keep, a, b), new, (params, opt_state, loss_state)
        )
        bad_step = jnp.where((bad_step < 0) & ~good, t, bad_step)
        return (params, opt_state, state_sharded(loss_state), bad_step), {"loss": value, **aux}

    def chunk(params, opt_state, loss_state, key, data, start, *, length):
        carry = (params, opt_state, loss_state, jnp.asarray(-1, jnp.int32))
        steps = start + jnp.arange(length, dtype=jnp.int32)
        carry, metrics = jax.lax.scan(lambda c, t: step(c, t, key, data), carry, steps)
        params, opt_state, loss_state, bad_step = carry
        means = jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)
        return params, opt_state, loss_state, bad_step, means

    return jax.jit(chunk, static_argnames="length")


class _Checkpoints:
    """Orbax ``CheckpointManager`` over the training state: its leaves as a list of arrays
    (so any pytree of params / optimizer state / buffer round-trips exactly) and the history
    as JSON. Orbax writes each step to a temporary directory and renames it when complete,
    so a killed run leaves only whole checkpoints."""

    def __init__(self, directory, max_to_keep: int):
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=1,
            max_to_keep=max_to_keep,
            enable_async_checkpointing=False,
        )
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, history: dict[str, list[float]]) -> None:
        # sharded arrays are written by Orbax shard by shard (each process its own)
        leaves = [
            x
            if isinstance(getattr(x, "sharding", None), jax.sharding.NamedSharding)
            else np.asarray(x)
            for x in jax.tree.leaves(state)
        ]
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves),
                history=ocp.args.JsonSave(history),
            ),
        )

    def restore(self, step: int, like, shardings=None):
        """The state saved at ``step``, shaped like ``like``, laid out with ``shardings``
        (a pytree matching ``like``; ``None``: the default device)."""
        leaves, treedef = jax.tree.flatten(like)
        placed = [None] * len(leaves) if shardings is None else treedef.flatten_up_to(shardings)
        abstract = [
            jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)
            for x, sharding in zip(leaves, placed, strict=True)
        ]
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()
            ),
        )
        values = restored["state"]
        if shardings is None:
            values = [jnp.asarray(x) for x in values]
        state = jax.tree.unflatten(treedef, values)
        return state, {name: list(values) for name, values in restored["history"].items()}

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


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


_MIXING_SLOTS = 64
_MIXING_WINDOW = 8


def _mixing(trace: list[np.ndarray]) -> dict[str, float]:
    """Worst rank-normalized R-hat and bulk ESS over the coordinates of the watched buffer
    slots, treated as chains whose draws are their states at the last chunk ends (a window
    of fixed length, so that the statistics compile once)."""
    if len(trace) < _MIXING_WINDOW:
        return {"buffer_rhat": float("nan"), "buffer_ess_bulk": float("nan")}
    draws = jnp.asarray(np.stack(trace, axis=1))  # (slot, chunk, *event_shape)
    return {
        "buffer_rhat": float(jnp.nanmax(diagnostics.rhat(draws))),
        "buffer_ess_bulk": float(jnp.nanmin(diagnostics.ess_bulk(draws))),
    }


def _snapshot(history: dict[str, list[float]]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in history.items()}


def fit(
    loss: Callable,
    params,
    data,
    *,
    key,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    loss_state=None,
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
    r"""Minimize an objective of :mod:`numpyro_ebm.training.objectives` with optax.

    Step :math:`t` draws a minibatch (with replacement) and an objective key from
    ``fold_in(key, t)``, computes ``jax.value_and_grad(loss, has_aux=True)`` and applies the
    optimizer's update. Steps run in compiled chunks of ``steps_per_chunk`` (one
    ``lax.scan`` each, aligned on multiples of ``steps_per_chunk``; at most two programs are
    compiled, the second for a shorter last chunk). Between chunks, the loop updates the
    progress bar and the history, calls the callbacks and writes checkpoints.

    Parameters
    ----------
    loss
        ``loss(params, batch, key) -> (value, aux)``, or with ``loss_state`` given,
        ``loss(params, batch, key, state) -> (value, (aux, new_state))``.
    params
        Initial parameters (any pytree of arrays, e.g. the ``nnx.State`` of
        :func:`~numpyro_ebm.nets.as_pure`).
    data
        Array of shape ``(n, *event_shape)``, finite.
    key
        PRNG key; the run is a function of it and the step index.
    optimizer
        An ``optax.GradientTransformation``.
    num_steps
        Total number of optimizer steps (including those of a resumed run).
    batch_size
        Examples per step, at most ``n``.
    loss_state
        Initial state of a stateful objective (the :class:`~.buffer.ReplayBuffer` of
        :func:`~.objectives.pcd`); ``None`` for a stateless one.
    steps_per_chunk
        Steps per compiled chunk; the history has one row per chunk.
    callbacks
        Functions ``fn(step, params, history)`` called after each chunk (``step`` is the number
        of steps done, ``history`` a dict of arrays), e.g. for evaluation or early logging.
    checkpoint_dir
        Directory of Orbax checkpoints (params, optimizer state, loss state, key, history),
        written every ``checkpoint_every`` steps and at the end.
    checkpoint_every
        A multiple of ``steps_per_chunk``; default: ``steps_per_chunk``.
    max_to_keep
        Checkpoints kept (the most recent).
    resume
        Continue from the latest checkpoint in ``checkpoint_dir`` (its key replaces ``key``);
        start from scratch if there is none. The result is bitwise the one of an uninterrupted
        run on the same machine.
    progress
        Show a tqdm progress bar with the latest chunk's loss.
    monitor_mixing
        For a :class:`~.buffer.ReplayBuffer` loss state: watch its first 64 slots as chains
        whose draws are their states at the last 8 chunk ends, and add to the history the
        worst rank-normalized :math:`\hat R` (``"buffer_rhat"``) and the smallest bulk ESS
        (``"buffer_ess_bulk"``) over slots' coordinates (Vehtari et al. 2021), ``NaN`` until
        8 chunks have been seen in this call (the trace is not checkpointed). Persistent
        chains that mix give :math:`\hat R \approx 1`; chains stuck in different modes give
        :math:`\hat R \gg 1`.
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
        count), and each array of ``loss_state`` (the replay buffer) is split along its first
        axis (a multiple of the device count). Every random draw comes from the same keys as
        on one device (partitionable Threefry), and the gradient of the batch mean is reduced
        across devices, so the run equals the single-device run up to the summation order of
        that reduction (float tolerance). Checkpoints store the global arrays: a run
        checkpointed on several devices resumes on any layout, bitwise on the same one. On
        several processes, every process passes the same ``params``, ``data`` and ``key``.

    Returns
    -------
    FitResult

    Raises
    ------
    FloatingPointError
        When a step's loss or gradient is non-finite; the message names the step. Parameters
        are not updated by that step, and the checkpoints written before it are kept.
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {loss!r}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {optimizer!r}")
    num_steps = check_int("num_steps", num_steps)
    batch_size = check_int("batch_size", batch_size)
    steps_per_chunk = check_int("steps_per_chunk", steps_per_chunk)
    data = _check_data(data)
    if batch_size > data.shape[0]:
        raise ValueError(
            f"batch_size ({batch_size}) must not exceed the number of examples ({data.shape[0]})"
        )
    key = _typed_key(key)
    checkpoint_every = steps_per_chunk if checkpoint_every is None else checkpoint_every
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if checkpoint_every % steps_per_chunk:
        raise ValueError(
            f"checkpoint_every ({checkpoint_every}) must be a multiple of steps_per_chunk "
            f"({steps_per_chunk}): checkpoints are written between chunks"
        )
    if monitor_mixing and not isinstance(loss_state, ReplayBuffer):
        raise ValueError(
            "monitor_mixing=True needs a ReplayBuffer loss_state (persistent negative chains), "
            f"got {type(loss_state).__name__}"
        )
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    mesh = _sharding.device_mesh(devices, "data")
    shardings = None
    if mesh is not None:
        loss_state_sharding = _loss_state_sharding(loss_state, mesh, devices)
        shards = _sharding.axis_size(mesh, "data")
        if batch_size % shards:
            raise ValueError(
                f"batch_size={batch_size} must be a multiple of the {shards} devices of the "
                f"'data' axis (devices={devices!r})"
            )
        everywhere = _sharding.replicated(mesh)

    params = jax.tree.map(jnp.asarray, params)
    opt_state = optimizer.init(params)
    state = (params, opt_state, loss_state, jax.random.key_data(key))
    if mesh is not None:
        shardings = (
            jax.tree.map(lambda _: everywhere, params),
            jax.tree.map(lambda _: everywhere, opt_state),
            loss_state_sharding,
            everywhere,
        )
        state = _sharding.place(state, shardings)
        data = _sharding.place(data, everywhere)
    history: dict[str, list[float]] = {}
    start = 0
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = _Checkpoints(checkpoint_dir, check_int("max_to_keep", max_to_keep))
        latest = checkpoints.latest_step()
        if latest is not None and not resume:
            checkpoints.close()
            raise ValueError(
                f"checkpoint_dir {os.fspath(checkpoint_dir)!r} already holds a checkpoint (step "
                f"{latest}); pass resume=True to continue it or use an empty directory"
            )
        if latest is not None:
            if latest > num_steps:
                checkpoints.close()
                raise ValueError(
                    f"the latest checkpoint (step {latest}) is beyond num_steps ({num_steps})"
                )
            state, history = checkpoints.restore(latest, state, shardings)
            start = latest
    params, opt_state, loss_state, key_data = state
    key = jax.random.wrap_key_data(key_data, impl=jax.random.key_impl(key))
    chunk = _build_chunk(
        loss,
        optimizer,
        batch_size,
        loss_state is not None,
        mesh,
        None if mesh is None else loss_state_sharding,
    )

    mixing_trace: list[np.ndarray] = []
    bar = tqdm(total=num_steps, initial=start, disable=not progress, desc="fit", unit="step")
    try:
        while start < num_steps:
            stop = min((start // steps_per_chunk + 1) * steps_per_chunk, num_steps)
            with contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh):
                params_new, opt_new, state_new, bad_step, means = chunk(
                    params, opt_state, loss_state, key, data, jnp.int32(start), length=stop - start
                )
            bad_step = int(bad_step)
            if bad_step >= 0:
                last = None if checkpoints is None else checkpoints.latest_step()
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {bad_step}; training stopped"
                    + ("" if last is None else f" (last good checkpoint: step {last})")
                )
            params, opt_state, loss_state = params_new, opt_new, state_new
            history.setdefault("step", []).append(stop)
            for name, value in means.items():
                history.setdefault(name, []).append(float(value))
            if monitor_mixing:
                mixing_trace = mixing_trace[1 - _MIXING_WINDOW :]
                mixing_trace.append(_sharding.to_host(loss_state.samples[:_MIXING_SLOTS]))
                for name, value in _mixing(mixing_trace).items():
                    history.setdefault(name, []).append(value)
            bar.update(stop - start)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4g}")
            start = stop
            if checkpoints is not None and (stop % checkpoint_every == 0 or stop == num_steps):
                checkpoints.save(
                    stop, (params, opt_state, loss_state, jax.random.key_data(key)), history
                )
            for callback in callbacks:
                callback(stop, params, _snapshot(history))
    finally:
        bar.close()
        if checkpoints is not None:
            checkpoints.close()
    last_rhat = history.get("buffer_rhat", [float("nan")])[-1]
    if last_rhat > mixing_rhat_threshold:
        warnings.warn(
            f"the persistent negative chains do not mix: buffer R-hat {last_rhat:.3g} > "
            f"mixing_rhat_threshold={mixing_rhat_threshold} over the last {_MIXING_WINDOW} "
            "chunks; use more sampler steps per update, a larger step size or a smaller "
            "reinitialization fraction",
            RuntimeWarning,
            stacklevel=2,
        )
    return FitResult(params, opt_state, loss_state, _snapshot(history), key)
