r"""Mixing statistics of the draws so far, on the device: what ``sample(..., until=...)`` checks
between two blocks of draws (:class:`~numpyro_ebm.sampling.Until`), and nested
:math:`\hat R` when the chains run in superchains.

One compiled program serves every block of a run: the draws are read from the run's buffer of
``num_samples`` draws per chain and their count is traced. The statistics equal
:func:`~numpyro_ebm.diagnostics.max_rhat_min_ess` of the draws so far.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from scipy.fft import next_fast_len

from numpyro_ebm.diagnostics._ranks import sort_floats

__all__ = ["mixing_so_far", "nested_so_far"]


@jax.jit
def mixing_so_far(buffers: list, count) -> tuple[jax.Array, jax.Array]:
    r"""The worst rank-normalized split-:math:`\hat R` and the least bulk ESS (as
    :func:`~numpyro_ebm.diagnostics.max_rhat_min_ess`) of the first ``count`` draws of
    ``buffers``, arrays ``(chain, capacity, ...)`` whose later draws are ignored: one program
    for every block of a run, as ``count`` is traced. ``NaN`` if a draw so far is ``NaN``.

    Per coordinate, the ``2M`` half chains of :math:`N = \lfloor count/2 \rfloor` draws
    (the middle draw dropped for an odd count) are rank-normalized, :math:`z = \Phi^{-1}((r -
    3/8) / (S + 1/4))` with :math:`S = 2MN` and :math:`r` the mean rank of ties; :math:`\hat
    R` is the larger of the split :math:`\hat R` of :math:`z` and of the :math:`z` of the
    draws folded about their median, and the bulk ESS is :math:`S / \hat\tau` of :math:`z`
    with Geyer's initial monotone sequence (Vehtari et al. 2021; ArviZ's conventions). A
    constant coordinate has no :math:`\hat R` and an ESS of :math:`S`."""
    rhats, ess, broken = [], [], []
    for buffer in buffers:
        chains, capacity = buffer.shape[:2]
        broken.append((jnp.isnan(buffer) & _draw_mask(buffer, count)).any())
        coordinates = jnp.moveaxis(buffer, (0, 1), (-2, -1)).reshape(-1, chains, capacity)
        r, e = jax.lax.map(lambda x: _split_mixing(x, count), coordinates)
        rhats.append(r)
        ess.append(e)
    rhats, ess = jnp.concatenate(rhats), jnp.concatenate(ess)
    broken = jnp.stack(broken).any()
    return (
        jnp.where(broken, jnp.nan, jnp.nanmax(rhats)),
        jnp.where(broken, jnp.nan, jnp.nanmin(ess)),
    )


@functools.partial(jax.jit, static_argnames="superchains")
def nested_so_far(buffers: list, count, *, superchains: int) -> jax.Array:
    r"""The worst nested :math:`\hat R` (:func:`~numpyro_ebm.diagnostics.nested_rhat`,
    Margossian et al. 2024) of the first ``count`` draws of ``buffers`` (arrays ``(chain,
    capacity, ...)``, chains in ``superchains`` consecutive equal groups): the chain means and
    within-chain variances are taken over the first ``count`` draws only, so one program
    serves every block. ``NaN`` if a draw so far is ``NaN``; constant coordinates are left
    out."""
    worst, broken = [], []
    for buffer in buffers:
        chains = buffer.shape[0]
        mask = _draw_mask(buffer, count)
        broken.append((jnp.isnan(buffer) & mask).any())
        x = jnp.where(mask, buffer, 0.0).astype(jnp.result_type(buffer.dtype, jnp.float32))
        n = count.astype(x.dtype)
        chain_mean = x.sum(axis=1) / n  # (chain, ...)
        squares = jnp.where(mask, (x - chain_mean[:, None]) ** 2, 0.0).sum(axis=1)
        within_chain = jnp.where(count > 1, squares / jnp.maximum(n - 1, 1), 0.0)
        m = chains // superchains
        means = chain_mean.reshape(superchains, m, *chain_mean.shape[1:])
        within = within_chain.reshape(superchains, m, *within_chain.shape[1:]).mean(axis=1)
        between_chain = means.var(axis=1, ddof=1) if m > 1 else 0.0
        between = means.mean(axis=1).var(axis=0, ddof=1)
        spread = jnp.where(mask, buffer, -jnp.inf).max(axis=(0, 1)) - jnp.where(
            mask, buffer, jnp.inf
        ).min(axis=(0, 1))
        rhat = jnp.sqrt(1.0 + between / jnp.mean(between_chain + within, axis=0))
        worst.append(jnp.nanmax(jnp.where(spread > 0, rhat, jnp.nan)))
    return jnp.where(jnp.stack(broken).any(), jnp.nan, jnp.nanmax(jnp.stack(worst)))


def _draw_mask(buffer, count):
    """Where the draws of ``buffer`` (chain, capacity, ...) are among the first ``count``."""
    index = jnp.arange(buffer.shape[1]).reshape(1, -1, *([1] * (buffer.ndim - 2)))
    return index < count


def _split_mixing(draws, count) -> tuple[jax.Array, jax.Array]:
    r""":math:`\hat R` and bulk ESS of one coordinate's first ``count`` draws of ``draws``
    (chain, capacity) (see :func:`mixing_so_far`)."""
    capacity = draws.shape[1]
    half = count // 2
    j = jnp.arange(capacity // 2)
    second = jnp.minimum(count - half + j, capacity - 1)  # ArviZ drops the middle draw
    split = jnp.concatenate([draws[:, j], draws[:, second]])
    valid = jnp.broadcast_to(j < half, split.shape)
    size = split.shape[0] * half
    z, ordered = _normal_scores(split, valid, size)
    median = (ordered[size // 2 - 1] + ordered[size // 2]) / 2
    folded = jnp.abs(split - median)
    bulk = _split_rhat(z, valid, half)
    tail = _split_rhat(_normal_scores(folded, valid, size)[0], valid, half)
    tail = jnp.where((jnp.isnan(folded) & valid).any(), jnp.nan, tail)
    constant = ordered[0] == ordered[size - 1]
    rhat = jnp.where(constant, jnp.nan, jnp.where(tail > bulk, tail, bulk))
    return rhat, jnp.where(constant, size, _bulk_ess(z, valid, half)).astype(z.dtype)


def _normal_scores(values, valid, size):
    """Blom's normal scores of the ``valid`` entries of ``values`` ranked among themselves
    (ties at their mean rank, as ``scipy.stats.rankdata``), and those entries sorted first.

    The sort is the diagnostics' (NumPy's on CPU, several times faster than XLA's there); a
    value's run of ties starts where a binary search finds it in the sorted values and ends
    where a reverse running minimum of the run ends says."""
    flat = jnp.where(valid, values, jnp.inf).reshape(-1)
    ordered = sort_floats(flat)
    first = jnp.searchsorted(ordered, flat, side="left", method="scan_unrolled")
    position = jnp.arange(flat.size)
    ends = jnp.append(ordered[1:] != ordered[:-1], True)
    run_end = jax.lax.cummin(jnp.where(ends, position, flat.size - 1), reverse=True)
    last = jnp.minimum(run_end[first], size - 1)  # a run of infinities ends before the padding
    ranks = (first + last).astype(values.dtype) / 2 + 1
    z = jax.scipy.special.ndtri((ranks - 0.375) / (size + 0.25)).reshape(values.shape)
    return jnp.where(valid, z, 0), ordered


def _split_rhat(z, valid, n):
    """BlackJAX's ``potential_scale_reduction`` of the first ``n`` entries of each row."""
    means = z.sum(1) / n
    variances = jnp.where(valid, (z - means[:, None]) ** 2, 0).sum(1) / (n - 1)
    between = n * jnp.var(means, ddof=1)
    return jnp.sqrt((between / variances.mean() + n - 1) / n)


