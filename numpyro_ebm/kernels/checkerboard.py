r"""Checkerboard (red-black) sweeps for nearest-neighbour lattice models, in BlackJAX's form.

On a periodic hypercubic lattice with every side even, colour site :math:`(i, j, \dots)` by the
parity of :math:`i + j + \dots`; no two neighbours share a colour, so in a model with only
nearest-neighbour couplings all sites of one colour are conditionally independent given the
other colour and are updated at once, in one vectorized step. One step is one sweep: the even
sublattice, then the odd one.

The flip log ratio of every site comes from one gradient evaluation. For a log density that
is *affine in each site* (no self-coupling: the Ising model, any pairwise or multilinear
model),

.. math::

    \Delta_i(x) = \log p(x^{(i)}) - \log p(x) = (x^{(i)}_i - x_i)\, \partial_i \log p(x),

exactly; for the Ising model, :math:`\partial_i \log p = 2\beta h_i` in the :math:`\pm1`
encoding, with :math:`h_i` the local field (:meth:`~numpyro_ebm.models.ising.Ising.local_field`),
and the gradient of the energy's periodic shifts *is* the neighbour sum, which XLA fuses into
one stencil. Sites of the sublattice flip with probability :math:`\sigma(\Delta_i)` (heat bath)
or :math:`\min(1, e^{\Delta_i})` (Metropolis), every other site is kept.

The kernel is exact only for log densities that are affine in each site and couple no two
sites of one colour (nearest-neighbour couplings of the periodic lattice are fine); for
anything else use :mod:`~numpyro_ebm.kernels.gibbs` (any log density) or
:mod:`~numpyro_ebm.kernels.gibbs_with_gradients`.

**Curvature** (``flip_ratio="curvature"``) drops the affinity for log densities of degree at
most two in each site, such as spins observed with Gaussian noise,
:math:`-(y_i - s_i)^2 / 2\sigma^2`, quadratic in :math:`s_i` though affine on
:math:`\{-1, +1\}` (Gibbs within HMC, :func:`~numpyro_ebm.samplers.hmc_gibbs`):

.. math::

    \Delta_i(x) = \delta_i\, \partial_i \log p(x) + \tfrac12 \delta_i^2\,
    \partial_i^2 \log p(x), \qquad \delta_i = x^{(i)}_i - x_i,

exactly, and since no two sites of a colour interact, the Hessian-vector product with the
colour's indicator, :math:`(H \mathbf 1_c)_i = \sum_{j \in c} H_{ij} = H_{ii}`, gives every
curvature of the colour at once. One forward-over-reverse pass per half sweep (about two
gradients) replaces the gradient. Its check asks that the same-colour Hessian vanish off the
diagonal (:math:`H u_c - (H \mathbf 1_c) \odot u_c = 0` on the colour) and, for the degree,
that the formula equal the flip log ratio evaluated directly at a few sites of each test
configuration.

References
----------
M. Creutz, L. Jacobs and C. Rebbi (1979). Experiments with a gauge-invariant Ising system.
Physical Review Letters 42(21).
B. Block, P. Virnau and T. Preis (2010). Multi-GPU accelerated multi-spin Monte Carlo
simulations of the 2D Ising model. Computer Physics Communications 181(9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.types import PRNGKey
from jax.core import Tracer

from numpyro_ebm._checks import structure_checks_skipped
from numpyro_ebm._spins import as_spin_array, flip, spin_values
from numpyro_ebm.kernels.gibbs import check_logdensity_fn, check_update, flip_probability
from numpyro_ebm.models.ising import sublattice_masks

__all__ = [
    "CheckerboardInfo",
    "CheckerboardState",
    "as_top_level_api",
    "build_kernel",
    "check_sublattices",
    "init",
]

#: How a half sweep gets the sites' flip log ratios: from the gradient (log densities affine in
#: each site) or from the gradient and the curvatures (of degree at most two in each site).
FLIP_RATIOS = ("gradient", "curvature")
#: Sites per test configuration and colour whose flip log ratio the curvature check evaluates.
_DEGREE_SITES = 8

#: Configurations at which :func:`check_sublattices` evaluates the Hessian: all-high and random.
_CHECK_CONFIGURATIONS = 4
#: A same-colour Hessian entry below this fraction of the largest gradient or Hessian-vector
#: entry is rounding, not a coupling.
_COUPLING_RTOL = 1e-4


class CheckerboardState(NamedTuple):
    """The configuration with its cached log density and gradient (``None`` with curvature flip
    ratios, whose pass computes the gradient with the curvatures)."""

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array | None


class CheckerboardInfo(NamedTuple):
    """``acceptance_rate``: 1 for heat-bath sweeps, the mean Metropolis acceptance probability
    over the sites otherwise; ``is_finite``: whether the new log density is finite;
    ``num_grad_evals``: 2, one per half sweep (the gradient gives the local fields; a
    curvature pass counts as one)."""

    acceptance_rate: jax.Array
    is_finite: jax.Array
    num_grad_evals: jax.Array


def _check_lattice(shape: tuple[int, ...]) -> None:
    if len(shape) < 1 or any(side < 2 or side % 2 for side in shape):
        raise ValueError(
            "checkerboard needs a lattice whose every side is even (a periodic red-black "
            f"colouring), got position of shape {shape}"
        )


def _site(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat_index, shape))


def _test_points(shape: tuple[int, ...], spins: str) -> tuple[jax.Array, ...]:
    """The configurations, directions and colour masks of :func:`check_sublattices`: row
    ``2k + c`` pairs configuration ``k`` (all-high, then random from a fixed key) with a
    standard normal direction on the sites of colour ``c`` (0 even, 1 odd), zero elsewhere."""
    low, high = spin_values(spins)
    key_x, key_u = jax.random.split(jax.random.key(0))
    random = jax.random.bernoulli(key_x, 0.5, (_CHECK_CONFIGURATIONS - 1, *shape))
    xs = jnp.where(jnp.concatenate([jnp.ones((1, *shape), bool), random]), high, low)
    xs = xs.astype(jnp.result_type(float))
    colours = jnp.stack(sublattice_masks(shape))
    us = jax.random.normal(key_u, (_CHECK_CONFIGURATIONS, *colours.shape), xs.dtype) * colours
    masks = jnp.tile(colours, (_CHECK_CONFIGURATIONS, *(1 for _ in shape)))
    return jnp.repeat(xs, 2, axis=0), us.reshape(-1, *shape), masks


def _first_leak(grads: np.ndarray, hvps: np.ndarray, masks: np.ndarray) -> tuple[int, int]:
    """The first row (configuration and colour) whose Hessian-vector product is non-zero on
    its own colour beyond rounding, and the site where it is largest; ``(-1, -1)`` if none.
    Non-finite entries are not judged."""
    same = masks.reshape(len(masks), -1)
    grads, hvps = np.abs(grads.reshape(same.shape)), np.abs(hvps.reshape(same.shape))
    leak = np.nan_to_num(hvps * same, nan=0.0, posinf=0.0)
    scale = np.nan_to_num(np.maximum(grads, hvps), nan=0.0, posinf=0.0)
    leaking = np.max(leak, axis=1) > _COUPLING_RTOL * np.max(scale, axis=1)
    if not np.any(leaking):
        return -1, -1
    row = int(np.argmax(leaking))
    return row, int(np.argmax(leak[row]))


def _coupling_error(
    grad: Callable,
    x: np.ndarray,
    site: int,
    mask: np.ndarray,
    spins: str,
    colour: str,
    curvature: bool = False,
) -> ValueError:
    """The error naming the site of ``mask``'s colour that interacts most with ``site`` at
    ``x``, read from column ``site`` of the Hessian (``site`` itself: not affine in it; with
    ``curvature`` the diagonal is allowed)."""
    low, high = spin_values(spins)
    basis = np.zeros(x.size, x.dtype)
    basis[site] = 1.0
    with jax.ensure_compile_time_eval():
        column = jax.jvp(grad, (jnp.asarray(x),), (jnp.asarray(basis.reshape(x.shape)),))[1]
    column = np.abs(np.asarray(column)).ravel() * mask.ravel()
    if curvature:
        column[site] = 0.0
    partner = int(np.argmax(column))
    if partner == site:
        return ValueError(
            "checkerboard takes each site's flip log ratio from the gradient, exact only for a "
            f"log density affine in each site, but this one is not affine in site "
            f"{_site(site, x.shape)} (second derivative {column[site]:.3g} at a test "
            "configuration); use checkerboard(flip_ratio='curvature') for a log density of "
            "degree two in each site, or gibbs, which assumes no structure"
        )
    first, second = sorted((site, partner))
    return ValueError(
        "checkerboard updates all sites of one colour at once, exact only when no two sites "
        f"of a colour interact, but this log density couples sites {_site(first, x.shape)} "
        f"and {_site(second, x.shape)}, both {colour} (flipping one changes the other's flip "
        f"log ratio by {column[partner] * (high - low) ** 2:.3g} at a test configuration); "
        "sample it with gibbs, which assumes no structure"
    )


def check_sublattices(
    logdensity_fn: Callable,
    shape: tuple[int, ...],
    spins: str = "pm1",
    flip_ratio: str = "gradient",
) -> None:
    """Raise ``ValueError`` if ``logdensity_fn`` couples two sites of one colour of the lattice
    ``shape``, or is not affine in a site (``flip_ratio="gradient"``) or of degree at most two
    in it (``"curvature"``): the structure checkerboard sweeps need (the module docstring gives
    the tests, their cost and why they are exact). The message names the sites and their
    interaction :math:`I_{ij}`, and points to ``gibbs``.

    The check passes without a word where the log density's values are traced: the tempered
    replicas of :mod:`~numpyro_ebm.kernels.replica_exchange` (their temperature is traced under
    ``vmap``; :func:`numpyro_ebm.samplers.parallel_tempering` therefore runs the check once on
    the untempered target, which has the same structure) and a training objective's
    ``BoundLogDensity`` of traced parameters. Call it once outside there. Inside
    :func:`~numpyro_ebm._checks.structure_checked` it returns at once.
    """
    if structure_checks_skipped():
        return
    grad = jax.grad(logdensity_fn)
    curvature = check_flip_ratio(flip_ratio) == "curvature"
    with jax.ensure_compile_time_eval():
        xs, us, masks = _test_points(shape, spins)
        grads, hvps = jax.jit(jax.vmap(lambda x, u: jax.jvp(grad, (x,), (u,))))(xs, us)
        if curvature:
            _, diagonals = jax.jit(jax.vmap(lambda x, m: jax.jvp(grad, (x,), (m,))))(
                xs, masks.astype(xs.dtype)
            )
            hvps = hvps - diagonals * us  # the off-diagonal part on the colour
    if isinstance(hvps, Tracer):
        return
    xs, masks = np.asarray(xs), np.asarray(masks)
    row, site = _first_leak(np.asarray(grads), np.asarray(hvps), masks)
    if row >= 0:
        colour = ("even", "odd")[row % 2]
        raise _coupling_error(grad, xs[row], site, masks[row], spins, colour, curvature)
    if curvature:
        _check_degree(logdensity_fn, xs, masks, np.asarray(grads), np.asarray(diagonals), spins)


def _check_degree(logdensity_fn, xs, masks, grads, diagonals, spins) -> None:
    """Raise ``ValueError`` where the curvature formula misses the flip log ratio evaluated
    directly, at the first :data:`_DEGREE_SITES` sites of each test configuration's colour."""
    rows = []
    for row in range(len(xs)):
        for site in np.flatnonzero(masks[row].ravel())[:_DEGREE_SITES]:
            rows.append((row, int(site)))
    index = np.asarray(rows)
    x = xs[index[:, 0]].reshape(len(index), -1)
    flipped = x.copy()
    delta = (
        flip(x[np.arange(len(index)), index[:, 1]], spins) - x[np.arange(len(index)), index[:, 1]]
    )
    flipped[np.arange(len(index)), index[:, 1]] += delta
    with jax.ensure_compile_time_eval():
        values = jax.jit(jax.vmap(lambda v: logdensity_fn(v.reshape(xs.shape[1:]))))(
            jnp.asarray(np.concatenate([x, flipped]))
        )
    values = np.asarray(values, np.float64)
    direct = values[len(index) :] - values[: len(index)]
    g = grads.reshape(len(xs), -1)[index[:, 0], index[:, 1]]
    h = diagonals.reshape(len(xs), -1)[index[:, 0], index[:, 1]]
    formula = delta * g + 0.5 * delta**2 * h
    miss = np.abs(direct - formula) > 1e-3 * (1 + np.abs(direct)) + 1e-6 * np.abs(
        values[: len(index)]
    )
    miss &= np.isfinite(direct)
    if np.any(miss):
        k = int(np.argmax(miss))
        raise ValueError(
            "checkerboard(flip_ratio='curvature') reads each site's flip log ratio from its "
            "gradient and curvature, exact only for a log density of degree at most two in "
            f"each site, but at site {_site(index[k, 1], xs.shape[1:])} of a test configuration "
            f"the flip changes it by {direct[k]:.4g}, not {formula[k]:.4g}; sample it with "
            "gibbs, which assumes no structure"
        )


