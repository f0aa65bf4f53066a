r"""The compiled part of :func:`~numpyro_ebm.training.fit`: a chunk of optimizer steps in one
``lax.scan``, step :math:`t` drawing its minibatch and objective key from
:math:`\text{fold\_in}(k, t)`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from numpyro_ebm import _cache
from numpyro_ebm import sharding as _sharding
from numpyro_ebm._checks import all_finite

__all__ = []


def _dtype(x):
    """The dtype of an argument (a typed PRNG key's own dtype, a Python number's JAX one)."""
    return x.dtype if hasattr(x, "dtype") else jnp.result_type(x)


def build_chunk(loss, optimizer, batch_size, mesh=None, loss_state_sharding=None):
    """The chunk: ``length`` optimizer steps of ``loss`` (an objective's
    ``loss(params, batch, key, state)``) in one ``lax.scan``, compiled once per content. Once a
    step's loss, gradient or update is non-finite the carry freezes and records that step.

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

    grad_fn = jax.value_and_grad(loss, has_aux=True)

    def step(carry, t, key, data):
        params, opt_state, loss_state, bad_step = carry
        key_batch, key_loss = jax.random.split(jax.random.fold_in(key, t))
        size = jax.tree.leaves(data)[0].shape[0]
        indices = batch_sharded(jax.random.randint(key_batch, (batch_size,), 0, size))
        batch = jax.tree.map(lambda d: batch_sharded(d[indices]), data)
        (value, (aux, new_loss_state)), grads = grad_fn(params, batch, key_loss, loss_state)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new = (optax.apply_updates(params, updates), new_opt_state, new_loss_state)
        # the update too: a finite gradient can still overflow the parameters or the state
        good = jnp.isfinite(value) & all_finite(grads) & all_finite(new[:2])
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

    programs = {}  # this fit's programs by length: one trace each

    def program(*args, length):
        """The compiled chunk of ``length`` steps for these arguments (whose shapes do not
        change between chunks), kept in the program cache by what it computes
        (:mod:`numpyro_ebm._cache`): a second ``fit`` of the same objective, optimizer and
        shapes (another seed, a retrained model) compiles nothing."""
        if length not in programs:
            shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), _dtype(x)), args)
            key, _ = _cache.trace(functools.partial(chunk, length=length), *shapes)
            programs[length] = _cache.cached(
                ("fit chunk", key), lambda: jax.jit(chunk, static_argnames="length")
            )
        return programs[length](*args, length=length)

    return program
