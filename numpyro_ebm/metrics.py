r"""Sample-quality metrics: how far are model samples from data, and how much mass does a
density or a sampler put on each mode?

A learned energy is a density, not only a score: :func:`density_mode_weights` integrates its
:math:`e^{-E}` over the Voronoi cells of known mode centres (quadrature on a grid, for 2-D
energies), :func:`mode_weights` counts draws in the same cells. Against the data's weights
they tell a wrong density (the model's error) from a sampler that did not mix.
:func:`class_weights` does the same for images: a classifier names the class of each
generated sample, and the samples' class frequencies are compared with the data's (KL
divergence with its Monte Carlo error, and R-hat of the class indicators across chains).
For classifiers read as energies (JEM), :func:`expected_calibration_error` says whether the
predicted probabilities can be trusted and :func:`auroc` how well a score (the energy) tells
data from out-of-distribution inputs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.typing import ArrayLike

from numpyro_ebm._checks import check_finite_array, check_int, check_real_array
from numpyro_ebm.diagnostics import rhat
from numpyro_ebm.evidence import exact

__all__ = [
    "ClassWeights",
    "ModeWeights",
    "auroc",
    "class_weights",
    "density_mode_weights",
    "energy_distance",
    "expected_calibration_error",
    "mode_weights",
]


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
    check_finite_array("centers", centers)
    return centers


def mode_weights(draws: ArrayLike, centers: ArrayLike) -> ModeWeights:
    """The fraction of ``draws`` in the Voronoi cell of each of ``centers`` (K, d).

    ``draws`` is ``(n, d)`` (independent draws: binomial standard errors) or ``(chains, n,
    d)`` (the standard error of the mean of the per-chain fractions, which holds for
    independent chains however correlated each chain's draws are).
    """
    centers = _centers(centers)
    draws = np.asarray(check_real_array("draws", draws), np.float64)
    if draws.ndim not in (2, 3) or draws.shape[-1] != centers.shape[1] or min(draws.shape[:-1]) < 1:
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
    if centers.shape[1] != cells.points.shape[-1]:
        raise ValueError(
            f"centers must be points of the grid's dimension {cells.points.shape[-1]}, got "
            f"shape {centers.shape}"
        )
    log_density = -np.asarray(exact.grid_energies(energy, cells.points), np.float64)
    density = np.exp(log_density - log_density.max())
    label = _nearest(np.asarray(cells.points, np.float64), centers)
    mass = np.bincount(label, weights=density, minlength=centers.shape[0])
    return mass / mass.sum()


class ClassWeights(NamedTuple):
    r"""What :func:`class_weights` measures. ``frequencies``: the share of the samples in each
    class, ``(K,)``, with its ``standard_error``; ``reference``: the data's shares; ``kl``:
    :math:`\mathrm{KL}(p \,\|\, q)` of the samples' shares :math:`p` from the data's
    :math:`q`, in nats, with ``kl_standard_error``; ``rhat``: per class, the rank-normalized
    split R-hat of its indicator across chains (NaN with fewer than 2 chains of 4 draws, or
    for a class that every draw or none falls in); ``num_chains`` and ``num_draws``."""

    frequencies: np.ndarray
    standard_error: np.ndarray
    reference: np.ndarray
    kl: float
    kl_standard_error: float
    rhat: np.ndarray
    num_chains: int
    num_draws: int


def _labels(name: str, labels, num_classes: int) -> np.ndarray:
    array = np.asarray(check_real_array(name, labels))
    if array.size == 0 or not np.all(array == np.round(array)):
        raise ValueError(f"{name} must be non-empty integer class labels, got {labels!r}")
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
            f"{name} must lie in 0..{num_classes - 1} (num_classes={num_classes}), got labels "
            f"from {array.min()} to {array.max()}"
        )
    return array


def class_weights(labels, reference, num_classes: int) -> ClassWeights:
    r"""How generated samples spread over classes, against the data's class frequencies.

    A learned density that puts the right shapes in the wrong proportions is a wrong density,
    as a prior or as a generator (mode weights, :func:`mode_weights`); for images the modes
    are classes, named by a classifier. Either the model's mass is misplaced or its chains did
    not mix: the R-hat of the class indicators tells the second from the first (chains stuck
    in one class each disagree), and a tempered sampler that mixes then shows the model.

    Parameters
    ----------
    labels
        The class of each sample: ``(chains, draws)`` from independent Markov chains (the
        standard errors then hold however correlated each chain's draws are), or ``(n,)``
        independent samples.
    reference
        The data's labels, ``(m,)`` (every class present, or the KL divergence is infinite
        where the samples fall in an absent one).
    num_classes
        :math:`K`; labels lie in ``0..K-1``.

    Returns
    -------
    ClassWeights
        :math:`p_k` is the share of all samples in class :math:`k`, its standard error that of
        the mean of the per-chain shares over chains (binomial for independent samples).
        :math:`\mathrm{KL}(p \,\|\, q) = \sum_k p_k \log(p_k / q_k)` (0 where :math:`p_k = 0`);
        its standard error is the delta method's,
        :math:`\sqrt{g^\top \hat\Sigma g / C}` with :math:`g_k = \log(p_k / q_k)` and
        :math:`\hat\Sigma` the covariance of the :math:`C` per-chain share vectors (the
        :math:`+1` of the derivative drops out, as the shares sum to 1). The plug-in estimate
        is biased upwards by about :math:`(K - 1) / (2 N_{\mathrm{eff}})` nats.

    References
    ----------
    A. Vehtari, A. Gelman, D. Simpson, B. Carpenter and P.-C. Bürkner (2021). Rank-normalization,
    folding, and localization: an improved R-hat for assessing convergence of MCMC. Bayesian
    Analysis 16(2).
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    labels = _labels("labels", labels, num_classes)
    reference = _labels("reference", reference, num_classes)
    if labels.ndim not in (1, 2) or reference.ndim != 1:
        raise ValueError(
            f"labels must have shape (chains, draws) or (n,) and reference (m,), got "
            f"{labels.shape} and {reference.shape}"
        )
    chains = labels if labels.ndim == 2 else labels[:, None]
    onehot = chains[..., None] == np.arange(num_classes)  # (chains, draws, K)
    per_chain = onehot.mean(1)
    p = per_chain.mean(0)
    q = np.bincount(reference, minlength=num_classes) / reference.size
    num_chains, num_draws = chains.shape
    if labels.ndim == 1:
        cov = (np.diag(p) - np.outer(p, p)) / num_chains
    else:
        cov = np.cov(per_chain, rowvar=False, ddof=1) / num_chains
    with np.errstate(divide="ignore"):
        g = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)) - np.log(q), 0.0)
    kl = float(np.sum(np.where(p > 0, p * g, 0.0)))
    kl_se = float(np.sqrt(max(g @ cov @ g, 0.0))) if np.isfinite(kl) else math.nan
    if num_chains >= 2 and num_draws >= 4:
        with np.errstate(all="ignore"):
            r = np.asarray(rhat(onehot.astype(np.float32)), np.float64)
    else:
        r = np.full(num_classes, math.nan)
    return ClassWeights(
        frequencies=p,
        standard_error=np.sqrt(np.diag(cov)),
        reference=q,
        kl=kl,
        kl_standard_error=kl_se,
        rhat=r,
        num_chains=num_chains,
        num_draws=num_draws,
    )


