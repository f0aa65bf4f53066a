r"""Nested :math:`\hat R` of chains grouped in superchains (Margossian et al. 2024), for many
short chains (see :func:`nested_rhat`)."""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from numpyro_ebm._checks import check_int, check_real_array

Array = jax.Array

# The tolerated nonstationary variance of Margossian et al.'s experiments (their tau).
_DEFAULT_TAU = 1e-4


def _superchain_order(layout, chains: int) -> tuple[np.ndarray, int]:
    """The chains ordered superchain by superchain, and the number of superchains ``K``, from
    ``layout``: ``K`` (consecutive groups) or one integer label per chain. Checked eagerly: the
    layout decides shapes, so it must be concrete even under ``jit``."""
    if isinstance(layout, jax.core.Tracer):
        raise TypeError(
            "superchains must be concrete (a Python int or a NumPy array), not a traced value: "
            "it decides the shapes of the computation"
        )
    if np.ndim(layout) == 0:
        try:
            k = operator.index(layout)
        except TypeError:
            raise TypeError(
                f"superchains must be an integer (the number of superchains) or an integer "
                f"array of one superchain label per chain, got {layout!r}"
            ) from None
        if k < 2 or chains % k:
            raise ValueError(
                f"superchains={k} must be at least 2 and divide the {chains} chains into equal "
                "consecutive groups"
            )
        return np.arange(chains), k
    labels = np.asarray(layout)
    if labels.ndim != 1 or labels.shape[0] != chains:
        raise ValueError(
            f"superchains must hold one label per chain, shape ({chains},), got shape "
            f"{labels.shape}"
        )
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise TypeError(f"superchains labels must be integers, got dtype {labels.dtype}")
    values, counts = np.unique(labels, return_counts=True)
    if values.size < 2:
        raise ValueError(f"superchains must name at least 2 superchains, got labels {labels}")
    if np.any(counts != counts[0]):
        sizes = dict(zip(values.tolist(), counts.tolist(), strict=True))
        raise ValueError(
            f"every superchain must hold the same number of chains, got chains per label {sizes}"
        )
    return np.argsort(labels, kind="stable"), int(values.size)


@functools.partial(jax.jit, static_argnames="superchains")
def _nested_rhat(x: Array, superchains: int) -> Array:
    """Nested R-hat of ``(chain, draw, *param_shape)`` draws whose chains are ordered
    superchain by superchain, in ``superchains`` equal groups."""
    chains, n = x.shape[:2]
    m = chains // superchains
    grouped = x.reshape(superchains, m, n, *x.shape[2:])
    chain_mean = grouped.mean(axis=2)  # (K, M, ...)
    within_chain = grouped.var(axis=2, ddof=1).mean(axis=1) if n > 1 else 0.0
    between_chain = chain_mean.var(axis=1, ddof=1) if m > 1 else 0.0
    superchain_mean = chain_mean.mean(axis=1)  # (K, ...)
    between = superchain_mean.var(axis=0, ddof=1)
    within = jnp.mean(between_chain + within_chain, axis=0)
    # Constant draws are 0/0, set explicitly: XLA's fused means can leave a rounding residue.
    constant = jnp.max(x, axis=(0, 1)) == jnp.min(x, axis=(0, 1))
    return jnp.where(constant, jnp.nan, jnp.sqrt(1.0 + between / within))