def check_flip_ratio(flip_ratio: str) -> str:
    if flip_ratio not in FLIP_RATIOS:
        raise ValueError(f"flip_ratio must be one of {FLIP_RATIOS}, got {flip_ratio!r}")
    return flip_ratio


def init(
    position, logdensity_fn: Callable, spins: str = "pm1", flip_ratio: str = "gradient"
) -> CheckerboardState:
    """Check ``position`` (values of ``spins``, every side even) and the log density's
    structure (:func:`check_sublattices`), ``ValueError`` otherwise; cast ``position`` to
    floats and evaluate the log density (and, for gradient flip ratios, its gradient)."""
    position = as_spin_array("position", position, spins)
    _check_lattice(position.shape)
    check_sublattices(logdensity_fn, position.shape, spins, flip_ratio)
    if flip_ratio == "curvature":
        return CheckerboardState(position, logdensity_fn(position), None)
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return CheckerboardState(position, logdensity, grad)


def build_kernel(update: str = "heat_bath", spins: str = "pm1", flip_ratio: str = "gradient"):
    """Build the sweep ``kernel(rng_key, state, logdensity_fn) -> (state, info)``.

    Parameters
    ----------
    update
        ``"heat_bath"`` or ``"metropolis"``.
    spins
        ``"pm1"`` or ``"01"``.
    flip_ratio
        ``"gradient"`` (log densities affine in each site) or ``"curvature"`` (of degree at most
        two in each site; see the module docstring).
    """
    check_update(update)
    spin_values(spins)
    curvature = check_flip_ratio(flip_ratio) == "curvature"

    def half_sweep(rng_key, x, ratio, mask):
        flipped = flip(x, spins)
        probability = flip_probability(ratio, update)
        accept = mask & (jax.random.uniform(rng_key, x.shape) < probability)
        return jnp.where(accept, flipped, x), jnp.sum(jnp.where(mask, probability, 0))

    def kernel(
        rng_key: PRNGKey, state: CheckerboardState, logdensity_fn: Callable
    ) -> tuple[CheckerboardState, CheckerboardInfo]:
        even, odd = sublattice_masks(state.position.shape)
        even_key, odd_key = jax.random.split(rng_key)
        x = state.position
        if curvature:

            def ratio(x, mask):
                grad, diagonal = jax.jvp(jax.grad(logdensity_fn), (x,), (mask.astype(x.dtype),))
                delta = flip(x, spins) - x
                return delta * grad + 0.5 * delta**2 * diagonal

            position, even_total = half_sweep(even_key, x, ratio(x, even), even)
            position, odd_total = half_sweep(odd_key, position, ratio(position, odd), odd)
            logdensity, grad = logdensity_fn(position), None
        else:
            ratio = (flip(x, spins) - x) * state.logdensity_grad
            position, even_total = half_sweep(even_key, x, ratio, even)
            # the value is needed at the end of the sweep only: a gradient suffices here
            grad = jax.grad(logdensity_fn)(position)
            position, odd_total = half_sweep(
                odd_key, position, (flip(position, spins) - position) * grad, odd
            )
            logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
        if update == "heat_bath":
            acceptance = jnp.ones(())
        else:
            acceptance = (even_total + odd_total) / position.size
        info = CheckerboardInfo(acceptance, jnp.isfinite(logdensity), jnp.asarray(2, jnp.int32))
        return CheckerboardState(position, logdensity, grad), info

    return kernel


