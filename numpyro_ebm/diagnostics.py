"""On-device MCMC convergence diagnostics, numerically identical to ArviZ 0.23.

Every public function takes draws of shape ``(chain, draw, *param_shape)`` and returns an array
of shape ``param_shape``. The functions are pure JAX with no Python branching on values, so they
run under :func:`jax.jit`, inside :func:`jax.lax.scan` and on any device. Shapes are static, so
the input checks (at least 2 chains and 4 draws) raise eagerly even under ``jit``.

The estimators reproduce ``arviz.rhat(method="rank")``, ``arviz.ess(method=...)`` and
``arviz.mcse(method=...)`` (Vehtari et al. 2021, with Geyer's 1992 initial monotone sequence),
including their conventions for edge cases:

* a parameter whose draws hold a ``NaN`` gets ``NaN`` (other parameters are unaffected);
* a constant parameter gets ``rhat = NaN`` (0/0), an ESS equal to the number of split draws
  ``chain * 2 * (draw // 2)``, ``mcse_mean = 0`` and ``mcse_sd = NaN``.

Computation happens in the input's floating dtype (integer and 16-bit inputs are promoted to
JAX's default float), so float64 results need ``jax.enable_x64``.

References
----------
Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science*, 7(4), 473-483.

Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing convergence of
MCMC. *Bayesian Analysis*, 16(2), 667-718.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.diagnostics import potential_scale_reduction
from jax.scipy.special import ndtri
from jax.typing import ArrayLike
from scipy.fft import next_fast_len

__all__ = ["ess_bulk", "ess_mean", "ess_tail", "mcse_mean", "mcse_sd", "rhat"]

Array = jax.Array

# Blom (1958) plotting-position offset used by the rank normalization.
_BLOM_OFFSET = 3.0 / 8.0
# ArviZ treats a draw array whose range is below float64 resolution as constant.
_CONSTANT_RANGE = float(np.finfo(np.float64).resolution)
# Quantiles whose indicator functions define the tail ESS.
_TAIL_PROBS = (0.05, 0.95)


# --------------------------------------------------------------------------------------------
# Input handling. Internally draws are laid out as (*param_shape, chain, draw).
# --------------------------------------------------------------------------------------------


def _prepare(name: str, x: ArrayLike) -> Array:
    """Check the shape, promote to a float dtype and move (chain, draw) to the last axes."""
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[0] < 2 or x.shape[1] < 4:
        raise ValueError(
            f"{name} must have shape (chain, draw, *param_shape) with at least 2 chains and "
            f"4 draws, got {name}.shape={x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.result_type(float))
    return jnp.moveaxis(x, (0, 1), (-2, -1))


def _nan_where_missing(value: Array, x: Array) -> Array:
    """Set ``value`` to NaN for every parameter whose draws ``x`` hold a NaN (ArviZ's rule)."""
    return jnp.where(jnp.isnan(x).any(axis=(-2, -1)), jnp.nan, value)


def _split_chains(x: Array) -> Array:
    """Split every chain into its first and last ``draw // 2`` draws, as ArviZ does.

    With an odd number of draws the *middle* draw is dropped (BlackJAX drops the last one).
    """
    half = x.shape[-1] // 2
    return jnp.concatenate([x[..., :half], x[..., x.shape[-1] - half :]], axis=-2)


def _pool(x: Array) -> Array:
    """Merge the (chain, draw) axes into one axis of pooled draws."""
    return x.reshape(*x.shape[:-2], -1)


# --------------------------------------------------------------------------------------------
# Ranks. XLA's CPU sort has a fast path for a single integer operand only, so floats are
# mapped to order-preserving integer keys and, where 64-bit integers are available, the key
# and the position are packed into one int64 so that a single sort yields the permutation.
# --------------------------------------------------------------------------------------------


def _order_keys(x: Array) -> Array:
    """Signed integers ordered like the floats ``x``; ``-0.0`` and ``+0.0`` share a key."""
    int_dtype = jnp.int32 if x.dtype == jnp.float32 else jnp.int64
    bits = jax.lax.bitcast_convert_type(jnp.where(x == 0, jnp.zeros_like(x), x), int_dtype)
    return jnp.where(bits < 0, bits ^ jnp.iinfo(int_dtype).max, bits)


def _argsort(x: Array) -> tuple[Array, Array]:
    """Sort the last axis of ``x``; return the sorted order keys and the sorting permutation."""
    keys = _order_keys(x)
    positions = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    if keys.dtype == jnp.int32 and jax.dtypes.canonicalize_dtype(jnp.int64) == jnp.int64:
        packed = (keys.astype(jnp.int64) << 32) | positions.astype(jnp.int64)
        packed = jax.lax.sort(packed, dimension=x.ndim - 1)
        return (packed >> 32).astype(jnp.int32), (packed & 0xFFFFFFFF).astype(jnp.int32)
    return jax.lax.sort((keys, positions), dimension=x.ndim - 1, num_keys=1)


def _average_ranks(sorted_keys: Array, order: Array, dtype: jnp.dtype) -> Array:
    """One-based ranks of the unsorted values, ties sharing the mean of their ranks.

    Equivalent to ``scipy.stats.rankdata(method="average")`` along the last axis.
    """
    n = sorted_keys.shape[-1]
    axis = sorted_keys.ndim - 1
    position = jax.lax.broadcasted_iota(jnp.int32, sorted_keys.shape, axis)
    new_value = sorted_keys[..., 1:] != sorted_keys[..., :-1]
    edge = jnp.ones_like(new_value[..., :1])
    is_first = jnp.concatenate([edge, new_value], axis=-1)
    is_last = jnp.concatenate([new_value, edge], axis=-1)
    first = jax.lax.cummax(jnp.where(is_first, position, 0), axis=axis)
    last = jax.lax.cummin(jnp.where(is_last, position, n - 1), axis=axis, reverse=True)
    sorted_ranks = (first + last + 2).astype(dtype) / 2
    return jnp.put_along_axis(
        jnp.zeros(sorted_keys.shape, dtype), order, sorted_ranks, axis=-1, inplace=False
    )


def _normal_scores(ranks: Array) -> Array:
    r"""Blom's normal scores :math:`\Phi^{-1}\big((r - 3/8) / (S - 2 \cdot 3/8 + 1)\big)`."""
    size = ranks.shape[-1]
    return ndtri((ranks - _BLOM_OFFSET) / (size - 2 * _BLOM_OFFSET + 1))


def _z_scale(x: Array) -> Array:
    """Rank-normalize ``x`` over all its chains and draws pooled (Vehtari et al. 2021, eq. 14)."""
    sorted_keys, order = _argsort(_pool(x))
    return _normal_scores(_average_ranks(sorted_keys, order, x.dtype)).reshape(x.shape)


def _order_statistic(pooled: Array, order: Array, index: int) -> Array:
    """The ``index``-th smallest pooled value (zero-based)."""
    return jnp.take_along_axis(pooled, order[..., index : index + 1], axis=-1)[..., 0]


def _quantile(pooled: Array, order: Array, prob: float) -> Array:
    """R's type-7 quantile, written as ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)``."""
    size = pooled.shape[-1]
    aleph = size * prob + (1.0 + prob * (1.0 - 1.0 - 1.0))
    k = int(np.floor(np.clip(aleph, 1, size - 1)))
    gamma = float(np.clip(aleph - k, 0, 1))
    low = _order_statistic(pooled, order, k - 1)
    high = _order_statistic(pooled, order, k)
    return (1.0 - gamma) * low + gamma * high


# --------------------------------------------------------------------------------------------
# Effective sample size.
# --------------------------------------------------------------------------------------------


def _autocovariance(x: Array) -> Array:
    """Biased autocovariance of every chain at every lag, via a zero-padded FFT."""
    n = x.shape[-1]
    centered = x - x.mean(axis=-1, keepdims=True)
    spectrum = jnp.fft.rfft(centered, n=next_fast_len(2 * n, real=True), axis=-1)
    power = (spectrum * jnp.conj(spectrum)).real
    return jnp.fft.irfft(power, n=next_fast_len(2 * n, real=True), axis=-1)[..., :n] / n


def _autocorrelation(x: Array) -> Array:
    r"""Multi-chain autocorrelation :math:`\hat\rho_t` (Vehtari et al. 2021, eq. 10).

    .. math::
        \hat\rho_t = 1 - \frac{W - \frac{1}{M}\sum_m \hat\gamma_{m,t}}{\widehat{\mathrm{var}}^+},
        \qquad \hat\rho_0 = 1.
    """
    n = x.shape[-1]
    mean_autocov = _autocovariance(x).mean(axis=-2)
    within = mean_autocov[..., :1] * n / (n - 1.0)
    var_plus = within * (n - 1.0) / n + jnp.var(x.mean(axis=-1), axis=-1, ddof=1)[..., None]
    rho = 1.0 - (within - mean_autocov) / var_plus
    return rho.at[..., 0].set(1.0)


def _geyer_tau(rho: Array) -> Array:
    r"""Integrated autocorrelation time with Geyer's (1992) initial monotone sequence.

    Follows ArviZ exactly. With pair sums :math:`P_k = \hat\rho_{2k} + \hat\rho_{2k+1}`, let
    :math:`K` be the number of leading strictly positive :math:`P_k` (searching no further
    than ArviZ's loop bound, :math:`2k + 2 < n`). Then

    .. math:: \hat\tau = -1 + 2 \sum_{k=0}^{K-1} \min_{j \le k} P_j + \tilde\rho_{2K},

    where :math:`\tilde\rho_{2K} = \hat\rho_{2K}` if :math:`P_K \ge 0` or
    :math:`\hat\rho_{2K} > 0`, and 0 otherwise (ArviZ's ``rho_hat_t[max_t + 1]`` term).
    """
    num_pairs = max((rho.shape[-1] - 1) // 2, 1)
    pairs = rho[..., : 2 * num_pairs].reshape(*rho.shape[:-1], num_pairs, 2)
    pair_sums = pairs.sum(axis=-1)
    k = jnp.cumprod(pair_sums[..., :-1] > 0, axis=-1).sum(axis=-1)[..., None]
    monotone = jax.lax.cummin(pair_sums, axis=pair_sums.ndim - 1)
    head = jnp.where(jnp.arange(num_pairs) < k, monotone, 0.0).sum(axis=-1)
    pair_sum_k = jnp.take_along_axis(pair_sums, k, axis=-1)[..., 0]
    rho_2k = jnp.take_along_axis(pairs[..., 0], k, axis=-1)[..., 0]
    tail = jnp.where((pair_sum_k >= 0) | (rho_2k > 0), rho_2k, 0.0)
    return -1.0 + 2.0 * head + tail


def _ess(x: Array) -> Array:
    r"""ESS of already-split chains ``x`` (ArviZ's ``_ess``).

    ``blackjax.diagnostics.effective_sample_size`` is not used: it differs from ArviZ in that
    (i) it scans autocorrelation pairs up to the last lag instead of stopping at ArviZ's loop
    bound, (ii) it adds :math:`\hat\rho_{2K}` only when positive (ArviZ also adds it when
    :math:`P_K \ge 0` or when the loop bound is hit), (iii) it returns 0, not :math:`S`, for a
    constant array, and (iv) it squeezes size-1 parameter axes.

    .. math:: \widehat{\mathrm{ESS}} = \frac{S}{\max(\hat\tau, 1 / \log_{10} S)}, \qquad S = MN,

    so the estimate never exceeds :math:`S \log_{10} S`. A constant array has ESS :math:`S`.
    """
    size = x.shape[-2] * x.shape[-1]
    rho = _autocorrelation(x)
    tau = jnp.maximum(_geyer_tau(rho), 1.0 / np.log10(size))
    ess = jnp.where(jnp.isnan(rho).any(axis=-1), jnp.nan, size / tau)
    constant = x.max(axis=(-2, -1)) - x.min(axis=(-2, -1)) < _CONSTANT_RANGE
    return jnp.where(constant, jnp.asarray(size, x.dtype), ess)


def _quantile_ess(x: Array, pooled: Array, order: Array, prob: float) -> Array:
    """ESS of the split indicator :math:`I(x \\le q_p)` of the pooled ``prob``-quantile."""
    indicator = x <= _quantile(pooled, order, prob)[..., None, None]
    return _ess(_split_chains(indicator.astype(x.dtype)))


# --------------------------------------------------------------------------------------------
# Public diagnostics.
# --------------------------------------------------------------------------------------------


def _psrf(z: Array) -> Array:
    """Gelman-Rubin potential scale reduction; BlackJAX's formula agrees with ArviZ's ``_rhat``."""
    return potential_scale_reduction(z, chain_axis=-2, sample_axis=-1).reshape(z.shape[:-2])


def rhat(x: ArrayLike) -> Array:
    r"""Rank-normalized split-:math:`\hat R` (Vehtari et al. 2021), as ``az.rhat(method="rank")``.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws.

    Returns
    -------
    Array of shape ``param_shape``. ``NaN`` for a parameter with a ``NaN`` draw or constant draws.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or 4 draws.

    Notes
    -----
    Chains are split in half. The bulk value is the classic :math:`\hat R` of the rank-normalized
    split draws :math:`z`; the tail value is the same statistic of the rank-normalized folded
    draws :math:`|\theta - \mathrm{median}(\theta)|`:

    .. math::
        \hat R(z) = \sqrt{\frac{\frac{N-1}{N} W + \frac{1}{N} B}{W}}, \qquad
        \hat R = \max\big(\hat R_{\mathrm{bulk}}, \hat R_{\mathrm{tail}}\big),

    with :math:`W` the mean within-chain variance and :math:`B/N` the variance of chain means.
    As in ArviZ (Python's ``max``), a ``NaN`` tail value leaves the bulk value.
    """
    # blackjax.diagnostics.rhat differs for an odd number of draws (it drops the last draw, not
    # the middle one) and when the tail value is NaN (``jnp.maximum`` propagates it).
    x = _prepare("x", x)
    split = _split_chains(x)
    pooled = _pool(split)
    sorted_keys, order = _argsort(pooled)
    bulk_z = _normal_scores(_average_ranks(sorted_keys, order, x.dtype)).reshape(split.shape)
    middle = pooled.shape[-1] // 2
    median = (
        _order_statistic(pooled, order, middle - 1) + _order_statistic(pooled, order, middle)
    ) / 2
    folded_z = _z_scale(jnp.abs(split - median[..., None, None]))
    bulk = _psrf(bulk_z)
    tail = _psrf(folded_z)
    return _nan_where_missing(jnp.where(tail > bulk, tail, bulk), x)


def ess_bulk(x: ArrayLike) -> Array:
    r"""Bulk effective sample size, as ``az.ess(method="bulk")``.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws.

    Returns
    -------
    Array of shape ``param_shape``; ``NaN`` where a draw is ``NaN``.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or 4 draws.

    Notes
    -----
    The ESS of the rank-normalized split chains (Vehtari et al. 2021, section 4.2):

    .. math:: \widehat{\mathrm{ESS}} = \frac{MN}{\hat\tau}, \qquad
        \hat\tau = -1 + 2 \sum_{k=0}^{K-1} \min_{j \le k} P_j + \tilde\rho_{2K},

    with Geyer's (1992) initial monotone sequence of autocorrelation pair sums :math:`P_k`,
    :math:`\hat\tau` floored at :math:`1 / \log_{10}(MN)`.
    """
    x = _prepare("x", x)
    return _nan_where_missing(_ess(_z_scale(_split_chains(x))), x)


def ess_tail(x: ArrayLike) -> Array:
    r"""Tail effective sample size, as ``az.ess(method="tail")``.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws.

    Returns
    -------
    Array of shape ``param_shape``; ``NaN`` where a draw is ``NaN``.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or 4 draws.

    Notes
    -----
    The smaller split-chain ESS of the indicators of the 5% and 95% quantiles (type 7, pooled
    over all draws) (Vehtari et al. 2021, section 4.3):

    .. math:: \widehat{\mathrm{ESS}}_{\mathrm{tail}} = \min\big(
        \widehat{\mathrm{ESS}}(I(\theta \le q_{0.05})),
        \widehat{\mathrm{ESS}}(I(\theta \le q_{0.95}))\big).
    """
    # blackjax.diagnostics.ess_tail differs: its quantiles pool the *split* draws (so the
    # middle draw of an odd-length chain is ignored), its upper indicator is I(x >= q_0.95)
    # rather than I(x <= q_0.95) (not complements when draws are tied), and it inherits the
    # ESS differences listed in ``_ess``.
    x = _prepare("x", x)
    pooled = _pool(x)
    _, order = _argsort(pooled)
    low, high = (_quantile_ess(x, pooled, order, prob) for prob in _TAIL_PROBS)
    return _nan_where_missing(jnp.where(high < low, high, low), x)


def ess_mean(x: ArrayLike) -> Array:
    r"""Effective sample size of the mean, as ``az.ess(method="mean")``.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws.

    Returns
    -------
    Array of shape ``param_shape``; ``NaN`` where a draw is ``NaN``.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or 4 draws.

    Notes
    -----
    The split-chain ESS of the raw draws, :math:`MN / \hat\tau` with Geyer's (1992) initial
    monotone sequence estimator of :math:`\hat\tau` (see :func:`ess_bulk`).
    """
    x = _prepare("x", x)
    return _nan_where_missing(_ess(_split_chains(x)), x)


def mcse_mean(x: ArrayLike) -> Array:
    r"""Monte Carlo standard error of the mean, as ``az.mcse(method="mean")``.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws.

    Returns
    -------
    Array of shape ``param_shape``; ``NaN`` where a draw is ``NaN``.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or 4 draws.

    Notes
    -----
    .. math:: \mathrm{MCSE}(\bar\theta) = \frac{s}{\sqrt{\widehat{\mathrm{ESS}}_{\mathrm{mean}}}},

    with :math:`s` the standard deviation (``ddof=1``) of all draws pooled.
    """
    x = _prepare("x", x)
    sd = jnp.std(_pool(x), axis=-1, ddof=1)
    return _nan_where_missing(sd / jnp.sqrt(_ess(_split_chains(x))), x)


def mcse_sd(x: ArrayLike) -> Array:
    r"""Monte Carlo standard error of the standard deviation, as ``az.mcse(method="sd")``.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws.

    Returns
    -------
    Array of shape ``param_shape``; ``NaN`` where a draw is ``NaN`` or the draws are constant.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or 4 draws.

    Notes
    -----
    ArviZ 0.23's delta-method formula, reproduced as written. With squared deviations
    :math:`d = (\theta - \bar\theta)^2` (pooled mean :math:`\bar\theta`) and the split-chain
    ESS of :math:`d`,

    .. math:: \mathrm{MCSE}(\mathrm{sd}) = \sqrt{\frac{\overline{d^2} - \bar d^{\,2}}
        {4\, \bar d\, \widehat{\mathrm{ESS}}(d)}}.
    """
    x = _prepare("x", x)
    squared = (x - _pool(x).mean(axis=-1)[..., None, None]) ** 2
    mean_squared = _pool(squared).mean(axis=-1)
    var_squared = (_pool(squared**2).mean(axis=-1) - mean_squared**2) / _ess(_split_chains(squared))
    return _nan_where_missing(jnp.sqrt(var_squared / mean_squared / 4), x)
