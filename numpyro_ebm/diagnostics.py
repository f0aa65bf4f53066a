r"""On-device MCMC convergence diagnostics, numerically identical to ArviZ 0.23.

Every public function takes draws of shape ``(chain, draw, *param_shape)`` and returns an array
of shape ``param_shape`` (:func:`summary` returns a dict of them). The functions are pure JAX
with no Python branching on values, so they run under :func:`jax.jit`, inside
:func:`jax.lax.scan` and on any device. Shapes are static, so the input checks (at least 2
chains and 4 draws) raise eagerly even under ``jit``.

The estimators reproduce ``arviz.rhat(method="rank")``, ``arviz.ess(method=...)``,
``arviz.mcse(method=...)`` and the matching columns of ``arviz.summary`` (Vehtari et al. 2021,
with Geyer's 1992 initial monotone sequence), including their conventions for edge cases:

* a parameter whose draws hold a ``NaN`` gets ``NaN`` (other parameters are unaffected);
* a constant parameter gets ``rhat = NaN`` (0/0), an ESS equal to the number of split draws
  ``chain * 2 * (draw // 2)``, ``mcse_mean = 0`` and ``mcse_sd = NaN``.

Computation happens in the input's floating dtype (integer and 16-bit inputs are promoted to
JAX's default float), so float64 results need ``jax.enable_x64``.

How it is fast
--------------
Parameters are processed one after the other (:func:`jax.lax.map`), so every buffer is the size
of one parameter's draws, and the rank statistics cost a single sort per parameter:

1. the exact pooled median and tail quantiles are *selected*, not sorted: a histogram of the
   draws finds the bins holding the wanted ranks, :func:`jax.lax.top_k` picks out the few draws
   in them and a sort of those finishes;
2. the split draws are sorted once by their folded value :math:`|\theta - \mathrm{median}|`,
   as single 64-bit integers packing a monotone key of the folded value, the side of the median
   and the draw's position (a sort of one integer operand is about six times faster than a
   key-value sort; on CPU it is NumPy's, see ``_sort_keys``). The order gives the folded
   ranks, and the bulk ranks too: it lists the draws below the median in decreasing order and
   the others in increasing order, so a running count of each side places every draw in the
   bulk order;
3. normal scores of integer ranks come from a table computed once per pooled size with SciPy's
   ``ndtri`` (which ArviZ calls); the bulk scores are put back in draw order with one scatter,
   the folded ones only ever need per-chain sums;
4. each ESS is one FFT (of ArviZ's length) of all chains, whose power spectra are averaged
   before the single inverse transform.

Ranks stay exact, ties included. A float64 folded value is quantized to the 43 bits left in
the packed key (float32 keeps all its bits), so two distinct values can share a key. Every run
of equal keys is found; up to eight isolated pairs are put in order from their exact values
(and share their mean rank when the values tie: the two middle draws are equidistant from the
median, so there is always one such pair); anything else (longer runs as with discrete
draws, infinities) takes a general path that ranks with a two-pass radix sort of full 64-bit
keys, several times slower. Without ``jax_enable_x64`` (no 64-bit integers) the sorts are
XLA's key-value sorts: correct, several times slower.

Called together under one trace (``jit``, ``scan``...) on the same input, :func:`rhat`,
:func:`ess_bulk`, :func:`ess_tail`, :func:`ess_mean`, :func:`mcse_mean`, :func:`mcse_sd` and
:func:`summary` share that work (see ``_diagnostics``).

References
----------
Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science*, 7(4), 473-483.

Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing convergence of
MCMC. *Bayesian Analysis*, 16(2), 667-718.
"""

from __future__ import annotations

import functools
import weakref

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import scipy.special
from blackjax.diagnostics import potential_scale_reduction
from jax.typing import ArrayLike
from scipy.fft import next_fast_len

__all__ = ["ess_bulk", "ess_mean", "ess_tail", "mcse_mean", "mcse_sd", "rhat", "summary"]

Array = jax.Array

