r"""Sample-quality metrics: how far are model samples from data, and how much mass does a
density or a sampler put on each mode?

A learned energy is a density, not only a score: :func:`density_mode_weights` integrates its
:math:`e^{-E}` over the Voronoi cells of known mode centres (quadrature on a grid, for 2-D
energies), :func:`mode_weights` counts draws in the same cells. Against the data's weights
they tell a wrong density (the model's error) from a sampler that did not mix.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from numpyro_ebm._checks import check_finite_array, check_real_array
from numpyro_ebm.evidence import exact

__all__ = ["ModeWeights", "density_mode_weights", "energy_distance", "mode_weights"]


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


class ModeWeights(NamedTuple):
    """``weights``: the fraction of draws nearest to each centre, shape ``(K,)``;
    ``standard_error``: its Monte Carlo standard error, from the spread of the per-chain
    fractions over independent chains (``(chains, draws, d)`` input), or binomial for
    independent draws (``(n, d)`` input)."""

    weights: np.ndarray
    standard_error: np.ndarray


def _nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return np.argmin(((points[..., None, :] - centers) ** 2).sum(-1), axis=-1)


def _centers(centers) -> np.ndarray:
    centers = np.asarray(centers, np.float64)
    if centers.ndim != 2 or centers.shape[0] < 1:
        raise ValueError(f"centers must have shape (K, d) with K >= 1, got {centers.shape}")
    return centers


def mode_weights(draws: ArrayLike, centers: ArrayLike) -> ModeWeights:
    """The fraction of ``draws`` in the Voronoi cell of each of ``centers`` (K, d).

    ``draws`` is ``(n, d)`` (independent draws: binomial standard errors) or ``(chains, n,
    d)`` (the standard error of the mean of the per-chain fractions, which holds for
    independent chains however correlated each chain's draws are).
    """
    centers = _centers(centers)
    draws = np.asarray(check_real_array("draws", draws), np.float64)
    if draws.ndim not in (2, 3) or draws.shape[-1] != centers.shape[1] or draws.shape[-2] < 1:
        raise ValueError(
            f"draws must have shape (n, {centers.shape[1]}) or (chains, n, {centers.shape[1]}) "
            f"for centers of shape {centers.shape}, got {draws.shape}"
        )
    check_finite_array("draws", draws)
    onehot = _nearest(draws, centers)[..., None] == np.arange(centers.shape[0])
    if draws.ndim == 2:
        weights = onehot.mean(0)
        return ModeWeights(weights, np.sqrt(weights * (1 - weights) / draws.shape[0]))
    per_chain = onehot.mean(1)
    weights = per_chain.mean(0)
    chains = per_chain.shape[0]
    se = per_chain.std(0, ddof=1) / np.sqrt(chains) if chains > 1 else np.full_like(weights, np.nan)
    return ModeWeights(weights, se)


def density_mode_weights(energy, centers: ArrayLike, lower, upper, num: int = 256) -> np.ndarray:
    r"""The mass :math:`\int_{V_k} e^{-E} / \int e^{-E}` of the density of ``energy`` (one
    configuration of shape ``(d,)``, d = 1 or 2) in the Voronoi cell :math:`V_k` of each of
    ``centers``, by quadrature on :func:`~numpyro_ebm.evidence.exact.grid` over the box
    ``[lower, upper]``."""
    centers = _centers(centers)
    cells = exact.grid(lower, upper, num)
    log_density = -np.asarray(exact.grid_energies(energy, cells.points), np.float64)
    density = np.exp(log_density - log_density.max())
    label = _nearest(np.asarray(cells.points, np.float64), centers)
    mass = np.bincount(label, weights=density, minlength=centers.shape[0])
    return mass / mass.sum()
