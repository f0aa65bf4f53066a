"""Random numbers drawn on the host by NumPy, seeded by a JAX key's data.

On a process's first call, every eager ``jax.random`` operation (a split, a normal draw) compiles
a device program of its own: 0.1-0.35 s each on a CPU, more than the draws are worth when they
are a few keys, the chains' starting points or the picks of a post-run check. These are made
here instead, by NumPy's default generator (PCG64) seeded by the key's data, so they stay a
function of the key and compile nothing. The streams differ from ``jax.random``'s (a start
drawn here is not ``jax.random.normal(key, ...)``); they are independent of every stream JAX
draws from the same key.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["generator", "split"]


def generator(key: jax.Array, *stream: int) -> np.random.Generator:
    """A NumPy generator seeded by ``key``'s data, followed by the integers ``stream`` (one
    key, several independent streams)."""
    seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    return np.random.default_rng([*seed, *stream])


def split(key: jax.Array, num: int) -> tuple[jax.Array, ...]:
    """``num`` new typed keys of ``key``'s implementation, their data drawn by
    :func:`generator`: ``jax.random.split`` without its program."""
    impl = jax.random.key_impl(key)
    shape = np.shape(jax.random.key_data(key))
    data = generator(key).integers(0, 2**32, (num, *shape), dtype=np.uint32)
    return tuple(jax.random.wrap_key_data(d, impl=impl) for d in data)
