r"""Pareto :math:`\hat k` of importance log-weights (PSIS, Vehtari et al. 2024), as ArviZ 0.23's
``psislw`` fits it, in jittable JAX (see :func:`pareto_khat`)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from numpyro_ebm._checks import check_int, check_real_array

Array = jax.Array

# Zhang & Stephens' (2009) weakly informative prior, as in ArviZ's ``_gpdfit``: the scale of the
# grid of b values (a multiple of the first quartile) and the pseudo-observations shrinking
# k-hat towards 1/2.
_PRIOR_BS = 3.0
_PRIOR_K = 10.0
# Grid weights below this are dropped (ArviZ: ``10 * np.finfo(float).eps``).
_NEGLIGIBLE_WEIGHT = 10 * float(np.finfo(np.float64).eps)
# Fewer tail draws than this and no fit is made (ArviZ returns k = inf).
_MIN_TAIL = 5


def _tail_length(n: int, reff: float) -> int:
    """ArviZ's tail length, ``ceil(min(n / 5, 3 * sqrt(n / reff)))``."""
    return int(np.ceil(min(n / 5.0, 3 * (n / reff) ** 0.5)))


def _gpd_khat(tail: Array, valid: Array) -> Array:
    r"""Zhang & Stephens' (2009) empirical-Bayes estimate of the generalized Pareto shape
    :math:`k` of the exceedances ``tail`` (increasing), with ArviZ's prior, over the entries
    where ``valid`` (a suffix of ``tail``, so that the data keep static shapes).

    With :math:`n` exceedances :math:`y_{(1)} \le \dots \le y_{(n)}` and
    :math:`m = 30 + \lfloor\sqrt n\rfloor` grid points
    :math:`b_j = 1/y_{(n)} + \big(1 - \sqrt{m / (j - 1/2)}\big) / (3 y_{(\lfloor n/4 + 1/2
    \rfloor)})`, the profile shape is :math:`k(b) = \frac1n \sum_i \log(1 - b y_i)`, the
    profile log-likelihood :math:`\ell(b) = n(\log(-b / k(b)) - k(b) - 1)`, the posterior mean
    :math:`\bar b = \sum_j w_j b_j` with :math:`w \propto e^{\ell(b_j)}` (weights below
    :math:`10\epsilon_{64}` dropped), and

    .. math:: \hat k = \frac{n\, k(\bar b) + 10 \cdot \tfrac12}{n + 10}.
    """
    size = tail.shape[0]
    dtype = tail.dtype
    n = valid.sum()
    nf = n.astype(dtype)
    offset = size - n
    grid_size = 30 + jnp.floor(jnp.sqrt(nf)).astype(jnp.int32)
    max_grid = 30 + math.isqrt(size)
    j = jnp.arange(1, max_grid + 1, dtype=dtype)
    on_grid = jnp.arange(max_grid) < grid_size
    quartile = tail[offset + (n + 2) // 4 - 1]
    b = (1.0 - jnp.sqrt(grid_size.astype(dtype) / jnp.where(on_grid, j - 0.5, 1.0))) / (
        _PRIOR_BS * quartile
    ) + 1.0 / tail[-1]
    b = jnp.where(on_grid, b, -1.0 / tail[-1])  # any b < 1 / y_(n): its weight is set to 0

    def profile_k(bb):
        return jnp.where(valid, jnp.log1p(-bb * tail), 0.0).sum(axis=-1) / nf

    k = jax.vmap(profile_k)(b)
    log_lik = nf * (jnp.log(-(b / k)) - k - 1.0)
    weights = jax.nn.softmax(jnp.where(on_grid, log_lik, -jnp.inf))
    weights = jnp.where(weights >= _NEGLIGIBLE_WEIGHT, weights, 0.0)
    b_post = jnp.sum(b * weights) / weights.sum()
    k_post = profile_k(b_post)
    return (nf * k_post + _PRIOR_K * 0.5) / (nf + _PRIOR_K)


@functools.partial(jax.jit, static_argnames="tail_length")
def _pareto_khat(log_weights: Array, tail_length: int) -> Array:
    """k-hat of every row of ``(rows, n)`` log-weights, from their ``tail_length`` largest."""
    dtype = log_weights.dtype
    # ArviZ floors the cutoff at log(float64 tiny); in float32 its own tiny keeps exp() normal.
    cutoff_min = float(np.log(np.finfo(np.dtype(dtype)).tiny))

    def one(lw):
        x = lw - lw.max()
        top = jax.lax.top_k(x, tail_length + 1)[0]  # decreasing
        cutoff = jnp.maximum(top[tail_length], cutoff_min)
        tail = top[:tail_length][::-1]  # increasing; ties with the cutoff come first
        valid = tail > cutoff
        exceed = jnp.where(valid, jnp.exp(tail) - jnp.exp(cutoff), 0.0)
        khat = _gpd_khat(exceed, valid)
        khat = jnp.where(valid.sum() < _MIN_TAIL, jnp.inf, khat)
        return jnp.where(jnp.isnan(lw).any(), jnp.nan, khat)

    return jax.vmap(one)(log_weights)


def pareto_khat(log_weights: ArrayLike, *, reff: float = 1.0) -> Array:
    r"""Pareto :math:`\hat k` of importance log-weights: the estimated shape of the generalized
    Pareto distribution of their largest values (Vehtari et al. 2024), as
    ``arviz.psislw(log_weights, reff)[1]``.

    Parameters
    ----------
    log_weights
        Log importance weights (unnormalized; any additive constant), draws along the last
        axis: shape ``(..., n)``. ``-inf`` (a zero weight) is allowed.
    reff
        Relative efficiency of the draws, ESS / n (1 for independent draws, as AIS and SMC
        give); a static Python number. It sets the tail length.

    Returns
    -------
    Array of shape ``log_weights.shape[:-1]``, in the log-weights' floating dtype. ``inf`` when
    ties leave fewer than 5 values above the cutoff (ArviZ's convention), ``NaN`` for a row
    holding a ``NaN`` (possible only under ``jit``; eagerly it raises).

    Raises
    ------
    ValueError
        If ``log_weights`` is a scalar, its last axis is too short for a tail of 5 draws
        (fewer than 21 draws with ``reff=1``), it holds a ``NaN`` or ``+inf``, or ``reff`` is
        not positive.
    TypeError
        If ``log_weights`` is not real.

    Notes
    -----
    The tail is the :math:`M = \lceil \min(n/5,\ 3\sqrt{n / r_{\mathrm{eff}}}) \rceil` largest
    weights; the generalized Pareto distribution is fitted to their exceedances over the
    :math:`(M+1)`-th largest weight (ties with it are left out, as in ArviZ) with Zhang &
    Stephens' (2009) empirical-Bayes estimator and ArviZ's weakly informative prior, which
    adds 10 pseudo-observations at :math:`k = 1/2`:

    .. math:: \hat k = \frac{M \hat k_{\mathrm{ZS}} + 5}{M + 10}.

    Weights are shifted by their maximum first (the estimate is invariant to a constant), and
    the cutoff is floored at the log of the dtype's smallest normal number (ArviZ: float64's,
    the same in float64). Everything has static shapes (the tail is found with
    :func:`jax.lax.top_k`, ties are masked), so the function runs under :func:`jax.jit` and on
    any device.

    :math:`\hat k` measures how heavy the right tail of the weights is, hence how reliable an
    importance-sampling estimate (an AIS or SMC normalizing constant, a reweighted mean) is:
    below :func:`pareto_khat_threshold` (:math:`\min(1 - 1/\log_{10} n, 0.7)`) the Pareto
    smoothed estimate is reliable; above 0.7 the bias dominates and more draws barely help.

    References
    ----------
    Vehtari, A., Simpson, D., Gelman, A., Yao, Y. and Gabry, J. (2024). Pareto smoothed
    importance sampling. *Journal of Machine Learning Research*, 25(72), 1-58.

    Zhang, J. and Stephens, M. A. (2009). A new and efficient estimation method for the
    generalized Pareto distribution. *Technometrics*, 51(3), 316-325.
    """
    lw = check_real_array("log_weights", log_weights)
    if lw.ndim < 1:
        raise ValueError(
            f"log_weights must have the draws on its last axis, shape (..., n), got a scalar "
            f"of shape {lw.shape}"
        )
    if (
        isinstance(reff, bool)
        or not isinstance(reff, int | float | np.number)
        or not (math.isfinite(reff) and reff > 0)
    ):
        raise ValueError(f"reff must be a positive finite number, got {reff!r}")
    n = lw.shape[-1]
    tail_length = _tail_length(n, float(reff))
    if tail_length < _MIN_TAIL:
        raise ValueError(
            f"log_weights has {n} draws on its last axis: too few for a Pareto tail of at "
            f"least {_MIN_TAIL} draws (tail length ceil(min(n/5, 3*sqrt(n/reff))) = "
            f"{tail_length}); with reff=1 that takes at least 21 draws"
        )
    if not isinstance(lw, jax.core.Tracer):
        values = np.asarray(lw)
        bad = np.isnan(values) | (values == np.inf)
        if bad.any():
            raise ValueError(
                f"log_weights holds {int(bad.sum())} NaN or +inf value(s); first at index "
                f"{tuple(int(i) for i in np.argwhere(bad)[0])} (a log-weight may be -inf, a "
                "zero weight, but not NaN or +inf)"
            )
    if not jnp.issubdtype(lw.dtype, jnp.floating) or jnp.finfo(lw.dtype).bits < 32:
        lw = lw.astype(jnp.result_type(float))
    batch = lw.shape[:-1]
    return _pareto_khat(lw.reshape(-1, n), tail_length).reshape(batch)


def pareto_khat_threshold(num_draws: int) -> float:
    r"""The sample-size dependent :math:`\hat k` threshold of Vehtari et al. (2024, section
    3.2.4): :math:`\min(1 - 1/\log_{10} n,\ 0.7)`.

    Parameters
    ----------
    num_draws
        The number :math:`n \ge 2` of importance draws.

    Returns
    -------
    float
        Below it a Pareto smoothed importance-sampling estimate from :math:`n` draws is
        reliable (0.57 for :math:`n = 200`, 0.7 from :math:`n = 2155` on, where bias
        dominates beyond).

    Raises
    ------
    TypeError
        If ``num_draws`` is not an integer.
    ValueError
        If ``num_draws`` is below 2.
    """
    n = check_int("num_draws", num_draws, minimum=2)
    return min(1.0 - 1.0 / math.log10(n), 0.7)
