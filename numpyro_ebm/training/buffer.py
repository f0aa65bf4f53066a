r"""The replay buffer of persistent contrastive divergence.

Persistent CD (Tieleman 2008) keeps its negative chains alive between parameter updates
instead of restarting them at the data. IGEBM (Du & Mordatch 2019, sec. 3.1) stores the chains'
ends in a buffer of ``capacity`` samples; each update draws a batch of starts from it, of which
a fraction :math:`\rho` (5 % in IGEBM) is re-initialized from a noise distribution so that the
chains keep exploring, runs a few sampler steps, and writes the ends back in place:

.. math::

    x_0^{(i)} = \begin{cases} \xi^{(i)} \sim q_{\text{noise}} & \text{with probability } \rho \\
    B[j_i] & \text{otherwise} \end{cases}, \qquad B[j_i] \leftarrow x_k^{(i)}.

The buffer is a :class:`ReplayBuffer` NamedTuple (a pytree of one array), part of the training
state: :func:`numpyro_ebm.training.fit` carries it through ``jit`` and ``lax.scan`` and writes it
into its checkpoints. Every random choice is a function of an explicit key.

References
----------
T. Tieleman (2008). Training restricted Boltzmann machines using approximations to the
likelihood gradient. ICML.

Y. Du and I. Mordatch (2019). Implicit generation and modeling with energy-based models.
NeurIPS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_ebm._checks import check_int

__all__ = ["ReplayBuffer", "init", "sample", "uniform_noise", "update"]

NoiseFn = Callable[[jax.Array, tuple[int, ...]], jax.Array]


class ReplayBuffer(NamedTuple):
    """``samples``: the stored chain states, shape ``(capacity, *event_shape)``."""

    samples: jax.Array


def uniform_noise(low: float = -1.0, high: float = 1.0) -> NoiseFn:
    r"""The noise of IGEBM: :math:`\mathcal{U}(\text{low}, \text{high})` in every coordinate.

    Returns ``noise(key, shape) -> array``, the form :func:`init`, :func:`sample` and
    :func:`numpyro_ebm.training.pcd` take.
    """
    if not float(high) > float(low):
        raise ValueError(f"uniform_noise needs high > low, got low={low!r}, high={high!r}")

    def noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.uniform(key, shape, minval=low, maxval=high)

    return noise


def init(
    key: jax.Array, capacity: int, event_shape: Sequence[int], noise: NoiseFn | None = None
) -> ReplayBuffer:
    """A buffer of ``capacity`` noise samples of shape ``event_shape``.

    Parameters
    ----------
    key
        PRNG key for the initial samples.
    capacity
        Number of stored chains.
    event_shape
        Shape of one configuration.
    noise
        ``noise(key, shape) -> array``; default :func:`uniform_noise` on :math:`[-1, 1]`.
    """
    capacity = check_int("capacity", capacity)
    noise = uniform_noise() if noise is None else noise
    return ReplayBuffer(noise(key, (capacity, *tuple(event_shape))))


def sample(
    key: jax.Array,
    buffer: ReplayBuffer,
    batch_size: int,
    noise: NoiseFn | None = None,
    reinit_fraction: float = 0.05,
) -> tuple[jax.Array, jax.Array]:
    """Draw ``batch_size`` chain starts: distinct stored samples, each replaced by fresh noise
    with probability ``reinit_fraction``.

    Returns ``(starts, indices)``; pass ``indices`` to :func:`update` to write the chains' ends
    back where they came from. A batch of the whole buffer takes every chain in its stored
    order, and ``reinit_fraction=0`` draws no noise (persistent CD's ``num_chains =
    batch_size``, Tieleman 2008): the same distribution without a shuffle and two draws in the
    compiled step.
    """
    batch_size = check_int("batch_size", batch_size)
    capacity = buffer.samples.shape[0]
    if batch_size > capacity:
        raise ValueError(
            f"batch_size ({batch_size}) must not exceed the buffer capacity ({capacity})"
        )
    if not 0.0 <= float(reinit_fraction) <= 1.0:
        raise ValueError(f"reinit_fraction must lie in [0, 1], got {reinit_fraction!r}")
    noise = uniform_noise() if noise is None else noise
    key_index, key_mask, key_noise = jax.random.split(key, 3)
    if batch_size == capacity:  # the chains are exchangeable: all of them, in any order
        indices = jnp.arange(capacity)
    else:
        indices = jax.random.choice(key_index, capacity, (batch_size,), replace=False)
    stored = buffer.samples[indices]
    if float(reinit_fraction) == 0.0:
        return stored, indices
    fresh = noise(key_noise, stored.shape)
    reinit = jax.random.uniform(key_mask, (batch_size,)) < reinit_fraction
    reinit = reinit.reshape((batch_size,) + (1,) * (stored.ndim - 1))
    return jnp.where(reinit, fresh, stored), indices


def update(buffer: ReplayBuffer, indices: jax.Array, samples: jax.Array) -> ReplayBuffer:
    """Write ``samples`` (the chains' ends) into the slots ``indices``."""
    return ReplayBuffer(buffer.samples.at[indices].set(samples.astype(buffer.samples.dtype)))
