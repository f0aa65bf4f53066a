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

The kernel is exact only for log densities that are affine in each site and couple only
nearest neighbours of the periodic lattice; for anything else use
:mod:`~numpyro_ebm.kernels.gibbs` (any log density) or
:mod:`~numpyro_ebm.kernels.gibbs_with_gradients`.

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
from blackjax.base import SamplingAlgorithm
from blackjax.types import PRNGKey

from numpyro_ebm.kernels.gibbs import check_logdensity_fn, check_update, flip_probability
from numpyro_ebm.models.ising import as_spin_array, flip, spin_values, sublattice_masks

__all__ = ["CheckerboardInfo", "CheckerboardState", "as_top_level_api", "build_kernel", "init"]


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


def init(position, logdensity_fn: Callable, spins: str = "pm1") -> CheckerboardState:
    """Check ``position`` (values of ``spins``, every side even; ``ValueError`` otherwise),
    cast it to floats and evaluate the log density and its gradient."""
    position = as_spin_array("position", position, spins)
    _check_lattice(position.shape)
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
