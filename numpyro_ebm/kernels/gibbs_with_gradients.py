r"""Gibbs with gradients (Grathwohl et al. 2021) for differentiable log densities on binary
configurations, in BlackJAX's form.

The change of log density when site :math:`i` flips, :math:`\Delta_i(x) = \log p(x^{(i)}) -
\log p(x)`, is approximated to first order by

.. math::

    \tilde d_i(x) = (x^{(i)}_i - x_i)\, \partial_i \log p(x)

(:math:`-2 x_i\, \partial_i \log p` for spins, :math:`(1 - 2x_i)\, \partial_i \log p` for bits),
all :math:`d` sites from one gradient. A site is proposed from
:math:`q(i \mid x) = \operatorname{softmax}(\tilde d(x) / 2)_i` and the flip
:math:`x' = x^{(i)}` is accepted with the Metropolis-Hastings probability

.. math::

    \min\left(1, \frac{p(x')\, q(i \mid x')}{p(x)\, q(i \mid x)}\right),

so the chain targets :math:`p` exactly whatever the quality of the approximation (exact for
log densities affine in each site, such as Ising and pairwise models). One step is one
proposed flip and costs one log-density-and-gradient evaluation, at :math:`x'`; the state
caches the log density and gradient at the current position.

References
----------
W. Grathwohl, K. Swersky, M. Hashemi, D. Duvenaud and C. J. Maddison (2021). Oops I took a
gradient: scalable sampling for discrete distributions. ICML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from blackjax.types import PRNGKey

from numpyro_ebm._spins import as_spin_array, flip, spin_values
from numpyro_ebm.kernels.gibbs import check_logdensity_fn

__all__ = [
    "GibbsWithGradientsInfo",
    "GibbsWithGradientsState",
    "as_top_level_api",
    "build_kernel",
    "init",
]


class GibbsWithGradientsState(NamedTuple):
    """The configuration with its cached log density and gradient."""

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


class GibbsWithGradientsInfo(NamedTuple):
    """``acceptance_rate``: the Metropolis-Hastings acceptance probability of the proposed
    flip; ``is_accepted``; ``site``: the flat index of the proposed site; ``is_finite``:
    whether the new log density is finite; ``num_grad_evals``: 1."""

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    site: jax.Array
    is_finite: jax.Array
    num_grad_evals: jax.Array


def init(position, logdensity_fn: Callable, spins: str = "pm1") -> GibbsWithGradientsState:
    """Check ``position`` (values of ``spins``, ``ValueError`` otherwise), cast it to floats
    and evaluate the log density and its gradient."""
    position = as_spin_array("position", position, spins)
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return GibbsWithGradientsState(position, logdensity, grad)


def _proposal_logits(state: GibbsWithGradientsState, spins: str) -> jax.Array:
    x = state.position
    return ((flip(x, spins) - x) * state.logdensity_grad).reshape(-1) / 2


def build_kernel(spins: str = "pm1"):
    """Build ``kernel(rng_key, state, logdensity_fn) -> (state, info)``, one proposed flip;
    ``spins`` is ``"pm1"`` or ``"01"``."""
    spin_values(spins)

    def kernel(
        rng_key: PRNGKey, state: GibbsWithGradientsState, logdensity_fn: Callable
    ) -> tuple[GibbsWithGradientsState, GibbsWithGradientsInfo]:
        site_key, accept_key = jax.random.split(rng_key)
        forward = jax.nn.log_softmax(_proposal_logits(state, spins))
        site = jax.random.categorical(site_key, forward)
        flat = state.position.reshape(-1)
        position = flat.at[site].set(flip(flat[site], spins)).reshape(state.position.shape)
        logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
        proposal = GibbsWithGradientsState(position, logdensity, grad)
        reverse = jax.nn.log_softmax(_proposal_logits(proposal, spins))
        log_ratio = logdensity - state.logdensity + reverse[site] - forward[site]
        acceptance = jnp.exp(jnp.minimum(jnp.nan_to_num(log_ratio, nan=-jnp.inf), 0.0))
        accepted = jax.random.uniform(accept_key) < acceptance
        new_state = jax.tree.map(lambda new, old: jnp.where(accepted, new, old), proposal, state)
        info = GibbsWithGradientsInfo(
            acceptance,
            accepted,
            site,
            jnp.isfinite(new_state.logdensity),
            jnp.asarray(1, jnp.int32),
        )
        return new_state, info

    return kernel


def as_top_level_api(logdensity_fn: Callable, spins: str = "pm1") -> SamplingAlgorithm:
    """Gibbs with gradients as a ``blackjax.SamplingAlgorithm``.

    Parameters
    ----------
    logdensity_fn
        Differentiable :math:`\\log p(x)` of one binary configuration of any shape (a
        :class:`~numpyro_ebm.models.ising.PairwiseBinary` model, a ``BoundLogDensity``, ...).
    spins
        ``"pm1"`` or ``"01"``.

    Examples
    --------
    .. code::

        sampler = as_top_level_api(PairwiseBinary(W, b, spins="01"), spins="01")
        state = sampler.init(jnp.zeros(10))
        state, info = jax.jit(sampler.step)(key, state)   # one proposed flip
    """
    check_logdensity_fn(logdensity_fn)
    kernel = build_kernel(spins)

    def init_fn(position, rng_key: PRNGKey | None = None) -> GibbsWithGradientsState:
        del rng_key
        return init(position, logdensity_fn, spins)

    def step_fn(
        rng_key: PRNGKey, state: GibbsWithGradientsState
    ) -> tuple[GibbsWithGradientsState, GibbsWithGradientsInfo]:
        return kernel(rng_key, state, logdensity_fn)

    return SamplingAlgorithm(init_fn, step_fn)
