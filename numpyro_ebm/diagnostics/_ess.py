r"""Effective sample size and :math:`\hat R` kernels on split chains (ArviZ 0.23's
conventions; see :mod:`numpyro_ebm.diagnostics`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.fft import next_fast_len

Array = jax.Array

# ArviZ treats a draw array whose range is below float64 resolution as constant.
_CONSTANT_RANGE = float(np.finfo(np.float64).resolution)


def _x64() -> bool:
    """Whether 64-bit integers are available (``jax_enable_x64``), checked at trace time."""
    return jax.dtypes.canonicalize_dtype(jnp.int64) == jnp.int64


def _split_chains(draws: Array) -> Array:
    """Split every chain of ``(..., chain, draw)`` draws in two: ``(..., 2 * chain, draw // 2)``.

    With an odd number of draws the *middle* draw is dropped, as in ArviZ (BlackJAX drops the
    last one). The halves of chain ``c`` become chains ``2c`` and ``2c + 1``; every statistic is
    symmetric in the chains, so this order (ArviZ stacks all first halves, then all second
    halves) changes nothing, and with an even number of draws the split is a free reshape.
    """
    *batch, chains, n_draws = draws.shape
    half = n_draws // 2
    if n_draws % 2 == 0:
        return draws.reshape(*batch, 2 * chains, half)
    halves = jnp.stack([draws[..., :half], draws[..., n_draws - half :]], axis=-2)
    return halves.reshape(*batch, 2 * chains, half)


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


def _fft_mean_autocov(series: Array) -> Array:
    """Chain-averaged biased autocovariance of ``(..., chain, n)`` at every lag (ArviZ's
    ``autocov`` averaged over chains). Averaging the power spectra before the inverse FFT is
    exact (the transform is linear) and saves one inverse transform per chain."""
    n = series.shape[-1]
    length = next_fast_len(2 * n, real=True)
    centered = series - series.mean(axis=-1, keepdims=True)
    spectrum = jnp.fft.rfft(centered, n=length, axis=-1)
    power = (jnp.abs(spectrum) ** 2).mean(axis=-2)
    return jnp.fft.irfft(power, n=length, axis=-1)[..., :n] / n


def _ess_of_series(series: Array) -> Array:
    r"""ESS of float series ``(R, chain, n)`` of split chains (ArviZ's ``_ess``), one batched FFT.

    ``blackjax.diagnostics.effective_sample_size`` is not used: it differs from ArviZ in that
    (i) it scans autocorrelation pairs up to the last lag instead of stopping at ArviZ's loop
    bound, (ii) it adds :math:`\hat\rho_{2K}` only when positive (ArviZ also adds it when
    :math:`P_K \ge 0` or when the loop bound is hit), (iii) it returns 0, not :math:`S`, for a
    constant array, and (iv) it squeezes size-1 parameter axes.

    With the chain-averaged autocovariance :math:`\bar\gamma_t` and :math:`W` the mean
    within-chain variance, :math:`\hat\rho_t = 1 - (W - \bar\gamma_t) /
    \widehat{\mathrm{var}}^+` (Vehtari et al. 2021, eq. 10) and

    .. math:: \widehat{\mathrm{ESS}} = \frac{S}{\max(\hat\tau, 1 / \log_{10} S)},
        \qquad S = MN,

    so the estimate never exceeds :math:`S \log_{10} S`. A constant array has ESS :math:`S`.
    """
    constant = series.max(axis=(-2, -1)) - series.min(axis=(-2, -1)) < _CONSTANT_RANGE
    var_means = jnp.var(series.mean(axis=-1), axis=-1, ddof=1)
    return _ess_from_autocov(_fft_mean_autocov(series), var_means, constant, *series.shape[-2:])


def _ess_from_autocov(
    mean_autocov: Array, var_means: Array, constant: Array, chains: int, n: int
) -> Array:
    """ESS from the chain-averaged autocovariance at every lag and the variance of the chain
    means (see :func:`_ess_of_series`)."""
    size = chains * n
    within = mean_autocov[..., :1] * n / (n - 1.0)
    var_plus = within * (n - 1.0) / n + var_means[..., None]
    rho = 1.0 - (within - mean_autocov) / var_plus
    rho = rho.at[..., 0].set(1.0)
    tau = jnp.maximum(_geyer_tau(rho), 1.0 / np.log10(size))
    ess = jnp.where(jnp.isnan(rho).any(axis=-1), jnp.nan, size / tau)
    return jnp.where(constant, jnp.asarray(size, ess.dtype), ess)


def _ess_of_indicators(indicators: Array, dtype: jnp.dtype) -> Array:
    r"""ESS of 0/1 series ``(R, chain, n)`` of split chains, as :func:`_ess_of_series` would
    give from their ``dtype`` values, but from exact integer lag products.

    With :math:`N_m` ones in chain :math:`m`, :math:`w_t = \sum_m N_m I_{m,t}` and
    :math:`C_k = \sum_{m,t} I_{m,t} I_{m,t+k}`, the chain-averaged autocovariance is

    .. math:: \bar\gamma_k = \frac{n^2 C_k - n\big(\sum_{t < n-k} w_t + \sum_{t \ge k} w_t\big)
        + (n - k) \sum_m N_m^2}{M n^3}.

    The integers :math:`C_k` come from a float32 FFT, three times faster than float64, rounded:
    its error is at most :math:`c \log_2(L)\, \epsilon_{32} \sum_m N_m` for an FFT of
    length :math:`L` (:math:`c \approx 2`; 8 is assumed), below 1/2 when the indicator or its
    complement (same autocovariance; the sparser one is used) has up to ~10^5 ones; beyond
    that the float64 FFT is used. Without 64-bit integers, or for float32 draws, the float
    FFT of the series is used as is.
    """
    if not _x64() or jnp.finfo(dtype).bits < 64:
        return _ess_of_series(indicators.astype(dtype))
    chains, n = indicators.shape[-2:]
    size = chains * n
    length = next_fast_len(2 * n, real=True)
    # Sums of the (large) boolean arrays in int32, which cannot overflow for 2**31 draws.
    ones = indicators.sum(axis=(-2, -1), dtype=jnp.int32)
    sparse = jnp.where((2 * ones > size)[..., None, None], ~indicators, indicators)
    per_chain = sparse.sum(axis=-1, dtype=jnp.int32)
    total = per_chain.sum(axis=-1)
    exact = 8 * np.log2(length) * float(np.finfo(np.float32).eps) * total < 0.5

    def from_integers():
        spectrum = jnp.fft.rfft(sparse.astype(jnp.float32), n=length, axis=-1)
        power = (jnp.abs(spectrum).astype(jnp.float64) ** 2).sum(axis=-2)
        products = jnp.fft.irfft(power, n=length, axis=-1)[..., :n]
        products = jnp.round(products).astype(jnp.int64)
        weights = jnp.where(sparse, per_chain[..., None], 0).sum(axis=-2, dtype=jnp.int32)
        weights = weights.astype(jnp.int64)
        prefix = jnp.cumsum(weights, axis=-1)
        suffix = jnp.cumsum(weights[..., ::-1], axis=-1)[..., ::-1]
        counts = per_chain.astype(jnp.int64)
        k = np.arange(n)
        numerator = (
            n * n * products
            - n * (prefix[..., n - 1 - k] + suffix[..., k])
            + (n - k) * (counts * counts).sum(axis=-1)[..., None]
        )
        mean_autocov = numerator.astype(jnp.float64) / (chains * float(n) ** 3)
        var_means = jnp.var(counts.astype(jnp.float64) / n, axis=-1, ddof=1)
        constant = (ones == 0) | (ones == size)
        return _ess_from_autocov(mean_autocov, var_means, constant, chains, n)

    return jax.lax.cond(
        exact.all(), from_integers, lambda: _ess_of_series(indicators.astype(dtype))
    )


def _chain_sums(values: Array, chain: Array, chains: int) -> Array:
    """Per-chain sums of ``values`` and of their squares, ``(chains, 2)``."""
    return jax.ops.segment_sum(
        jnp.stack([values, values * values], axis=-1), chain, chains, mode="promise_in_bounds"
    )


# A chain's variance from sums of scores and of their squares is trusted down to this fraction
# of its mean square; below (a chain stuck at nearly one rank) the sums' rounding dominates.
_MIN_RELATIVE_VARIANCE = 1e-2


def _psrf_from_sums(sums: Array, n: int) -> tuple[Array, Array]:
    r"""BlackJAX's ``potential_scale_reduction`` (which agrees with ArviZ's ``_rhat``) written
    on per-chain sums of the draws and of their squares (see :func:`_chain_sums`), so that
    folded normal scores are never put back in draw order; and whether it is reliable: every
    chain's variance at least ``_MIN_RELATIVE_VARIANCE`` of its mean square. Chains frozen
    at distinct values have variance 0 (:math:`\hat R = \infty`), which the difference of
    sums returns as rounding noise, or a negative number and ``NaN``."""
    means = sums[:, 0] / n
    variances = (sums[:, 1] - n * means**2) / (n - 1)
    reliable = jnp.all(variances >= _MIN_RELATIVE_VARIANCE * sums[:, 1] / n)
    between = n * jnp.var(means, ddof=1)
    within = variances.mean()
    return jnp.sqrt((between / within + n - 1) / n), reliable