def nested_rhat(x: ArrayLike, superchains: int | ArrayLike) -> Array:
    r"""Nested :math:`\hat R` (Margossian et al. 2024) of many chains grouped in superchains:
    chains of one superchain start from the same point, superchains from different points.

    Parameters
    ----------
    x
        Draws of shape ``(chain, draw, *param_shape)``: at least 2 chains and 1 draw (the
        many-short-chains regime allows a single draw per chain).
    superchains
        The layout: an integer :math:`K \ge 2` groups the chains in :math:`K` consecutive
        superchains of :math:`M = \mathrm{chain} / K` chains (chains ``0..M-1`` form the first);
        or an integer array of shape ``(chain,)`` labelling the superchain of every chain, each
        label used by the same number :math:`M` of chains. It must be concrete (not traced).

    Returns
    -------
    Array of shape ``param_shape``, in the draws' floating dtype. ``NaN`` for a parameter with a
    ``NaN`` draw or constant draws (0/0, as :func:`rhat`); ``inf`` when only the variance
    within superchains is 0.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 chains or no draw, the layout does not split the chains in at
        least 2 superchains of equal size, or it leaves no variance within superchains (one
        chain per superchain and one draw per chain).
    TypeError
        If ``x`` is not real, or the layout is not an integer or an integer array.

    Notes
    -----
    With :math:`K` superchains of :math:`M` chains of :math:`N` draws
    :math:`\theta^{(nmk)}`, chain means :math:`\bar\theta^{(\cdot mk)}`, superchain means
    :math:`\bar\theta^{(\cdot\cdot k)} = \frac1M \sum_m \bar\theta^{(\cdot mk)}` and their mean
    :math:`\bar\theta^{(\cdot\cdot\cdot)}` (the paper's equations 4 to 8):

    .. math::
        \widehat B_\nu = \frac{1}{K-1} \sum_{k=1}^K
            \big(\bar\theta^{(\cdot\cdot k)} - \bar\theta^{(\cdot\cdot\cdot)}\big)^2, \qquad
        \widehat W_\nu = \frac1K \sum_{k=1}^K \big(\tilde B_k + \tilde W_k\big),

    .. math::
        \tilde B_k = \frac{1}{M-1} \sum_{m=1}^M
            \big(\bar\theta^{(\cdot mk)} - \bar\theta^{(\cdot\cdot k)}\big)^2, \qquad
        \tilde W_k = \frac1M \sum_{m=1}^M \frac{1}{N-1} \sum_{n=1}^N
            \big(\theta^{(nmk)} - \bar\theta^{(\cdot mk)}\big)^2,

    with :math:`\tilde B_k = 0` when :math:`M = 1` and :math:`\tilde W_k = 0` when
    :math:`N = 1`, and

    .. math:: \widehat R_\nu = \sqrt{1 + \frac{\widehat B_\nu}{\widehat W_\nu}}.

    The within-superchain variance counts both the spread of the chain means inside a
    superchain and the variance within chains, so short chains (even :math:`N = 1`) are
    judged by whether the superchains, not the chains, agree. With one chain per superchain
    (:math:`M = 1`) it is the classic, non-split :math:`\hat R` written without its
    :math:`(N-1)/N` factor (the paper's footnote 3):
    :math:`\widehat R_\nu = \sqrt{1 + \widehat B / (N W)}`, i.e.
    :math:`\widehat R_\nu^2 = \hat R^2 + 1/N`, so it is bounded below by 1.

    **Threshold.** Converged superchains read :math:`\widehat R_\nu \approx 1`, but not
    exactly: with one draw per chain (:math:`N = 1`) and stationary chains,
    :math:`\widehat B_\nu / \widehat W_\nu \to 1/M` as :math:`K` grows (the variance left in a
    mean of :math:`M` independent chains). The paper therefore asks for
    :math:`\widehat R_\nu < 1 + \delta` with

    .. math:: 1 + \delta = \sqrt{1 + \frac1M + \tau}

    (its equation 29), where :math:`\tau` is the tolerated nonstationary variance (the variance
    of the superchain means due to their starting points, in units of the within-superchain
    variance); its experiments use :math:`\tau = 10^{-4}` (:math:`K = 16`, :math:`M = 128`:
    :math:`1 + \delta \approx 1.004`). :func:`nested_rhat_threshold` computes it. Longer chains
    leave less persistent variance (below :math:`1/M`), so for :math:`N > 1` the same threshold
    stays valid but is looser than needed. The classic :math:`1.01` is no substitute with short
    chains: below :math:`M = 50` chains per superchain, :math:`\sqrt{1 + 1/M} > 1.01` and a
    converged run with :math:`N = 1` cannot pass it. The threshold depends on :math:`M`, not on
    :math:`K`: the number of superchains sets how noisy :math:`\widehat B_\nu` is (in the
    paper's experiments with 2048 chains, :math:`K` from 8 to 256 behaved well). Chains of one
    superchain must share their starting point, and superchains start apart, else the
    statistic averages away the very disagreement it looks for.

    References
    ----------
    Margossian, C. C., Hoffman, M. D., Sountsov, P., Riou-Durand, L., Vehtari, A. and
    Gelman, A. (2024). Nested :math:`\hat R`: assessing the convergence of Markov chain Monte
    Carlo when running many short chains. *Bayesian Analysis*. doi:10.1214/24-BA1453.
    """
    x = check_real_array("x", x)
    if x.ndim < 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(
            f"x must have shape (chain, draw, *param_shape) with at least 2 chains and 1 draw, "
            f"got x.shape={x.shape}"
        )
    chains, n = x.shape[:2]
    order, k = _superchain_order(superchains, chains)
    if chains // k == 1 and n == 1:
        raise ValueError(
            f"nested R-hat needs variance within superchains: with {k} superchains of 1 chain, "
            "each chain needs at least 2 draws (or group several chains per superchain)"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.result_type(float))
    if not np.array_equal(order, np.arange(chains)):
        x = x[order]
    return _nested_rhat(x, k)


def nested_rhat_threshold(chains_per_superchain: int, tau: float = _DEFAULT_TAU) -> float:
    r"""The nested :math:`\hat R` threshold of Margossian et al. (2024, equation 29),
    :math:`\sqrt{1 + 1/M + \tau}`, for :math:`M` chains per superchain.

    Parameters
    ----------
    chains_per_superchain
        :math:`M \ge 1`, the number of chains sharing a starting point.
    tau
        :math:`\tau \ge 0`, the tolerated nonstationary variance relative to the
        within-superchain variance; :math:`10^{-4}` as in the paper's experiments.

    Returns
    -------
    float
        :math:`1 + \delta`: superchains pass when :func:`nested_rhat` is below it (1.0039 for
        :math:`M = 128`, 1.0308 for :math:`M = 16`). See :func:`nested_rhat`, "Threshold".

    Raises
    ------
    TypeError
        If ``chains_per_superchain`` is not an integer.
    ValueError
        If ``chains_per_superchain`` is below 1 or ``tau`` is not a finite number
        :math:`\ge 0`.
    """
    m = check_int("chains_per_superchain", chains_per_superchain)
    if (
        isinstance(tau, bool)
        or not isinstance(tau, int | float | np.number)
        or not (math.isfinite(tau) and tau >= 0)
    ):
        raise ValueError(f"tau must be a finite number >= 0, got {tau!r}")
    return math.sqrt(1.0 + 1.0 / m + float(tau))
