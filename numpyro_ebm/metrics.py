"""Sample-quality metrics: how far are model samples from data?"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from numpyro_ebm._checks import check_finite_array, check_real_array

__all__ = ["energy_distance"]


def _mean_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    # one row of a at a time (lax.map): memory O(len(b)), not O(len(a) * len(b))
    return jnp.mean(jax.lax.map(lambda row: jnp.linalg.norm(b - row, axis=-1).mean(), a))


def energy_distance(x: ArrayLike, y: ArrayLike) -> jax.Array:
    r"""The energy distance between the empirical laws of samples ``x`` (n, ...) and ``y``
    (m, ...) (Székely & Rizzo 2013):

    .. math::
        D(X, Y) = 2\,\mathbb{E}\|X - Y\| - \mathbb{E}\|X - X'\| - \mathbb{E}\|Y - Y'\|,

    the V-statistic over all pairs (the diagonal of the within-sample terms included). It is
    non-negative and zero only when the two laws agree; ``sqrt(D)`` is a metric.

    Székely, G. J. and Rizzo, M. L. (2013). Energy statistics: a class of statistics based on
    distances. *Journal of Statistical Planning and Inference*, 143(8), 1249-1272.

    Both hold real, finite numbers, at least one sample each, of the same shape per sample
    (checked when called with concrete arrays, not under ``jit``).
    """
    x, y = _samples("x", x), _samples("y", y)
    if jnp.shape(x)[1:] != jnp.shape(y)[1:]:
        raise ValueError(
            f"x and y must hold samples of one shape: x is {jnp.shape(x)} and y is "
            f"{jnp.shape(y)}, so their samples are {jnp.shape(x)[1:]} and {jnp.shape(y)[1:]}"
        )
    return _energy_distance(x, y)


def _samples(name: str, value) -> jax.Array:
    array = check_real_array(name, value)
    if array.ndim < 1 or array.shape[0] < 1:
        raise ValueError(
            f"{name} must hold samples along its first axis, shape (n, ...) with n >= 1, got "
            f"shape {array.shape}"
        )
    check_finite_array(name, array)
    return array


@jax.jit
def _energy_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.result_type(float))
    y = jnp.reshape(y, (y.shape[0], -1)).astype(jnp.result_type(float))
    return 2 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)