# Blom (1958) plotting-position offset used by the rank normalization.
_BLOM_OFFSET = 3.0 / 8.0
# ArviZ treats a draw array whose range is below float64 resolution as constant.
_CONSTANT_RANGE = float(np.finfo(np.float64).resolution)
# Quantiles whose indicator functions define the tail ESS.
_TAIL_PROBS = (0.05, 0.95)
# Keys of :func:`summary`, in ArviZ's column order.
_SUMMARY_KEYS = ("mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "rhat")
# Isolated pairs of equal sort keys fixed in place before the general path is needed.
_MAX_KEY_PAIRS = 8
# Histogram bins and top-k candidates of the order-statistic selection.
_SELECT_BINS = 1 << 16
_SELECT_CANDIDATES = 256


# --------------------------------------------------------------------------------------------
# Input handling.
# --------------------------------------------------------------------------------------------


def _prepare(name: str, x: ArrayLike) -> Array:
    """Check the shape and promote to a float dtype."""
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[0] < 2 or x.shape[1] < 4:
        raise ValueError(
            f"{name} must have shape (chain, draw, *param_shape) with at least 2 chains and "
            f"4 draws, got {name}.shape={x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.result_type(float))
    return x


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


# --------------------------------------------------------------------------------------------
# Integer keys, scans and sorting helpers.
# --------------------------------------------------------------------------------------------


def _uint(bits: int) -> jnp.dtype:
    return jnp.uint64 if bits == 64 else jnp.uint32


def _order_keys(x: Array) -> Array:
    """Unsigned integers ordered like the floats ``x``; ``-0.0`` and ``+0.0`` share a key."""
    bits = jnp.finfo(x.dtype).bits
    udtype = _uint(bits)
    u = jax.lax.bitcast_convert_type(jnp.where(x == 0, jnp.zeros_like(x), x), udtype)
    sign = udtype(1 << (bits - 1))
    return jnp.where(u >= sign, ~u, u | sign)


def _from_order_keys(keys: Array, dtype: jnp.dtype) -> Array:
    """Inverse of :func:`_order_keys`."""
    bits = jnp.finfo(dtype).bits
    sign = _uint(bits)(1 << (bits - 1))
    u = jnp.where(keys >= sign, keys ^ sign, ~keys)
    return jax.lax.bitcast_convert_type(u, dtype)


def _scan_1d(values: Array, op, identity, reverse: bool = False) -> Array:
    """Inclusive scan of a 1-D array with ``op``.

    XLA's CPU lowering of ``cumsum``/``cummax`` takes about twenty passes over the data; here
    the array is cut into ``~sqrt(n)`` rows that one short :func:`jax.lax.scan` walks in
    parallel, column by column, followed by a small scan over the row totals.
    """
    size = values.shape[0]
    if reverse:
        return _scan_1d(values[::-1], op, identity)[::-1]
    width = max(1, int(np.sqrt(size)))
    rows = -(-size // width)
    padded = jnp.full(rows * width, identity, values.dtype).at[:size].set(values)
    columns = padded.reshape(rows, width).T

    def step(carry, column):
        carry = op(carry, column)
        return carry, carry

    _, within = jax.lax.scan(step, jnp.full(rows, identity, values.dtype), columns)
    totals = within[-1]
    offsets = jax.lax.associative_scan(op, totals)
    offsets = jnp.concatenate([jnp.full(1, identity, values.dtype), offsets[:-1]])
    return op(within, offsets[None, :]).T.reshape(-1)[:size]


def _index_bits(size: int) -> int:
    return max(1, (size - 1).bit_length())


def _sort_keys(keys: Array) -> Array:
    """Sort unsigned integer ``keys`` (1-D) in increasing order.

    On CPU the sort is NumPy's, through :func:`jax.pure_callback`: XLA's CPU sort is a
    comparison sort about 3.5 times slower than NumPy's vectorized one on a million 64-bit
    keys (51 ms against 14.5 ms on a 2-core x86-64 machine), and it is half the time of the
    rank statistics. On CPU the device's memory is the host's, so the callback moves no data
    between devices; on other platforms XLA's own sort runs on the device.
    """

    def on_host(k):
        # 64-bit keys cross as pairs of 32-bit words: JAX casts a callback's 64-bit results to
        # 32 bits when ``jax_enable_x64`` is off in the thread that runs it, as it is under
        # the ``jax.enable_x64`` context manager.
        words = jax.lax.bitcast_convert_type(k, jnp.uint32) if k.dtype == jnp.uint64 else k

        def sort(a):
            a = np.asarray(a)
            if k.dtype == jnp.uint64:
                return np.sort(a.view(np.uint64)[..., 0], axis=-1)[..., None].view(np.uint32)
            return np.sort(a, axis=-1)

        out = jax.pure_callback(
            sort, jax.ShapeDtypeStruct(words.shape, words.dtype), words, vmap_method="expand_dims"
        )
        return jax.lax.bitcast_convert_type(out, k.dtype) if k.dtype == jnp.uint64 else out

    return jax.lax.platform_dependent(keys, cpu=on_host, default=jax.lax.sort)


def _sort_permutation(keys: Array) -> tuple[Array, Array]:
    """Sort unsigned ``keys`` (1-D); return the sorted keys and the stable sorting permutation.

    With 64-bit integers this is a two-pass radix sort (low bits, then high bits) of single
    packed integers, which XLA sorts several times faster than a key-value pair.
    """
    size = keys.shape[0]
    ib = _index_bits(size)
    iota = jnp.arange(size, dtype=jnp.int32)
    if not _x64() or 2 * ib > 64:
        sorted_keys, perm = jax.lax.sort((keys, iota), num_keys=1, is_stable=True)
        return sorted_keys, perm
    bits = jnp.iinfo(keys.dtype).bits
    keys = keys.astype(jnp.uint64)
    mask = jnp.uint64((1 << ib) - 1)
    low_bits = 64 - ib
    if bits <= low_bits:
        packed = _sort_keys((keys << ib) | iota.astype(jnp.uint64))
        perm = (packed & mask).astype(jnp.int32)
        return keys[perm].astype(_uint(bits)), perm
    low = keys & jnp.uint64((1 << low_bits) - 1)
    first = (_sort_keys((low << ib) | iota.astype(jnp.uint64)) & mask).astype(jnp.int32)
    high = keys[first] >> low_bits
    second = (_sort_keys((high << ib) | iota.astype(jnp.uint64)) & mask).astype(jnp.int32)
    perm = first[second]
    return keys[perm], perm


def _run_bounds(starts: Array) -> tuple[Array, Array]:
    """First and last position of the run holding each element; ``starts`` flags run starts."""
    size = starts.shape[0]
    position = jnp.arange(size, dtype=jnp.int32)
    ends = jnp.concatenate([starts[1:], jnp.ones(1, bool)])
    first = _scan_1d(jnp.where(starts, position, 0), jnp.maximum, 0)
    last = _scan_1d(jnp.where(ends, position, size - 1), jnp.minimum, size - 1, reverse=True)
    return first, last


def _rank_sums(values: Array) -> Array:
    """``first + last`` zero-based positions of each value's run of ties in sorted order.

    ``(first + last) / 2 + 1`` is ``scipy.stats.rankdata(method="average")``; this is the slow
    general path (two to three sorts of the whole array).
    """
    size = values.shape[0]
    sorted_keys, perm = _sort_permutation(_order_keys(values))
    starts = jnp.concatenate([jnp.ones(1, bool), sorted_keys[1:] != sorted_keys[:-1]])
    first, last = _run_bounds(starts)
    return (
        jnp.zeros(size, jnp.int32)
        .at[perm]
        .set(first + last, unique_indices=True, mode="promise_in_bounds")
    )


@functools.lru_cache(maxsize=8)
def _blom_tables(size: int, dtype: str) -> np.ndarray:
    """Normal scores of the mean ranks ``1, 1.5, 2, ..., size`` (SciPy's ``ndtri``, as ArviZ).

    Entry ``s`` is the score of the mean rank ``s / 2 + 1`` of a run of ties at sorted
    positions ``first..last`` with ``first + last = s``.
    """
    ranks = np.arange(2 * size - 1, dtype=np.float64) / 2 + 1
    return scipy.special.ndtri((ranks - _BLOM_OFFSET) / (size - 2 * _BLOM_OFFSET + 1)).astype(dtype)


@functools.lru_cache(maxsize=8)
def _integer_rank_scores(size: int, dtype: str) -> np.ndarray:
    """Scores of the integer ranks ``1..size`` and their squares, ``(size, 2)``."""
    scores = _blom_tables(size, dtype)[::2]
    return np.stack([scores, scores * scores], axis=-1)


def _blom_table_constant(size: int, dtype: jnp.dtype) -> Array:
    return jnp.asarray(_blom_tables(size, jnp.dtype(dtype).name))


def _normal_scores(rank_sums: Array, size: int, dtype: jnp.dtype) -> Array:
    r"""Blom's normal scores :math:`\Phi^{-1}\big((r - 3/8) / (S - 2 \cdot 3/8 + 1)\big)` of the
    mean ranks :math:`r` given by ``rank_sums`` (see :func:`_blom_tables`)."""
    return _blom_table_constant(size, dtype).at[rank_sums].get(mode="promise_in_bounds")


# --------------------------------------------------------------------------------------------
# Order statistics by selection.
# --------------------------------------------------------------------------------------------


def _order_statistics(values: Array, ranks: tuple[int, ...], low: Array, high: Array) -> Array:
    """The ``ranks``-th smallest (zero-based) of the 1-D ``values`` (no NaN), exactly.

    ``low`` and ``high`` are the minimum and maximum. The values are binned into a histogram;
    when the bins holding the wanted ranks hold at most ``_SELECT_CANDIDATES`` values in all,
    :func:`jax.lax.top_k` picks those out and a small sort finishes; when each of them holds a
    single value (discrete draws), that is the answer. Otherwise (extreme outliers) the values
    are sorted.
    """
    size = values.shape[0]
    targets = jnp.asarray(ranks, jnp.int32)
    candidates = min(_SELECT_CANDIDATES, size)

    def by_sort():
        keys = _sort_keys(_order_keys(values))
        return _from_order_keys(keys[targets], values.dtype)

    if size <= candidates:
        return by_sort()
    width = high - low
    scale = _SELECT_BINS / width
    usable = jnp.isfinite(width) & jnp.isfinite(scale) & (width > 0)
    scale = jnp.where(usable, scale, 0)
    bins = jnp.clip(jnp.floor((values - low) * scale), 0, _SELECT_BINS - 1).astype(jnp.int32)
    counts = jax.ops.segment_sum(
        jnp.ones(size, jnp.int32), bins, _SELECT_BINS, mode="promise_in_bounds"
    )
    cumulative = jnp.cumsum(counts)
    target_bins = jnp.searchsorted(cumulative, targets, side="right").astype(jnp.int32)
    wanted = jnp.zeros(_SELECT_BINS, bool).at[target_bins].set(True)
    total = jnp.where(wanted, counts, 0).sum()

    def by_top_k():
        in_target = (bins[:, None] == target_bins[None, :]).any(axis=-1)
        _, picked = jax.lax.top_k(in_target.astype(jnp.float32), candidates)
        valid = in_target[picked]
        picked_bins = bins[picked]
        picked_values = jnp.sort(jnp.where(valid, values[picked], jnp.inf))
        below = (valid[None, :] & (picked_bins[None, :] < target_bins[:, None])).sum(-1)
        first_in_bin = cumulative[target_bins] - counts[target_bins]
        return picked_values[targets - first_in_bin + below]

    def by_bin_range():
        # Discrete draws: every wanted bin may hold copies of a single value.
        in_bins = bins[:, None] == target_bins[None, :]
        smallest = jnp.where(in_bins, values[:, None], jnp.inf).min(axis=0)
        largest = jnp.where(in_bins, values[:, None], -jnp.inf).max(axis=0)
        return jax.lax.cond(jnp.all(smallest == largest), lambda: smallest, by_sort)

    return jax.lax.cond(
        usable, lambda: jax.lax.cond(total <= candidates, by_top_k, by_bin_range), by_sort
    )


def _quantile_ranks(size: int, prob: float) -> tuple[int, int, float]:
    """R's type-7 quantile as ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)``: the two
    zero-based order statistics and the interpolation weight of the upper one."""
    aleph = size * prob + (1.0 + prob * (1.0 - 1.0 - 1.0))
    k = int(np.floor(np.clip(aleph, 1, size - 1)))
    gamma = float(np.clip(aleph - k, 0, 1))
    return k - 1, k, gamma


# --------------------------------------------------------------------------------------------
# Effective sample size.
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rank normalization.
# --------------------------------------------------------------------------------------------


def _chain_sums(values: Array, chain: Array, chains: int) -> Array:
    """Per-chain sums of ``values`` and of their squares, ``(chains, 2)``."""
    return jax.ops.segment_sum(
        jnp.stack([values, values * values], axis=-1), chain, chains, mode="promise_in_bounds"
    )


def _psrf_from_sums(sums: Array, n: int) -> Array:
    """BlackJAX's ``potential_scale_reduction`` (which agrees with ArviZ's ``_rhat``) written
    on per-chain sums of the draws and of their squares (see :func:`_chain_sums`), so that
    folded normal scores are never put back in draw order. Only used for distinct scores,
    where no chain's variance is 0."""
    means = sums[:, 0] / n
    variances = (sums[:, 1] - n * means**2) / (n - 1)
    between = n * jnp.var(means, ddof=1)
    within = variances.mean()
    return jnp.sqrt((between / within + n - 1) / n)


def _rank_normalized(split: Array, median: Array, low: Array, high: Array, names) -> dict:
    """Rank-normalized split draws: the bulk and tail :math:`\\hat R` and the bulk series.

    Returns a dict with ``"rhat_bulk"`` and ``"rhat_tail"`` if ``"rhat"`` is in ``names`` and
    ``"z"`` (normal scores of the split draws, in draw order) if ``"ess_bulk"`` is.
    ``median``, ``low`` and ``high`` are the median, minimum and maximum of ``split``.
    """
    chains, n = split.shape
    size = chains * n
    flat = split.reshape(-1)
    dtype = flat.dtype
    want_rhat = "rhat" in names
    want_z = "ess_bulk" in names

    def general():
        if not want_rhat:
            return {"z": _normal_scores(_rank_sums(flat), size, dtype).reshape(chains, n)}
        folded = jnp.abs(flat - median)
        # An infinite median folds infinite draws to NaN; ArviZ's tail value is then NaN.
        valid = ~jnp.isnan(folded).any()
        folded = jnp.where(valid, folded, 0)
        sums = jax.vmap(_rank_sums)(jnp.stack([flat, folded]))
        z, z_fold = _normal_scores(sums, size, dtype).reshape(2, chains, n)
        tail = potential_scale_reduction(z_fold, chain_axis=0, sample_axis=1)
        out = {
            "rhat_bulk": potential_scale_reduction(z, chain_axis=0, sample_axis=1),
            "rhat_tail": jnp.where(valid, tail, jnp.nan),
        }
        if want_z:
            out["z"] = z
        return out

    def constant():
        out = {}
        if want_rhat:
            out["rhat_bulk"] = out["rhat_tail"] = jnp.asarray(jnp.nan, dtype)
        if want_z:
            out["z"] = jnp.zeros((chains, n), dtype)
        return out

    def from_folded_order(z_bulk, fold_sums, index, bulk_in_draw_order=False):
        """The outputs from the bulk scores in folded order (or in draw order), the per-chain
        sums of the folded scores and their squares, and the draws' indices in folded order."""
        out = {}
        if want_z and not bulk_in_draw_order:
            z_bulk = (
                jnp.zeros(size, dtype)
                .at[index]
                .set(z_bulk, unique_indices=True, mode="promise_in_bounds")
            )
            bulk_in_draw_order = True
        if want_rhat:
            out["rhat_tail"] = _psrf_from_sums(fold_sums, n)
            if bulk_in_draw_order:
                z = z_bulk.reshape(chains, n)
                out["rhat_bulk"] = potential_scale_reduction(z, chain_axis=0, sample_axis=1)
            else:
                out["rhat_bulk"] = _psrf_from_sums(_chain_sums(z_bulk, index // n, chains), n)
        if want_z:
            out["z"] = z_bulk.reshape(chains, n)
        return out

    def ranked():
        payload, equal = _fold_sort(flat, median, low, high)
        # Infinite draws have no usable key: their runs fail the checks and go to ``general``.
        finite = jnp.isfinite(low) & jnp.isfinite(high)
        n_equal = equal.sum()
        pairs_only = finite & (n_equal <= _MAX_KEY_PAIRS) & ~(equal[1:] & equal[:-1]).any()

        def pairs():
            return from_folded_order(*_pair_scores(flat, median, payload, equal, n_equal, chains))

        def runs():
            fold_exact, bulk_exact, (z_bulk, z_fold, index) = _run_scores(
                flat, median, payload, equal
            )
            fold_sums = _chain_sums(z_fold, index // n, chains) if want_rhat else None

            def bulk_apart():
                # Draws tied in folded value but not in value, on one side of the median
                # (rounding in the fold, frequent with float32): rank them again.
                z_draws = _normal_scores(_rank_sums(flat), size, dtype)
                return from_folded_order(z_draws, fold_sums, index, bulk_in_draw_order=True)

            return jax.lax.switch(
                jnp.where(finite & fold_exact, jnp.where(bulk_exact, 0, 1), 2),
                [lambda: from_folded_order(z_bulk, fold_sums, index), bulk_apart, general],
            )

        return jax.lax.cond(pairs_only, pairs, runs)

    if not _packable(size, dtype):
        return jax.lax.cond(high > low, general, constant)
    return jax.lax.cond(high > low, ranked, constant)


def _packable(size: int, dtype: jnp.dtype) -> bool:
    """Whether a folded-value key, a side bit and a draw index fit in one 64-bit sort key (32
    bits for a float32 key, at least 24 for a quantized float64 one). Without 64-bit integers
    the sort takes them as two keys."""
    if not _x64():
        return _index_bits(size) <= 30
    return 63 - _index_bits(size) >= (32 if jnp.finfo(dtype).bits == 32 else 24)


def _fold_sort(flat: Array, median: Array, low: Array, high: Array) -> tuple[Array, Array]:
    """Sort the (finite) draws by folded value; return the payloads in that order and where
    consecutive sort keys are equal.

    A payload is ``upper << index_bits | index``, ``upper`` telling whether the draw is at or
    above the median. The key of a float32 folded value is its bit pattern; a float64 one is
    quantized to the bits left in a 64-bit word, ``floor(d * (2**b - 1) / max d)``, monotone
    but not one-to-one. Ties of keys are broken by the payload, so the draws below the median
    come first.
    """
    size = flat.shape[0]
    ib = _index_bits(size)
    iota = jnp.arange(size, dtype=jnp.int32)
    folded = jnp.abs(flat - median)
    payload = ((flat >= median).astype(jnp.int32) << ib) | iota
    if not _x64():
        keys = jax.lax.bitcast_convert_type(folded, jnp.uint32)
        sorted_keys, payload = jax.lax.sort((keys, payload), num_keys=2)
        return payload, sorted_keys[1:] == sorted_keys[:-1]
    if jnp.finfo(flat.dtype).bits == 32:
        keys = jax.lax.bitcast_convert_type(folded, jnp.uint32).astype(jnp.uint64)
    else:
        # The largest float64 below 2**free_bits, so that the key fits after rounding.
        top = float(np.nextafter(2.0 ** (63 - ib), 0))
        scale = top / jnp.maximum(high - median, median - low)
        scaled = jnp.where(jnp.isfinite(scale), folded * scale, 0)
        keys = jnp.minimum(jnp.floor(scaled), top).astype(jnp.uint64)
    packed = _sort_keys((keys << (ib + 1)) | payload.astype(jnp.uint64))
    sorted_keys = packed >> (ib + 1)
    payload = (packed & jnp.uint64((1 << (ib + 1)) - 1)).astype(jnp.int32)
    return payload, sorted_keys[1:] == sorted_keys[:-1]


def _bulk_ranks(upper: Array) -> Array:
    """Zero-based bulk ranks of the draws in folded order, from their sides of the median.

    Folded order lists the draws below the median in decreasing order and the others in
    increasing order, so a running count of each side gives the bulk order.
    """
    size = upper.shape[0]
    n_upper_before = _scan_1d(upper, jnp.add, 0) - upper
    n_lower = size - upper.sum()
    position = jnp.arange(size, dtype=jnp.int32)
    return jnp.where(
        upper == 1, n_lower + n_upper_before, n_lower - 1 - (position - n_upper_before)
    )


def _pair_scores(flat, median, payload, equal, n_equal, chains):
    """Bulk normal scores in folded order, per-chain sums of the folded scores and their
    squares (see :func:`_chain_sums`), and the draws' indices in folded order, when equal sort
    keys come in at most ``_MAX_KEY_PAIRS`` isolated pairs.

    Each pair is put in order from its exact draws and, when their values tie, given the mean
    of its two (consecutive) ranks. There is always such a pair: the two middle draws are
    equidistant from the median.
    """
    size = flat.shape[0]
    dtype = flat.dtype
    ib = _index_bits(size)
    index_mask = (1 << ib) - 1
    positions = jnp.arange(size - 1, dtype=jnp.int32)
    no_pair = jnp.full(_MAX_KEY_PAIRS, size, jnp.int32)

    def fix_pair(state):
        i, previous, payload, fold_ties, bulk_ties = state
        r = jnp.argmax(equal & (positions > previous)).astype(jnp.int32)
        a, b = payload[r], payload[r + 1]
        xa, xb = flat[a & index_mask], flat[b & index_mask]
        da, db = jnp.abs(xa - median), jnp.abs(xb - median)
        ua, ub = a >> ib, b >> ib
        same_side = ua == ub
        # Within a side the folded order must follow the bulk order.
        in_order = jnp.where(ua == 1, xa <= xb, xa >= xb)
        swap = (da > db) | ((da == db) & ((ua > ub) | (same_side & ~in_order)))
        payload = payload.at[r].set(jnp.where(swap, b, a)).at[r + 1].set(jnp.where(swap, a, b))
        fold_tie = da == db
        bulk_tie = fold_tie & same_side & (xa == xb)
        fold_ties = fold_ties.at[i].set(jnp.where(fold_tie, r, size))
        bulk_ties = bulk_ties.at[i].set(jnp.where(bulk_tie, r, size))
        return i + 1, r, payload, fold_ties, bulk_ties

    _, _, payload, fold_ties, bulk_ties = jax.lax.while_loop(
        lambda state: state[0] < n_equal,
        fix_pair,
        (jnp.int32(0), jnp.int32(-1), payload, no_pair, no_pair),
    )
    index = payload & index_mask
    bulk_rank = _bulk_ranks(payload >> ib)
    table = _blom_table_constant(size, dtype)
    integer = jnp.asarray(_integer_rank_scores(size, jnp.dtype(dtype).name))
    z_bulk = integer.at[bulk_rank, 0].get(mode="promise_in_bounds")
    pair_sums = bulk_rank.at[bulk_ties].get(mode="clip") + bulk_rank.at[bulk_ties + 1].get(
        mode="clip"
    )
    tied = table.at[pair_sums].get(mode="clip")
    z_bulk = z_bulk.at[bulk_ties].set(tied, mode="drop").at[bulk_ties + 1].set(tied, mode="drop")
    # Folded scores: the table itself (no copy), then each tied pair corrected in its chains.
    chain = index // (size // chains)
    fold_sums = jax.ops.segment_sum(integer, chain, chains, mode="promise_in_bounds")
    valid = fold_ties < size
    tied = table.at[2 * fold_ties + 1].get(mode="clip")
    for offset in (0, 1):
        position = jnp.minimum(fold_ties + offset, size - 1)
        old = integer.at[position].get(mode="promise_in_bounds")
        delta = jnp.stack([tied - old[:, 0], tied * tied - old[:, 1]], axis=-1)
        fold_sums = fold_sums.at[chain[position]].add(jnp.where(valid[:, None], delta, 0))
    return z_bulk, fold_sums, index


def _run_scores(flat, median, payload, equal):
    """Like :func:`_pair_scores` for any runs of equal sort keys (many ties, as with discrete
    or float32 draws), plus two flags: whether every run holds a single folded value (else
    the folded scores are wrong: quantized keys collided), and whether on each side of the
    median it holds a single value (else the bulk scores are wrong: rounding folded distinct
    draws to one value)."""
    size = flat.shape[0]
    dtype = flat.dtype
    ib = _index_bits(size)
    index = payload & ((1 << ib) - 1)
    upper = payload >> ib
    values = flat[index]
    folded = jnp.abs(values - median)
    same_side = upper[1:] == upper[:-1]
    fold_exact = jnp.all(jnp.where(equal, folded[1:] == folded[:-1], True))
    bulk_exact = jnp.all(jnp.where(equal & same_side, values[1:] == values[:-1], True))
    starts = jnp.stack([~equal, ~(equal & same_side)])
    first, last = jax.vmap(_run_bounds)(jnp.concatenate([jnp.ones((2, 1), bool), starts], 1))
    bulk_rank = _bulk_ranks(upper)
    bulk_sums = bulk_rank.at[first[1]].get(mode="promise_in_bounds") + bulk_rank.at[last[1]].get(
        mode="promise_in_bounds"
    )
    return (
        fold_exact,
        bulk_exact,
        (
            _normal_scores(bulk_sums, size, dtype),
            _normal_scores(first[0] + last[0], size, dtype),
            index,
        ),
    )


# --------------------------------------------------------------------------------------------
# Per-parameter statistics.
# --------------------------------------------------------------------------------------------


def _parameter_stats(draws: Array, low: Array, high: Array, names: frozenset) -> dict[str, Array]:
    """The statistics in ``names`` of one parameter's ``(chain, draw)`` draws, free of NaN,
    whose minimum and maximum are ``low`` and ``high``."""
    dtype = draws.dtype
    split = _split_chains(draws)
    chains, n = split.shape
    size = chains * n
    flat = split.reshape(-1)
    full = draws.reshape(-1)
    even = draws.shape[1] % 2 == 0
    want_ranks = bool(names & {"rhat", "ess_bulk"})
    out = {}

    # Exact order statistics by selection: the median of the split draws (to fold them) and
    # the type-7 tail quantiles of all draws; one selection when both are of the same draws.
    tail = [_quantile_ranks(full.shape[0], prob) for prob in _TAIL_PROBS]
    tail_ranks = tuple(rank for lower, upper, _ in tail for rank in (lower, upper))
    median_ranks = (size // 2 - 1, size // 2)
    from_split = (median_ranks if want_ranks else ()) + (
        tail_ranks if "ess_tail" in names and even else ()
    )
    order_stats = {}
    if from_split:
        order_stats = dict(
            zip(from_split, _order_statistics(flat, from_split, low, high), strict=True)
        )
    if "ess_tail" in names and not even:
        values = _order_statistics(full, tail_ranks, low, high)
        tail_values = dict(zip(tail_ranks, values, strict=True))
    else:
        tail_values = order_stats

    series = {}
    if want_ranks:
        median = (order_stats[median_ranks[0]] + order_stats[median_ranks[1]]) / 2
        ranked = _rank_normalized(split, median, low, high, names)
        if "rhat" in names:
            bulk, tail_rhat = ranked["rhat_bulk"], ranked["rhat_tail"]
            # As in ArviZ (Python's ``max``), a NaN tail value leaves the bulk value.
            out["rhat"] = jnp.where(tail_rhat > bulk, tail_rhat, bulk)
        if "ess_bulk" in names:
            series["ess_bulk"] = ranked["z"]
    if "ess_tail" in names:
        quantiles = jnp.stack(
            [
                (1.0 - gamma) * tail_values[lower] + gamma * tail_values[upper]
                for lower, upper, gamma in tail
            ]
        )
        indicators = _split_chains(draws <= quantiles[:, None, None])
        low_ess, high_ess = _ess_of_indicators(indicators, dtype)
        out["ess_tail"] = jnp.where(high_ess < low_ess, high_ess, low_ess)
    if names & {"mean", "sd", "mcse_mean", "mcse_sd"}:
        out["mean"] = full.mean()
        out["sd"] = jnp.std(full, ddof=1)
    if names & {"ess_mean", "mcse_mean"}:
        series["ess_mean"] = split
    if "mcse_sd" in names:
        squared = (draws - out["mean"]) ** 2
        series["ess_sd"] = _split_chains(squared)
    # One FFT per statistic (not one batched FFT), so that JAX drops the unused ones.
    for name, values in series.items():
        out[name] = _ess_of_series(values[None])[0]
    if "mcse_mean" in names:
        out["mcse_mean"] = out["sd"] / jnp.sqrt(out["ess_mean"])
    if "mcse_sd" in names:
        mean_squared = squared.mean()
        var_squared = ((squared**2).mean() - mean_squared**2) / out["ess_sd"]
        out["mcse_sd"] = jnp.sqrt(var_squared / mean_squared / 4)
    return {name: out[name].astype(dtype) for name in names}


# --------------------------------------------------------------------------------------------
# Driver: one loop over the parameters, shared by the public functions within a trace.
# --------------------------------------------------------------------------------------------

# Every statistic the public functions return.
_ALL_STATS = frozenset(_SUMMARY_KEYS) | {"ess_mean"}


def _compute(x: Array, names: frozenset) -> dict[str, Array]:
    chains, n_draws = x.shape[:2]
    param_shape = x.shape[2:]
    draws = jnp.moveaxis(x, (0, 1), (-2, -1)).reshape(-1, chains, n_draws)

    def one(d):
        # Minimum, maximum and whether a draw is NaN, in one pass.
        low, high, missing = jax.lax.reduce(
            (d, d, jnp.isnan(d)),
            (jnp.asarray(jnp.inf, d.dtype), jnp.asarray(-jnp.inf, d.dtype), False),
            lambda a, b: (jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1]), a[2] | b[2]),
            (0, 1),
        )

        def nan():
            return {name: jnp.asarray(jnp.nan, d.dtype) for name in names}

        return jax.lax.cond(missing, nan, functools.partial(_parameter_stats, d, low, high, names))

    out = jax.lax.map(one, draws)
    return {name: out[name].reshape(param_shape) for name in names}


# Results of ``_compute(x, _ALL_STATS)`` by traced input: ``id(x) -> (weakref(x), trace, out)``.
_SHARED: dict[int, tuple] = {}


def _diagnostics(x: ArrayLike, names: tuple[str, ...]) -> dict[str, Array]:
    """The statistics ``names`` of draws ``x``.

    Under a transformation (``jit``, ``vmap``, ``scan``...) every statistic is traced once per
    input and trace, and later calls with the same input reuse it: ``rhat(x)``,
    ``ess_bulk(x)`` and ``ess_tail(x)`` in one ``jit`` then cost a single sort per parameter,
    like :func:`summary`, and JAX's dead-code elimination drops whatever is unused. Called
    eagerly, only ``names`` are computed.
    """
    prepared = _prepare("x", x)
    if not isinstance(x, jax.core.Tracer):
        return _compute(prepared, frozenset(names))
    key = id(x)
    trace = jax.extend.core.get_opaque_trace_state(convention="numpyro_ebm")
    entry = _SHARED.get(key)
    if entry is None or entry[0]() is not x or entry[1] != trace:
        entry = (weakref.ref(x), trace, _compute(prepared, _ALL_STATS))
        if key not in _SHARED:
            weakref.finalize(x, _SHARED.pop, key, None)
        _SHARED[key] = entry
    return {name: entry[2][name] for name in names}


# --------------------------------------------------------------------------------------------
# Public diagnostics.
# --------------------------------------------------------------------------------------------


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

    ``blackjax.diagnostics.rhat`` is not used: it drops the last draw of an odd-length chain
    (ArviZ drops the middle one) and propagates a ``NaN`` tail value (``jnp.maximum``).
    """
    return _diagnostics(x, ("rhat",))["rhat"]


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
    return _diagnostics(x, ("ess_bulk",))["ess_bulk"]


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

    ``blackjax.diagnostics.ess_tail`` is not used: its quantiles pool the *split* draws (so the
    middle draw of an odd-length chain is ignored), its upper indicator is
    :math:`I(\theta \ge q_{0.95})` rather than :math:`I(\theta \le q_{0.95})` (not complements
    when draws are tied), and it inherits the ESS differences listed in ``_ess_of_series``.
    """
    return _diagnostics(x, ("ess_tail",))["ess_tail"]


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
    return _diagnostics(x, ("ess_mean",))["ess_mean"]


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
    return _diagnostics(x, ("mcse_mean",))["mcse_mean"]


def mcse_sd(x: ArrayLike) -> Array:
    r"""Monte Carlo standard error of the standard deviation, as ``az.mcse(method="sd")``.

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
    ``NaN`` also for constant draws. ArviZ 0.23's delta-method formula, reproduced as
    written. With squared deviations :math:`d = (\theta - \bar\theta)^2` (pooled mean
    :math:`\bar\theta`) and the split-chain ESS of :math:`d`,

    .. math:: \mathrm{MCSE}(\mathrm{sd}) = \sqrt{\frac{\overline{d^2} - \bar d^{\,2}}
        {4\, \bar d\, \widehat{\mathrm{ESS}}(d)}}.
    """
    return _diagnostics(x, ("mcse_sd",))["mcse_sd"]


def summary(x: ArrayLike) -> dict[str, Array]:
    r"""ArviZ's summary statistics of every parameter, computed in one pass.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws.

    Returns
    -------
    dict
        ``"mean"``, ``"sd"`` (``ddof=1``, all draws pooled), ``"mcse_mean"``, ``"mcse_sd"``,
        ``"ess_bulk"``, ``"ess_tail"`` and ``"rhat"``, each an array of shape ``param_shape``
        equal to the function of that name; ``NaN`` where a draw is ``NaN``.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or 4 draws.

    Notes
    -----
    The statistics share their work: one selection of the order statistics, one sort and one
    batched FFT per parameter. The columns of ``az.summary(kind="stats")`` and
    ``az.summary(kind="diagnostics")`` (``stat_focus="mean"``) have the same values, except
    ``r_hat`` with an odd number of draws: ``az.summary`` folds the split draws about the
    median of *all* draws, ``az.rhat`` (and this function) about the median of the split draws.
    """
    return _diagnostics(x, _SUMMARY_KEYS)