def expected_calibration_error(probabilities, labels, num_bins: int = 15) -> float:
    r"""The expected calibration error of a classifier's predicted probabilities (Naeini,
    Cooper & Hauskrecht 2015; Guo et al. 2017).

    With confidences :math:`c_i = \max_k p_{ik}`, predictions :math:`\hat y_i = \arg\max_k
    p_{ik}` and ``num_bins`` equal-width bins :math:`B_b` of :math:`[0, 1]` (the confidence 1
    in the last),

    .. math:: \mathrm{ECE} = \sum_b \frac{|B_b|}{n}\,
        \Big|\frac{1}{|B_b|}\sum_{i \in B_b} 1[\hat y_i = y_i]
        - \frac{1}{|B_b|}\sum_{i \in B_b} c_i\Big|.

    ``probabilities`` is ``(n, K)`` (rows summing to 1), ``labels`` ``(n,)`` integers in
    ``0..K-1``.
    """
    probabilities = np.asarray(probabilities, np.float64)
    check_finite_array("probabilities", probabilities)
    num_bins = check_int("num_bins", num_bins)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (n, K), got shape {probabilities.shape}")
    sums = probabilities.sum(axis=1)
    if probabilities.min(initial=0.0) < 0 or not np.allclose(sums, 1.0, atol=1e-4):
        raise ValueError(
            "probabilities must be rows of non-negative numbers summing to 1, got entries "
            f"from {probabilities.min()} to {probabilities.max()} and row sums from "
            f"{sums.min()} to {sums.max()}"
        )
    labels = _labels("labels", labels, probabilities.shape[1])
    if labels.shape != probabilities.shape[:1]:
        raise ValueError(
            f"labels must hold one label per row of probabilities ({probabilities.shape[0]}), "
            f"got shape {labels.shape}"
        )
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
    total = 0.0
    for b in range(num_bins):
        members = bins == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def auroc(positive, negative) -> float:
    r"""The area under the ROC curve of scores meant to be higher for ``positive`` (n,) than
    for ``negative`` (m,) examples: the Mann-Whitney statistic

    .. math:: \mathrm{AUROC} = \frac{1}{nm} \sum_{i, j}
        \Big(1[s^+_i > s^-_j] + \tfrac12\, 1[s^+_i = s^-_j]\Big),

    the probability that a random positive outscores a random negative (ties count half).
    """
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    check_finite_array("positive", positive)
    check_finite_array("negative", negative)
    if positive.ndim != 1 or negative.ndim != 1 or not positive.size or not negative.size:
        raise ValueError(
            "positive and negative must be non-empty 1-D arrays of scores, got shapes "
            f"{positive.shape} and {negative.shape}"
        )
    ranks = scipy.stats.rankdata(np.concatenate([positive, negative]))
    n, m = positive.size, negative.size
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * m))
