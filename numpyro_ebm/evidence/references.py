r"""The reference distributions that AIS and tempered SMC anneal from, and the default one.

A reference :math:`\pi_0` is normalized and sampleable: a :class:`Gaussian`, a
:class:`GaussianMixture`, or a pair ``(logdensity_fn, draw_fn)``. :func:`laplace` fits a
Gaussian at a mode (Laplace's approximation: L-BFGS, then the inverse Hessian), and
:func:`laplace_mixture` builds tempered SMC's default reference, a defensive mixture of the
Laplace fits at the distinct modes found from spread starts plus a broad component (Oh &
Berger 1993, "Integration of multimodal functions by Monte Carlo importance sampling", JASA 88;
Hesterberg 1995, "Weighted average importance sampling and defensive mixture distributions",
Technometrics 37). Positions are raveled to vectors (:func:`on_vectors`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp

from numpyro_ebm._checks import check_finite_array, check_int, check_positive

__all__ = [
    "Gaussian",
    "GaussianMixture",
    "check_gaussian",
    "check_mixture",
    "check_reference",
    "laplace",
    "laplace_mixture",
]

#: the default reference's starts: each coordinate of ``position`` displaced by N(0, r^2), r
#: geometrically spaced over this range (the first start is ``position`` itself)
START_RADII = (0.3, 10.0)
#: two modes closer than this many local standard deviations (in either's metric) are one
SAME_MODE_DISTANCE = 1.0
#: modes whose Laplace mass is below this fraction of the largest one's are left out
MIN_MODE_MASS = 1e-6
#: the default reference's L-BFGS starts and steps per start
NUM_STARTS = 128
LAPLACE_STEPS = 200
#: the weight of the default reference's broad component ...
BROAD_WEIGHT = 0.1
#: ... and its scale, relative to the Gaussian with the moments of the mode components
BROAD_SCALE = 2.0


class Gaussian(NamedTuple):
    r"""A normal distribution :math:`\mathcal{N}(\mu, LL^\top)` on vectors of shape ``(d,)``.

    ``scale`` is a vector (independent coordinates, :math:`L = \mathrm{diag}(\text{scale})`)
    or a lower-triangular ``(d, d)`` matrix :math:`L`.
    """

    mean: jax.Array
    scale: jax.Array

    def logdensity(self, x: jax.Array) -> jax.Array:
        """Normalized log density at one point ``x`` of shape ``(d,)``."""
        scale = jnp.asarray(self.scale)
        centred = x - self.mean
        if scale.ndim == 1:
            z = centred / scale
            log_det = jnp.sum(jnp.log(scale))
        else:
            z = jax.scipy.linalg.solve_triangular(scale, centred, lower=True)
            log_det = jnp.sum(jnp.log(jnp.diag(scale)))
        return -0.5 * jnp.sum(z**2) - log_det - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    def sample(self, rng_key: jax.Array, num: int) -> jax.Array:
        """``num`` independent draws, shape ``(num, d)``."""
        scale = jnp.asarray(self.scale)
        z = jax.random.normal(rng_key, (num, jnp.shape(self.mean)[-1]))
        return self.mean + (z * scale if scale.ndim == 1 else z @ scale.T)

    def scaled(self, factor: float) -> Gaussian:
        """The same Gaussian with its scale multiplied by ``factor``."""
        return Gaussian(self.mean, jnp.asarray(self.scale) * factor)


def check_gaussian(name: str, base: Gaussian) -> Gaussian:
    """Return ``base`` with array fields; raise ``ValueError`` on a non-finite mean, a
    non-positive or non-finite scale, or mismatched shapes."""
    mean, scale = jnp.asarray(base.mean, jnp.result_type(float)), jnp.asarray(base.scale)
    check_finite_array(f"{name}.mean", mean)
    if mean.ndim != 1:
        raise ValueError(f"{name}.mean must be a vector of shape (d,), got shape {mean.shape}")
    if scale.ndim == 1:
        check_positive(f"{name}.scale", scale)
    elif scale.ndim == 2:
        check_finite_array(f"{name}.scale", scale)
        check_positive(f"{name}.scale's diagonal", jnp.diag(scale))
    if scale.ndim not in (1, 2) or scale.shape[0] != mean.shape[0]:
        raise ValueError(
            f"{name}.scale must have shape (d,) or (d, d) with d={mean.shape[0]}, got {scale.shape}"
        )
    return Gaussian(mean, scale)


def laplace(
    logdensity_fn: Callable, position: jax.Array, *, num_steps: int = 200
) -> tuple[Gaussian, bool]:
    r"""A Gaussian fitted at the mode (Laplace's approximation).

    The mode :math:`\hat x` is found by L-BFGS (optax) from ``position``; the covariance is
    :math:`(-\nabla^2 \log f(\hat x))^{-1}` (``jax.hessian``).

    Returns
    -------
    (Gaussian, bool)
        The fit and whether it is valid: ``False`` when the mode or the Hessian is not finite
        or the Hessian is not negative definite (no proper mode there: a flat or improper
        target, a saddle point). When ``False`` the Gaussian has unit scale at the last
        iterate and must not be used silently.
    """
    check_int("num_steps", num_steps)
    position = jnp.asarray(position, jnp.result_type(float))
    check_finite_array("position", position)
    gaussian, valid = laplace_fit(position, logdensity_fn, num_steps)
    return gaussian, bool(valid)


@partial(jax.jit, static_argnums=(1, 2))
def laplace_fit(z, logdensity_fn, num_steps):
    def loss(z):
        return -logdensity_fn(z)

    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        z, state = carry
        value, grad = value_and_grad(z, state=state)
        updates, state = optimizer.update(grad, state, z, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(z, updates), state), None

    (z, _), _ = jax.lax.scan(step, (z, optimizer.init(z)), None, length=num_steps)
    precision = jax.hessian(loss)(z)
    precision = 0.5 * (precision + precision.T)
    eigenvalues = jnp.linalg.eigvalsh(precision)
    valid = jnp.all(jnp.isfinite(z)) & jnp.all(jnp.isfinite(eigenvalues))
    valid = valid & (jnp.min(eigenvalues) > 1e-8 * jnp.maximum(jnp.max(eigenvalues), 1.0))
    covariance = jnp.linalg.inv(jnp.where(valid, precision, jnp.eye(z.shape[0])))
    scale = jnp.linalg.cholesky(0.5 * (covariance + covariance.T))
    return Gaussian(jnp.where(jnp.isfinite(z), z, 0.0), scale), valid


class GaussianMixture(NamedTuple):
    r"""A mixture :math:`\sum_k \alpha_k \mathcal{N}(\mu_k, L_k L_k^\top)` on vectors ``(d,)``.

    ``log_weights`` :math:`\log \alpha_k`, shape ``(K,)``, normalized; ``means`` ``(K, d)``;
    ``scales`` the lower-triangular :math:`L_k`, ``(K, d, d)``. It has the methods of
    :class:`Gaussian`, and travels as data (a new one compiles
    nothing unless ``K`` or ``d`` changes).
    """

    log_weights: jax.Array
    means: jax.Array
    scales: jax.Array

    def logdensity(self, x: jax.Array) -> jax.Array:
        """Normalized log density at one point ``x`` of shape ``(d,)``."""
        # L^-1 by inversion, not a batched triangular solve: the latter, inside SMC's nested
        # loops, deadlocked XLA's CPU runtime on a 2-core machine (jax 0.10.2)
        z = jnp.einsum("kij,kj->ki", jnp.linalg.inv(self.scales), x - self.means)
        log_det = jnp.sum(jnp.log(jnp.diagonal(self.scales, axis1=1, axis2=2)), axis=1)
        log_norm = log_det + 0.5 * x.shape[-1] * math.log(2 * math.pi)
        return logsumexp(self.log_weights - 0.5 * jnp.sum(z**2, axis=1) - log_norm)

    def sample(self, rng_key: jax.Array, num: int) -> jax.Array:
        """``num`` independent draws, shape ``(num, d)``."""
        pick_key, noise_key = jax.random.split(rng_key)
        k = jax.random.categorical(pick_key, self.log_weights, shape=(num,))
        z = jax.random.normal(noise_key, (num, self.means.shape[-1]))
        return self.means[k] + jnp.einsum("nij,nj->ni", self.scales[k], z)

    def scaled(self, factor: float) -> GaussianMixture:
        """The same mixture with every component's scale multiplied by ``factor``."""
        return GaussianMixture(self.log_weights, self.means, self.scales * factor)


def check_mixture(name: str, mixture: GaussianMixture) -> GaussianMixture:
    """Return ``mixture`` with array fields and normalized weights; raise ``ValueError`` on
    non-finite entries, mismatched shapes or a scale that is not lower-triangular with a
    positive diagonal."""
    log_w = jnp.asarray(mixture.log_weights, jnp.result_type(float))
    means = jnp.asarray(mixture.means, jnp.result_type(float))
    scales = jnp.asarray(mixture.scales, jnp.result_type(float))
    for field, value in (("log_weights", log_w), ("means", means), ("scales", scales)):
        check_finite_array(f"{name}.{field}", value)
    if log_w.ndim != 1 or means.shape[:1] != log_w.shape or means.ndim != 2:
        raise ValueError(
            f"{name} needs log_weights (K,) and means (K, d), got shapes {log_w.shape} and "
            f"{means.shape}"
        )
    if scales.shape != (*means.shape, means.shape[1]):
        raise ValueError(
            f"{name}.scales must have shape (K, d, d) = {(*means.shape, means.shape[1])}, got "
            f"{scales.shape}"
        )
    if bool(jnp.any(jnp.triu(scales, 1) != 0)):
        raise ValueError(f"{name}.scales must be lower-triangular (Cholesky factors)")
    check_positive(f"{name}.scales' diagonals", jnp.diagonal(scales, axis1=1, axis2=2))
    return GaussianMixture(log_w - logsumexp(log_w), means, scales)


def check_reference(reference):
    """The reference checked: ``None``, a Gaussian, a mixture or a pair of callables."""
    if reference is None or is_pair(reference):
        return reference
    if isinstance(reference, Gaussian):
        return check_gaussian("reference", reference)
    if isinstance(reference, GaussianMixture):
        return check_mixture("reference", reference)
    raise TypeError(
        "reference must be None (the Laplace mixture), a Gaussian(mean, scale), a "
        "GaussianMixture(log_weights, means, scales) or a pair (logdensity_fn, draw_fn) with "
        f"draw_fn(rng_key, num) -> num draws, got {reference!r}"
    )


def is_pair(reference) -> bool:
    return (
        isinstance(reference, tuple)
        and not hasattr(reference, "_fields")
        and len(reference) == 2
        and all(map(callable, reference))
    )


def position_structure(position) -> tuple:
    """A hashable description of a position pytree: its treedef and leaves' shapes/dtypes."""
    leaves, treedef = jax.tree.flatten(position)
    return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _unravel(structure) -> Callable:
    treedef, leaves = structure
    template = treedef.unflatten([jnp.zeros(shape, dtype) for shape, dtype in leaves])
    return ravel_pytree(template)[1]


def on_vectors(logdensity_fn, functions, structure):
    """The target and a reference pair as functions of raveled vectors."""
    if structure is None:
        return logdensity_fn, functions
    unravel = _unravel(structure)

    def logdensity_flat(z):
        return logdensity_fn(unravel(z))

    if functions is None:
        return logdensity_flat, None
    logdensity, draw = functions

    def draw_flat(key, num):
        return jax.vmap(lambda p: ravel_pytree(p)[0])(draw(key, num))

    return logdensity_flat, (lambda z: logdensity(unravel(z)), draw_flat)


# -- the default reference ------------------------------------------------------------------


@partial(jax.jit, static_argnums=(1, 2, 3))
def _fits(starts, logdensity_fn, structure, num_steps):
    """Laplace fits from every start (vmapped L-BFGS): Gaussians, validity, log f at modes."""
    logdensity_flat, _ = on_vectors(logdensity_fn, None, structure)
    gaussians, valid = jax.vmap(lambda z: laplace_fit(z, logdensity_flat, num_steps))(starts)
    return gaussians, valid, jax.vmap(logdensity_flat)(gaussians.mean)


def _distinct_modes(means, scales, valid, log_mass) -> list[int]:
    """Indices of the distinct proper modes, heaviest first: a fit is kept if it is valid, its
    Laplace mass is at least ``MIN_MODE_MASS`` of the heaviest and it lies at least
    ``SAME_MODE_DISTANCE`` local standard deviations from every heavier mode kept."""
    log_mass = np.where(valid & np.isfinite(log_mass), log_mass, -np.inf)
    order = np.argsort(-log_mass, kind="stable")
    kept: list[int] = []
    for i in order:
        if not np.isfinite(log_mass[i]) or log_mass[i] < log_mass[order[0]] + math.log(
            MIN_MODE_MASS
        ):
            break
        if all(_separation(means[i], means[j], scales[i], scales[j]) for j in kept):
            kept.append(int(i))
    return kept


def _separation(mean_a, mean_b, scale_a, scale_b) -> bool:
    """Whether two modes are further apart than ``SAME_MODE_DISTANCE`` in both metrics."""
    gap = mean_a - mean_b
    distances = [np.linalg.norm(np.linalg.solve(s, gap)) for s in (scale_a, scale_b)]
    return min(distances) >= SAME_MODE_DISTANCE


def _defensive_mixture(means, scales, log_mass) -> GaussianMixture:
    r"""The Laplace components with weights :math:`(1-b)(\tfrac12 p_k + \tfrac1{2K})`
    (:math:`p_k` the Laplace masses normalized, :math:`b` = ``BROAD_WEIGHT``), and a broad
    component of weight :math:`b`: the Gaussian with the mixture's mean and covariance
    :math:`\sum_k \alpha_k (L_k L_k^\top + (\mu_k - \bar\mu)(\mu_k - \bar\mu)^\top)`, its scale
    times ``BROAD_SCALE``."""
    num = means.shape[0]
    laplace = np.exp(log_mass - np.max(log_mass))
    alpha = 0.5 * laplace / laplace.sum() + 0.5 / num
    centre = alpha @ means
    spread = means - centre
    covariance = np.einsum("k,kij,klj->il", alpha, scales, scales) + np.einsum(
        "k,ki,kj->ij", alpha, spread, spread
    )
    broad = BROAD_SCALE * np.linalg.cholesky(0.5 * (covariance + covariance.T))
    weights = np.append((1.0 - BROAD_WEIGHT) * alpha, BROAD_WEIGHT)
    return GaussianMixture(
        jnp.asarray(np.log(weights)),
        jnp.asarray(np.vstack([means, centre])),
        jnp.asarray(np.concatenate([scales, broad[None]])),
    )


def laplace_mixture(
    rng_key: jax.Array,
    logdensity_fn: Callable,
    position,
    *,
    num_starts: int = NUM_STARTS,
    laplace_steps: int = LAPLACE_STEPS,
) -> GaussianMixture | None:
    r"""The default reference of tempered SMC: a defensive mixture of Laplace fits at the
    modes found from spread starts (Oh & Berger 1993; Hesterberg 1995).

    1. **Starts**: ``position`` and ``num_starts - 1`` points around it, each coordinate
       displaced by :math:`\mathcal{N}(0, r_j^2)`, :math:`r_j` geometrically spaced over
       ``START_RADII`` (0.3 to 10: modes near the start and several units away).
    2. **Modes**: L-BFGS from every start (vmapped), then the Laplace fit
       :math:`\mathcal{N}(\hat x_k, L_k L_k^\top)`,
       :math:`L_k L_k^\top = (-\nabla^2 \log f(\hat x_k))^{-1}`
       (:func:`laplace`). Fits that failed (no finite mode with a
       negative-definite Hessian) are dropped, so are modes whose Laplace mass
       :math:`\hat Z_k = f(\hat x_k)\,|L_k|\,(2\pi)^{d/2}` is below ``MIN_MODE_MASS`` of the
       largest, and a mode within ``SAME_MODE_DISTANCE`` local standard deviations of a
       heavier one is the same mode.
    3. **Mixture**: the :math:`K` distinct modes with weights
       :math:`(1-b)(\tfrac12 \hat p_k + \tfrac1{2K})`, :math:`\hat p_k \propto \hat Z_k`: half
       by mass (efficient when the Laplace masses are right), half uniform (every mode gets
       particles when they are not); and a broad component of weight :math:`b` =
       ``BROAD_WEIGHT``, the Gaussian with the mode components' mean and covariance, its scale
       times ``BROAD_SCALE``, whose particles can reach a region that no start found.

    Returns
    -------
    GaussianMixture or None
        On the raveled position, ``K + 1`` components (the broad one last); ``None`` when no
        start found a proper mode (a flat or improper target).
    """
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {logdensity_fn!r}")
    check_int("num_starts", num_starts)
    check_int("laplace_steps", laplace_steps)
    flat, _ = ravel_pytree(position)
    flat = jnp.asarray(flat, jnp.result_type(float))
    check_finite_array("position", flat)
    radii = jnp.geomspace(*START_RADII, max(num_starts - 1, 1))[: num_starts - 1]
    noise = jax.random.normal(rng_key, (num_starts - 1, flat.shape[0]), flat.dtype)
    starts = jnp.concatenate([flat[None], flat + radii[:, None] * noise])
    gaussians, valid, log_f = _fits(
        starts, logdensity_fn, position_structure(position), laplace_steps
    )
    means, scales = np.asarray(gaussians.mean), np.asarray(gaussians.scale)
    log_det = np.sum(np.log(np.abs(np.diagonal(scales, axis1=1, axis2=2))), axis=1)
    log_mass = np.asarray(log_f) + log_det
    kept = _distinct_modes(means, scales, np.asarray(valid), log_mass)
    if not kept:
        return None
    return _defensive_mixture(means[kept], scales[kept], log_mass[kept])