def _bulk_ess(z, valid, n):
    """ArviZ's ESS of the first ``n`` entries of each row of ``z`` (zero elsewhere): the
    chain-averaged autocovariance by FFT and Geyer's initial monotone sequence, searched up to
    ArviZ's loop bound for ``n`` draws."""
    chains, capacity = z.shape
    size = chains * n
    means = z.sum(1) / n
    centered = jnp.where(valid, z - means[:, None], 0)
    length = next_fast_len(2 * capacity, real=True)
    power = (jnp.abs(jnp.fft.rfft(centered, n=length)) ** 2).mean(0)
    autocov = jnp.fft.irfft(power, n=length)[:capacity] / n
    within = autocov[0] * n / (n - 1.0)
    var_plus = within * (n - 1.0) / n + jnp.var(means, ddof=1)
    rho = (1.0 - (within - autocov) / var_plus).at[0].set(1.0)
    num_pairs = max((capacity - 1) // 2, 1)
    pairs = rho[: 2 * num_pairs].reshape(num_pairs, 2)
    sums = pairs.sum(1)
    searched = jnp.arange(num_pairs) < jnp.maximum((n - 1) // 2, 1) - 1
    k = jnp.cumprod((sums > 0) & searched).sum()
    head = jnp.where(jnp.arange(num_pairs) < k, jax.lax.cummin(sums), 0.0).sum()
    tail = jnp.where((sums[k] >= 0) | (pairs[k, 0] > 0), pairs[k, 0], 0.0)
    tau = jnp.maximum(-1.0 + 2.0 * head + tail, 1.0 / jnp.log10(size))
    lags = jnp.arange(capacity) < n
    return jnp.where((jnp.isnan(rho) & lags).any(), jnp.nan, size / tau)


#: Bytes of kept draws (positions and statistics, all chains) that one compiled chunk of draws
