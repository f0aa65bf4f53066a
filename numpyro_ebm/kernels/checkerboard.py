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

**The structure is checked** when a chain is initialized (:func:`check_sublattices`). For a
log density :math:`f` affine in each site, the interaction of sites :math:`i \ne j`,

.. math::

    I_{ij}(x) = f(x^{(ij)}) - f(x^{(i)}) - f(x^{(j)}) + f(x)
    = \delta_i \delta_j\, \partial_i \partial_j f(x), \qquad \delta_i = x^{(i)}_i - x_i,

is how much flipping site :math:`j` changes the flip log ratio of site :math:`i`; updating a
colour at once is exact iff it vanishes for every pair of that colour, and the gradient is the
flip log ratio only where :math:`\partial_i^2 f = 0` (a term :math:`x_i^2` breaks it). So the
Hessian :math:`H(x)` restricted to either colour must be zero. The check evaluates, in one
compiled, vmapped call, the Hessian-vector products :math:`H(x)\, u_c` at the all-high
configuration and three random ones (a fixed key), with :math:`u_c` standard normal on the
sites of colour :math:`c` and zero elsewhere: entry :math:`i` of colour :math:`c` is
:math:`\sum_{j \in c} H_{ij}(x)\, u_j`, non-zero with probability one if site :math:`i`
interacts with a site of its colour at :math:`x`, however few such pairs there are. Entries
below :math:`10^{-4}` of the largest gradient or Hessian-vector entry count as rounding. The
check costs a few gradients per configuration and colour and one compilation; on failure,
one more Hessian-vector product names the coupled sites in the error.

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

#: Configurations at which :func:`check_sublattices` evaluates the Hessian: all-high and random.
_CHECK_CONFIGURATIONS = 4
#: A same-colour Hessian entry below this fraction of the largest gradient or Hessian-vector
#: entry is rounding, not a coupling.
_COUPLING_RTOL = 1e-4


class CheckerboardState(NamedTuple):
    """The configuration with its cached log density and gradient."""

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


class CheckerboardInfo(NamedTuple):
    """``acceptance_rate``: 1 for heat-bath sweeps, the mean Metropolis acceptance probability
    over the sites otherwise; ``is_finite``: whether the new log density is finite;
    ``num_grad_evals``: 2, one per half sweep (the gradient gives the local fields)."""

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
    grad: Callable, x: np.ndarray, site: int, mask: np.ndarray, spins: str, colour: str
) -> ValueError:
    """The error naming the site of ``mask``'s colour that interacts most with ``site`` at
    ``x``, read from column ``site`` of the Hessian (``site`` itself: not affine in it)."""
    low, high = spin_values(spins)
    basis = np.zeros(x.size, x.dtype)
    basis[site] = 1.0
    with jax.ensure_compile_time_eval():
        column = jax.jvp(grad, (jnp.asarray(x),), (jnp.asarray(basis.reshape(x.shape)),))[1]
    column = np.abs(np.asarray(column)).ravel() * mask.ravel()
    partner = int(np.argmax(column))
    if partner == site:
        return ValueError(
            "checkerboard takes each site's flip log ratio from the gradient, exact only for a "
            f"log density affine in each site, but this one is not affine in site "
            f"{_site(site, x.shape)} (second derivative {column[site]:.3g} at a test "
            "configuration); sample it with gibbs, which assumes no structure"
        )
    first, second = sorted((site, partner))
    return ValueError(
        "checkerboard updates all sites of one colour at once, exact only when no two sites "
        f"of a colour interact, but this log density couples sites {_site(first, x.shape)} "
        f"and {_site(second, x.shape)}, both {colour} (flipping one changes the other's flip "
        f"log ratio by {column[partner] * (high - low) ** 2:.3g} at a test configuration); "
        "sample it with gibbs, which assumes no structure"
    )


