r"""Single-site Gibbs sampling (heat bath) and single-site Metropolis for any log density on
binary configurations, :math:`\{-1,+1\}^d` or :math:`\{0,1\}^d`, in BlackJAX's form.

Site :math:`i` of :math:`x` is proposed to flip, :math:`x \to x^{(i)}`, with the log ratio

.. math::

    \Delta_i(x) = \log p(x^{(i)}) - \log p(x),

computed from one evaluation of the log density at :math:`x^{(i)}`, so any log density works
(no structure is assumed). The flip is accepted with probability

.. math::

    \text{heat bath (Glauber):}\ \sigma(\Delta_i) = \frac{1}{1 + e^{-\Delta_i}}, \qquad
    \text{Metropolis:}\ \min(1, e^{\Delta_i});

the heat-bath move draws :math:`x_i` from its exact conditional :math:`p(x_i \mid x_{-i})`
(Geman & Geman 1984), the Metropolis move (Metropolis et al. 1953) flips more often and mixes
faster on spin systems at the price of being periodic at infinite temperature.

**One step is one sweep of** :math:`d` **site updates** (:math:`d` = number of sites), in
either scan: ``scan="systematic"`` visits the sites in order :math:`0, \dots, d-1` (flattened,
row-major), ``scan="random"`` visits :math:`d` sites drawn uniformly with replacement. Both
leave :math:`p` invariant; the random scan is also reversible. A sweep costs :math:`d`
log-density evaluations and no gradient.

References
----------
S. Geman and D. Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
restoration of images. IEEE TPAMI 6(6).
N. Metropolis, A. W. Rosenbluth, M. N. Rosenbluth, A. H. Teller and E. Teller (1953).
Equation of state calculations by fast computing machines. J. Chem. Phys. 21(6).
R. J. Glauber (1963). Time-dependent statistics of the Ising model. J. Math. Phys. 4(2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from blackjax.types import PRNGKey

from numpyro_ebm._spins import as_spin_array, flip, spin_values

__all__ = [
    "GibbsInfo",
    "GibbsState",
    "as_top_level_api",
    "build_kernel",
    "check_logdensity_fn",
    "check_update",
    "flip_probability",
    "init",
]

UPDATES = ("heat_bath", "metropolis")
SCANS = ("random", "systematic")


class GibbsState(NamedTuple):
    """The configuration (float array of spins) and its log density."""

    position: jax.Array
    logdensity: jax.Array


class GibbsInfo(NamedTuple):
    """``acceptance_rate``: 1 for heat-bath updates (every update is a draw from the exact
    conditional), the mean Metropolis acceptance probability of the sweep's flips otherwise;
    ``is_finite``: whether the new log density is finite; ``num_grad_evals``: 0."""

    acceptance_rate: jax.Array
    is_finite: jax.Array
    num_grad_evals: jax.Array


def check_update(update: str) -> str:
    """``update`` if it is ``"heat_bath"`` or ``"metropolis"``, else ``ValueError``."""
    if update not in UPDATES:
        raise ValueError(f"update must be 'heat_bath' or 'metropolis', got {update!r}")
    return update


def check_logdensity_fn(logdensity_fn) -> Callable:
    """``logdensity_fn`` if callable, else ``TypeError``."""
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {logdensity_fn!r}")
    return logdensity_fn


def flip_probability(log_ratio: jax.Array, update: str) -> jax.Array:
    """Probability of accepting a flip with log ratio :math:`\\Delta`: :math:`\\sigma(\\Delta)`
    (heat bath) or :math:`\\min(1, e^\\Delta)` (Metropolis)."""
    if check_update(update) == "heat_bath":
        return jax.nn.sigmoid(log_ratio)
    return jnp.exp(jnp.minimum(log_ratio, 0.0))


def init(position, logdensity_fn: Callable, spins: str = "pm1") -> GibbsState:
    """Check that ``position`` holds only the two values of ``spins`` (``ValueError``
    otherwise, e.g. for a continuous position), cast it to floats and evaluate its log
    density."""
    position = as_spin_array("position", position, spins)
    return GibbsState(position, logdensity_fn(position))


def build_kernel(scan: str = "random", update: str = "heat_bath", spins: str = "pm1"):
    """Build the sweep ``kernel(rng_key, state, logdensity_fn) -> (state, info)``.

    Parameters
    ----------
    scan
        ``"random"`` (:math:`d` uniformly drawn sites) or ``"systematic"`` (every site in
        order).
    update
        ``"heat_bath"`` or ``"metropolis"``.
    spins
        ``"pm1"`` or ``"01"``, the encoding of the configurations.
    """
    if scan not in SCANS:
        raise ValueError(f"scan must be 'random' or 'systematic', got {scan!r}")
    check_update(update)
    spin_values(spins)

    def kernel(
        rng_key: PRNGKey, state: GibbsState, logdensity_fn: Callable
    ) -> tuple[GibbsState, GibbsInfo]:
        shape = state.position.shape
        num_sites = state.position.size
        site_key, uniform_key = jax.random.split(rng_key)
        if scan == "systematic":
            sites = jnp.arange(num_sites)
        else:
            sites = jax.random.randint(site_key, (num_sites,), 0, num_sites)
        uniforms = jax.random.uniform(uniform_key, (num_sites,))

        def update_site(carry, site_and_uniform):
            flat, logdensity, total = carry
            site, uniform = site_and_uniform
            proposal = flat.at[site].set(flip(flat[site], spins))
            proposal_logdensity = logdensity_fn(proposal.reshape(shape))
            probability = flip_probability(proposal_logdensity - logdensity, update)
            accept = uniform < probability
            flat = jnp.where(accept, proposal, flat)
            logdensity = jnp.where(accept, proposal_logdensity, logdensity)
            return (flat, logdensity, total + probability), None

        start = (state.position.reshape(-1), state.logdensity, jnp.zeros(()))
        (flat, logdensity, total), _ = jax.lax.scan(update_site, start, (sites, uniforms))
        acceptance = jnp.ones(()) if update == "heat_bath" else total / num_sites
        info = GibbsInfo(acceptance, jnp.isfinite(logdensity), jnp.asarray(0, jnp.int32))
        return GibbsState(flat.reshape(shape), logdensity), info

    return kernel


def as_top_level_api(
    logdensity_fn: Callable,
    scan: str = "random",
    update: str = "heat_bath",
    spins: str = "pm1",
) -> SamplingAlgorithm:
    """Single-site Gibbs / Metropolis sweeps as a ``blackjax.SamplingAlgorithm``.

    Parameters
    ----------
    logdensity_fn
        :math:`\\log p(x)` up to a constant, for one configuration of any shape (e.g. an
        :class:`~numpyro_ebm.models.ising.Ising` model, a ``BoundLogDensity``, a tempered
        log density inside replica exchange).
    scan, update, spins
        See :func:`build_kernel`.

    Examples
    --------
    .. code::

        model = Ising(8, beta=0.3)
        sampler = as_top_level_api(model, scan="systematic")
        state = sampler.init(jnp.ones((8, 8)))
        state, info = jax.jit(sampler.step)(key, state)   # one sweep
    """
    check_logdensity_fn(logdensity_fn)
    kernel = build_kernel(scan, update, spins)

    def init_fn(position, rng_key: PRNGKey | None = None) -> GibbsState:
        del rng_key
        return init(position, logdensity_fn, spins)

    def step_fn(rng_key: PRNGKey, state: GibbsState) -> tuple[GibbsState, GibbsInfo]:
        return kernel(rng_key, state, logdensity_fn)

    return SamplingAlgorithm(init_fn, step_fn)
