"""The diagnostics' driver: input checks, one compiled loop over the parameters, and the
public functions (see :mod:`numpyro_ebm.diagnostics`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from numpyro_ebm._checks import check_real_array
from numpyro_ebm.diagnostics._ess import _ess_of_indicators, _ess_of_series, _split_chains
from numpyro_ebm.diagnostics._ranks import _order_statistics, _quantile_ranks, _rank_normalized

Array = jax.Array

# Quantiles whose indicator functions define the tail ESS.
_TAIL_PROBS = (0.05, 0.95)
# Keys of :func:`summary`, in ArviZ's column order.
_SUMMARY_KEYS = ("mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "rhat")


def _check_draws(name: str, x: ArrayLike) -> Array:
    """``x`` as an array of real draws ``(chain, draw, *param_shape)``, checked eagerly (its
    shape and dtype are static, so this raises before anything compiles, even under ``jit``)."""
    if isinstance(x, (complex, np.complexfloating)) or jnp.iscomplexobj(x):
        raise TypeError(
            f"{name} must hold real draws, got complex dtype {jnp.result_type(x)}; pass the real "
            "and imaginary parts (or the modulus) as separate parameters"
        )
    x = check_real_array(name, x)
    if x.ndim < 2 or x.shape[0] < 2 or x.shape[1] < 4:
        raise ValueError(
            f"{name} must have shape (chain, draw, *param_shape) with at least 2 chains and "
            f"4 draws, got {name}.shape={x.shape}"
        )
    return x


def _promote(x: Array) -> Array:
    """Integer, boolean and 16-bit floats computed in JAX's default float."""
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        return x.astype(jnp.result_type(float))
    return x


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

    # Exact order statistics (by selection, or by one sort up to _ranks._SMALL draws): the
    # median of the split draws (to fold them) and the type-7 tail quantiles of all draws; one
    # call when both are of the same draws.
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


# Every statistic the public functions return.
_ALL_STATS = frozenset(_SUMMARY_KEYS) | {"ess_mean"}


@functools.partial(jax.jit, static_argnames="names")
def _compute(x: Array, names: frozenset) -> dict[str, Array]:
    """The statistics ``names`` of checked draws ``x``, one parameter after the other.

    Compiled once per shape, dtype and set of ``names`` (``jit``'s own cache); under an outer
    transformation it is inlined into the caller's trace."""
    x = _promote(x)
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


def _diagnostics(x: ArrayLike, name: str) -> Array:
    """The statistic ``name`` of the draws ``x`` (checked first), computed alone: a program
    per statistic does only that statistic's work (:func:`summary` shares it between
    several)."""
    return _compute(_check_draws("x", x), frozenset({name}))[name]


def _leaves(name: str, draws) -> tuple[list[Array], jax.tree_util.PyTreeDef]:
    """The checked leaves of a pytree of draws sharing their ``(chain, draw)`` axes."""
    leaves, treedef = jax.tree.flatten(draws)
    if not leaves:
        raise ValueError(f"{name} must hold at least one array of draws, got {draws!r}")
    leaves = [_check_draws(name, leaf) for leaf in leaves]
    heads = {leaf.shape[:2] for leaf in leaves}
    if len(heads) > 1:
        raise ValueError(
            f"every array of {name} must share its (chain, draw) axes, got {sorted(heads)}"
        )
    return leaves, treedef


def coordinate_names(draws, name: str = "x") -> list[str]:
    """Names of the coordinates of draws ``(chain, draw, *param_shape)`` (or a pytree of them):
    ``name`` for a scalar parameter, ``name[i,j]`` for an entry, the leaf's path (as
    ``jax.tree_util.keystr``) in place of ``name`` in a pytree.

    The order is that of the leaves, each flattened in C order, as
    :func:`max_rhat_min_ess` and the ``param_shape`` of :func:`summary`'s leaves lay them out.
    """
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(draws)[0]:
        label = jax.tree_util.keystr(path) if path else name
        shape = np.shape(leaf)[2:]
        if not shape:
            names.append(label)
        else:
            names += [f"{label}[{','.join(map(str, index))}]" for index in np.ndindex(*shape)]
    return names


@jax.jit
def _worst_mixing(leaves: list[Array]) -> tuple[Array, Array]:
    stats = [_compute(leaf, frozenset({"rhat", "ess_bulk"})) for leaf in leaves]
    rhats = jnp.concatenate([s["rhat"].reshape(-1) for s in stats])
    ess = jnp.concatenate([s["ess_bulk"].reshape(-1) for s in stats])
    broken = jnp.stack([jnp.isnan(leaf).any() for leaf in leaves]).any()
    return (
        jnp.where(broken, jnp.nan, jnp.nanmax(rhats)),
        jnp.where(broken, jnp.nan, jnp.nanmin(ess)),
    )


