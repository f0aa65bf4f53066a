r"""Ranks, order statistics and rank normalization of draws: the sorting half of the
diagnostics (see :mod:`numpyro_ebm.diagnostics`, "How it is fast")."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from blackjax.diagnostics import potential_scale_reduction

from numpyro_ebm.diagnostics._ess import _chain_sums, _psrf_from_sums, _x64

Array = jax.Array

# Blom (1958) plotting-position offset used by the rank normalization.
_BLOM_OFFSET = 3.0 / 8.0
# Isolated pairs of equal sort keys fixed in place before the general path is needed.
_MAX_KEY_PAIRS = 8
# Histogram bins and top-k candidates of the order-statistic selection.
_SELECT_BINS = 1 << 16
_SELECT_CANDIDATES = 256
# Up to this many draws per parameter (4 chains x 2000, say) the order statistics are read
# off a sort and the ranks come from the general path: one program of half the size, which
# compiles in half the time (1.6 s against 3.0 s for R-hat and both ESS at 4 x 1000 x 10 in
# float64; 1.35 s against 2.6-3.0 s in float32 without 64-bit integers), and runs as fast at
# 4 x 1000 in float64 (1.3x slower at 8 x 1000; 1.4x slower in float32 without 64-bit
# integers, 14 ms against 9-10 ms). Larger arrays take the selection and the packed-key sort,
# several times faster there.
_SMALL = 1 << 13


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


def sort_floats(x: Array) -> Array:
    """The floats ``x`` (1-D) sorted in increasing order by the diagnostics' sort (NumPy's on
    CPU, see :func:`_sort_keys`), ``-0.0`` and ``+0.0`` as equals."""
    return _from_order_keys(_sort_keys(_order_keys(x)), x.dtype)


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
    single value (discrete draws), that is the answer. Otherwise (extreme outliers), and for at
    most ``_SMALL`` values, the values are sorted.
    """
    size = values.shape[0]
    targets = jnp.asarray(ranks, jnp.int32)
    candidates = min(_SELECT_CANDIDATES, size)

    def by_sort():
        keys = _sort_keys(_order_keys(values))
        return _from_order_keys(keys[targets], values.dtype)

    if size <= max(candidates, _SMALL):
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
        sums of the folded scores and their squares, and the draws' indices in folded order;
        and whether the values read off sums are reliable (see :func:`_psrf_from_sums`)."""
        out = {}
        reliable = jnp.asarray(True)
        if want_z and not bulk_in_draw_order:
            z_bulk = (
                jnp.zeros(size, dtype)
                .at[index]
                .set(z_bulk, unique_indices=True, mode="promise_in_bounds")
            )
            bulk_in_draw_order = True
        if want_rhat:
            out["rhat_tail"], reliable = _psrf_from_sums(fold_sums, n)
            if bulk_in_draw_order:
                z = z_bulk.reshape(chains, n)
                out["rhat_bulk"] = potential_scale_reduction(z, chain_axis=0, sample_axis=1)
            else:
                bulk_sums = _chain_sums(z_bulk, index // n, chains)
                out["rhat_bulk"], bulk_reliable = _psrf_from_sums(bulk_sums, n)
                reliable = reliable & bulk_reliable
        if want_z:
            out["z"] = z_bulk.reshape(chains, n)
        return out, reliable

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
                [
                    lambda: from_folded_order(z_bulk, fold_sums, index),
                    bulk_apart,
                    lambda: (general(), jnp.asarray(True)),
                ],
            )

        out, reliable = jax.lax.cond(pairs_only, pairs, runs)
        # Chains stuck at nearly one rank each: the general path, in draw order.
        return jax.lax.cond(reliable, lambda: out, general)

    if size <= _SMALL or not _packable(size, dtype):
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
