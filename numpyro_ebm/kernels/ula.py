r"""Unadjusted Langevin algorithm (ULA), in BlackJAX's form.

One step moves a configuration along the score with Gaussian noise:

.. math::

    x' = x + \frac{\epsilon}{2} \nabla_x \log p(x) + \sqrt{\epsilon}\, z,
    \qquad z \sim \mathcal{N}(0, I),

with step size :math:`\epsilon` (the variance of the injected noise). For an energy,
:math:`\nabla_x \log p = -\nabla_x E`. Without a Metropolis correction the chain targets
:math:`p` only up to an :math:`O(\epsilon)` bias (Roberts & Tweedie 1996); it is the short-run
sampler of contrastive divergence (Du & Mordatch 2019) and the inner step of annealed Langevin
dynamics (Song & Ermon 2019). For an exact sampler use MALA (``blackjax.mala``).

The state caches the log density and its gradient at the current position, so each step costs
one gradient evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from blackjax.types import ArrayLikeTree, ArrayTree, PRNGKey
from blackjax.util import generate_gaussian_noise

from numpyro_ebm._checks import all_finite, check_positive

__all__ = ["LangevinInfo", "LangevinState", "as_top_level_api", "build_kernel", "init"]


class LangevinState(NamedTuple):
    """Position with its cached log density and gradient."""

    position: ArrayTree
    logdensity: jax.Array
    logdensity_grad: ArrayTree


class LangevinInfo(NamedTuple):
    """``is_finite``: whether the new position and log density are finite (a diverging chain
    is reported, not hidden); ``num_grad_evals``: gradient evaluations spent on the step."""

    is_finite: jax.Array
    num_grad_evals: jax.Array


def init(position: ArrayLikeTree, logdensity_fn: Callable) -> LangevinState:
    """Evaluate the log density and its gradient at ``position``."""
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return LangevinState(position, logdensity, grad)


def build_kernel() -> Callable:
    """Build the ULA transition ``kernel(rng_key, state, logdensity_fn, step_size)``."""

    def kernel(
        rng_key: PRNGKey, state: LangevinState, logdensity_fn: Callable, step_size: float
    ) -> tuple[LangevinState, LangevinInfo]:
        noise = generate_gaussian_noise(rng_key, state.position)
        position = jax.tree.map(
            lambda x, g, z: x + 0.5 * step_size * g + jnp.sqrt(step_size) * z,
            state.position,
            state.logdensity_grad,
            noise,
        )
        new_state = init(position, logdensity_fn)
        is_finite = all_finite(position) & jnp.isfinite(new_state.logdensity)
        return new_state, LangevinInfo(is_finite, jnp.asarray(1, jnp.int32))

    return kernel


def as_top_level_api(logdensity_fn: Callable, step_size: float) -> SamplingAlgorithm:
    """ULA as a ``blackjax.SamplingAlgorithm``.

    Parameters
    ----------
    logdensity_fn
        Log density of the target (``-E(x) / T`` for an energy at temperature ``T``).
    step_size
        :math:`\\epsilon > 0`, the variance of the injected noise.
    """
    check_positive("step_size", step_size)
    kernel = build_kernel()

    def init_fn(position: ArrayLikeTree, rng_key=None) -> LangevinState:
        del rng_key
        return init(position, logdensity_fn)

    def step_fn(rng_key: PRNGKey, state: LangevinState) -> tuple[LangevinState, LangevinInfo]:
        return kernel(rng_key, state, logdensity_fn, step_size)

    return SamplingAlgorithm(init_fn, step_fn)