def max_rhat_min_ess(draws) -> tuple[Array, Array]:
    r"""The worst rank-normalized split-:math:`\hat R` and bulk ESS over every coordinate: the
    mixing check of a run, compiled once per shape and dtype of the draws.

    Parameters
    ----------
    draws
        Draws of shape ``(chain, draw, *param_shape)`` (at least 2 chains and 4 draws), or a
        pytree of such arrays sharing their ``(chain, draw)`` axes.

    Returns
    -------
    (max_rhat, min_ess_bulk)
        Two scalar arrays: the largest :func:`rhat` and the smallest :func:`ess_bulk` over all
        coordinates of all leaves. Coordinates whose draws are constant (:math:`\hat R`
        is 0/0) are skipped; both are ``NaN`` when any draw is ``NaN`` (broken chains never
        pass a mixing check) or when every coordinate is constant.

    Raises
    ------
    ValueError
        If a leaf has fewer than 2 chains or 4 draws, or the leaves' ``(chain, draw)`` axes
        differ.
    TypeError
        If a leaf is not real (complex draws, strings...).

    Notes
    -----
    One compiled program per pytree structure, shapes and dtypes (``jax.jit``'s cache): a
    sampler checking its chains every block, or :func:`~numpyro_ebm.training.fit` watching its
    replay buffer every chunk, compiles it once. Each coordinate costs one sort (the rank
    statistics of :func:`rhat` and :func:`ess_bulk` are shared).
    """
    leaves, _ = _leaves("draws", draws)
    return _worst_mixing(leaves)


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
    TypeError
        If ``x`` is not real (complex draws, strings...).

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
    return _diagnostics(x, "rhat")


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
    TypeError
        If ``x`` is not real (complex draws, strings...).
    Notes
    -----
    The ESS of the rank-normalized split chains (Vehtari et al. 2021, section 4.2):

    .. math:: \widehat{\mathrm{ESS}} = \frac{MN}{\hat\tau}, \qquad
        \hat\tau = -1 + 2 \sum_{k=0}^{K-1} \min_{j \le k} P_j + \tilde\rho_{2K},

    with Geyer's (1992) initial monotone sequence of autocorrelation pair sums :math:`P_k`,
    :math:`\hat\tau` floored at :math:`1 / \log_{10}(MN)`.
    """
    return _diagnostics(x, "ess_bulk")


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
    TypeError
        If ``x`` is not real (complex draws, strings...).
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
    return _diagnostics(x, "ess_tail")


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
    TypeError
        If ``x`` is not real (complex draws, strings...).
    Notes
    -----
    The split-chain ESS of the raw draws, :math:`MN / \hat\tau` with Geyer's (1992) initial
    monotone sequence estimator of :math:`\hat\tau` (see :func:`ess_bulk`).
    """
    return _diagnostics(x, "ess_mean")


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
    TypeError
        If ``x`` is not real (complex draws, strings...).
    Notes
    -----
    .. math:: \mathrm{MCSE}(\bar\theta) = \frac{s}{\sqrt{\widehat{\mathrm{ESS}}_{\mathrm{mean}}}},

    with :math:`s` the standard deviation (``ddof=1``) of all draws pooled.
    """
    return _diagnostics(x, "mcse_mean")


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
    TypeError
        If ``x`` is not real (complex draws, strings...).
    Notes
    -----
    ``NaN`` also for constant draws. ArviZ 0.23's delta-method formula, reproduced as
    written. With squared deviations :math:`d = (\theta - \bar\theta)^2` (pooled mean
    :math:`\bar\theta`) and the split-chain ESS of :math:`d`,

    .. math:: \mathrm{MCSE}(\mathrm{sd}) = \sqrt{\frac{\overline{d^2} - \bar d^{\,2}}
        {4\, \bar d\, \widehat{\mathrm{ESS}}(d)}}.
    """
    return _diagnostics(x, "mcse_sd")


def summary(x, stats: tuple[str, ...] = _SUMMARY_KEYS) -> dict:
    r"""ArviZ's summary statistics of every parameter, computed in one pass.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``, at least 2 chains and 4 draws, or a
        pytree of such arrays sharing their ``(chain, draw)`` axes (the draws of a
        pytree-valued energy).
    stats
        The statistics to compute, any of ``"mean"``, ``"sd"``, ``"mcse_mean"``,
        ``"mcse_sd"``, ``"ess_bulk"``, ``"ess_tail"`` and ``"rhat"`` (all by default). Only
        their work is done: ``("rhat", "ess_bulk", "ess_tail")`` costs one selection, one
        sort and two FFTs per parameter, where three separate calls sort twice.

    Returns
    -------
    dict
        The ``stats`` in the order given: ``"mean"``, ``"sd"`` (``ddof=1``, all draws
        pooled), and the others each equal to the function of that name, every one an array
        of shape ``param_shape``; ``NaN`` where a draw is ``NaN``. For a pytree,
        each entry is a pytree of the same structure (leaves of shape ``param_shape``);
        :func:`coordinate_names` names its coordinates.

    Raises
    ------
    ValueError
        If ``x`` (or a leaf) has fewer than 2 chains or 4 draws, or ``stats`` is empty,
        repeats a name or names an unknown statistic.
    TypeError
        If ``x`` is not real (complex draws, strings...).

    Notes
    -----
    The statistics share their work: one selection of the order statistics, one sort and one
    batched FFT per parameter. The columns of ``az.summary(kind="stats")`` and
    ``az.summary(kind="diagnostics")`` (``stat_focus="mean"``) have the same values, except
    ``r_hat`` with an odd number of draws: ``az.summary`` folds the split draws about the
    median of *all* draws, ``az.rhat`` (and this function) about the median of the split draws.
    """
    stats = _check_stats(stats)
    leaves, treedef = _leaves("x", x)
    values = [_compute(leaf, frozenset(stats)) for leaf in leaves]
    return {name: jax.tree.unflatten(treedef, [v[name] for v in values]) for name in stats}


def _check_stats(stats) -> tuple[str, ...]:
    stats = (stats,) if isinstance(stats, str) else tuple(stats)
    unknown = [name for name in stats if name not in _SUMMARY_KEYS]
    if not stats or unknown or len(set(stats)) < len(stats):
        raise ValueError(
            f"stats must be distinct names among {_SUMMARY_KEYS}, got stats={stats!r}"
        )
    return stats