def check_sublattices(logdensity_fn: Callable, shape: tuple[int, ...], spins: str = "pm1") -> None:
    """Raise ``ValueError`` if ``logdensity_fn`` couples two sites of one colour of the lattice
    ``shape``, or is not affine in a site: the structure checkerboard sweeps need (the module
    docstring gives the test, its cost and why it is exact for multilinear log densities). The
    message names the sites and their interaction :math:`I_{ij}`, and points to ``gibbs``.

    The check passes without a word where the log density's values are traced: the tempered
    replicas of :mod:`~numpyro_ebm.kernels.replica_exchange` (their temperature is traced under
    ``vmap``; :func:`numpyro_ebm.samplers.parallel_tempering` therefore runs the check once on
    the untempered target, which has the same structure) and a training objective's
    ``BoundLogDensity`` of traced parameters. Call it once outside there.
    """
    grad = jax.grad(logdensity_fn)
    with jax.ensure_compile_time_eval():
        xs, us, masks = _test_points(shape, spins)
        grads, hvps = jax.jit(jax.vmap(lambda x, u: jax.jvp(grad, (x,), (u,))))(xs, us)
    if isinstance(hvps, Tracer):
        return
    xs, masks = np.asarray(xs), np.asarray(masks)
    row, site = _first_leak(np.asarray(grads), np.asarray(hvps), masks)
    if row >= 0:
        colour = ("even", "odd")[row % 2]
        raise _coupling_error(grad, xs[row], site, masks[row], spins, colour)


def init(position, logdensity_fn: Callable, spins: str = "pm1") -> CheckerboardState:
    """Check ``position`` (values of ``spins``, every side even) and the log density's
    structure (:func:`check_sublattices`), ``ValueError`` otherwise; cast ``position`` to
    floats and evaluate the log density and its gradient."""
    position = as_spin_array("position", position, spins)
    _check_lattice(position.shape)
    check_sublattices(logdensity_fn, position.shape, spins)
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return CheckerboardState(position, logdensity, grad)


def build_kernel(update: str = "heat_bath", spins: str = "pm1"):
    """Build the sweep ``kernel(rng_key, state, logdensity_fn) -> (state, info)``.

    Parameters
    ----------
    update
        ``"heat_bath"`` or ``"metropolis"``.
    spins
        ``"pm1"`` or ``"01"``.
    """
    check_update(update)
    spin_values(spins)

    def half_sweep(rng_key, x, logdensity_grad, mask):
        flipped = flip(x, spins)
        probability = flip_probability((flipped - x) * logdensity_grad, update)
        accept = mask & (jax.random.uniform(rng_key, x.shape) < probability)
        return jnp.where(accept, flipped, x), jnp.sum(jnp.where(mask, probability, 0))

    def kernel(
        rng_key: PRNGKey, state: CheckerboardState, logdensity_fn: Callable
    ) -> tuple[CheckerboardState, CheckerboardInfo]:
        even, odd = sublattice_masks(state.position.shape)
        even_key, odd_key = jax.random.split(rng_key)
        position, even_total = half_sweep(even_key, state.position, state.logdensity_grad, even)
        # the value is needed at the end of the sweep only: a gradient suffices here
        grad = jax.grad(logdensity_fn)(position)
        position, odd_total = half_sweep(odd_key, position, grad, odd)
        logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
        if update == "heat_bath":
            acceptance = jnp.ones(())
        else:
            acceptance = (even_total + odd_total) / position.size
        info = CheckerboardInfo(acceptance, jnp.isfinite(logdensity), jnp.asarray(2, jnp.int32))
        return CheckerboardState(position, logdensity, grad), info

    return kernel


def as_top_level_api(
    logdensity_fn: Callable, update: str = "heat_bath", spins: str = "pm1"
) -> SamplingAlgorithm:
    """Checkerboard sweeps as a ``blackjax.SamplingAlgorithm``.

    Parameters
    ----------
    logdensity_fn
        :math:`\\log p(x)` of one lattice configuration, affine in each site and coupling only
        periodic nearest neighbours: an :class:`~numpyro_ebm.models.ising.Ising` model, a
        ``BoundLogDensity`` of such an energy, or its tempered version inside replica exchange.
    update, spins
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
    kernel = build_kernel(update, spins)

    def init_fn(position, rng_key: PRNGKey | None = None) -> CheckerboardState:
        del rng_key
        return init(position, logdensity_fn, spins)

    def step_fn(
        rng_key: PRNGKey, state: CheckerboardState
    ) -> tuple[CheckerboardState, CheckerboardInfo]:
        return kernel(rng_key, state, logdensity_fn)

    return SamplingAlgorithm(init_fn, step_fn)
