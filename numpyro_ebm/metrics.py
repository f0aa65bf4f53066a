"""Sample-quality metrics: how far are model samples from data?"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["energy_distance"]


def _mean_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    # one row of a at a time (lax.map): memory O(len(b)), not O(len(a) * len(b))
    return jnp.mean(jax.lax.map(lambda row: jnp.linalg.norm(b - row, axis=-1).mean(), a))


@jax.jit
def energy_distance(x: ArrayLike, y: ArrayLike) -> jax.Array:
    r"""The energy distance between the empirical laws of samples ``x`` (n, ...) and ``y``
    (m, ...) (Székely & Rizzo 2013):

    .. math::
        D(X, Y) = 2\,\mathbb{E}\|X - Y\| - \mathbb{E}\|X - X'\| - \mathbb{E}\|Y - Y'\|,

    the V-statistic over all pairs (the diagonal of the within-sample terms included). It is
    non-negative and zero only when the two laws agree; ``sqrt(D)`` is a metric.

    Székely, G. J. and Rizzo, M. L. (2013). Energy statistics: a class of statistics based on
    distances. *Journal of Statistical Planning and Inference*, 143(8), 1249-1272.
    """
    x = jnp.reshape(jnp.asarray(x), (jnp.shape(x)[0], -1))
    y = jnp.reshape(jnp.asarray(y), (jnp.shape(y)[0], -1))
    return 2 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)