def as_top_level_api(
    logdensity_fn: Callable,
    update: str = "heat_bath",
    spins: str = "pm1",
    flip_ratio: str = "gradient",
) -> SamplingAlgorithm:
    """Checkerboard sweeps as a ``blackjax.SamplingAlgorithm``.

    Parameters
    ----------
    logdensity_fn
        :math:`\\log p(x)` of one lattice configuration, affine in each site and coupling only
        periodic nearest neighbours: an :class:`~numpyro_ebm.models.ising.Ising` model, a
        ``BoundLogDensity`` of such an energy, or its tempered version inside replica exchange
        (with ``flip_ratio="curvature"``: of degree at most two in each site).
    update, spins, flip_ratio
        See :func:`build_kernel`.

    Examples
    --------
    .. code::

        model = Ising(64, beta=0.5)
        sampler = as_top_level_api(model)
        state = sampler.init(jnp.ones((64, 64)))
        state, info = jax.jit(sampler.step)(key, state)   # one sweep
    """
    check_logdensity_fn(logdensity_fn)
    kernel = build_kernel(update, spins, flip_ratio)

    def init_fn(position, rng_key: PRNGKey | None = None) -> CheckerboardState:
        del rng_key
        return init(position, logdensity_fn, spins, flip_ratio)

    def step_fn(
        rng_key: PRNGKey, state: CheckerboardState
    ) -> tuple[CheckerboardState, CheckerboardInfo]:
        return kernel(rng_key, state, logdensity_fn)

    return SamplingAlgorithm(init_fn, step_fn)
