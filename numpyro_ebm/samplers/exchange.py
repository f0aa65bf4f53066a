r"""The exchange algorithm (Murray, Ghahramani & MacKay 2006) for doubly intractable posteriors:
a NumPyro model whose observed energy site has a normalizer that depends on a latent site (a
``"doubly_intractable"`` target), such as the inverse temperature of observed Ising
configurations.

With :math:`\theta` the latent sites (on NumPyro's unconstrained space, Jacobian included) and
the observed configurations :math:`x` of density :math:`f(x; \theta) / Z(\theta)`, the
posterior :math:`\pi(\theta) f(x; \theta) / Z(\theta)` has an unknown :math:`Z(\theta)`. One
transition proposes :math:`\theta' = \theta + \epsilon z`, :math:`z \sim \mathcal N(0, I)`,
draws auxiliary configurations :math:`w \sim f(\cdot; \theta') / Z(\theta')` (as many as
observed), and accepts with probability

.. math::

    \min\left(1, \frac{\pi(\theta') f(x; \theta')\, f(w; \theta)}
    {\pi(\theta) f(x; \theta)\, f(w; \theta')}\right):

the :math:`Z` cancel, and the chain leaves the exact posterior invariant, **if** :math:`w` is an
exact draw. ``auxiliary="exact"`` makes it so: by enumeration for a
:class:`~numpyro_ebm.DiscreteEnergyDistribution` of at most 16 sites
(:meth:`~numpyro_ebm.DiscreteEnergyDistribution.sample`), by coupling from the past
(:mod:`numpyro_ebm.kernels.cftp`, Propp & Wilson 1996) for a ferromagnetic
:class:`~numpyro_ebm.models.ising.Ising` energy; other energies have no exact sampler and are
refused. ``auxiliary=`` a sampler value (``gibbs()``, ``checkerboard()``,
``gibbs_with_gradients()`` for bits or spins; ``mala()``, ``ula()`` for a continuous energy)
draws :math:`w` by ``auxiliary_steps`` transitions of its kernel started at the observed
configurations (the approximate exchange algorithm of Liang 2010): the chain then targets an
approximation of the posterior whose error shrinks as the steps grow; measure it (the
documentation reports it against the exact algorithm on a lattice small enough to enumerate).

Warm-up tunes the proposal :math:`\theta' = \theta + \epsilon L z` by adaptive Metropolis
(Haario, Saksman & Tamminen 2001; Andrieu & Thoms 2008): over its first half :math:`L = I`
and :math:`\log \epsilon_{t+1} = \log \epsilon_t + (t + 1)^{-0.6} (a_t - a_\star)` towards
``target_acceptance_rate`` from ``step_size``; at the half, :math:`L` becomes the Cholesky
factor of the draws' covariance so far and :math:`\epsilon` restarts at
:math:`2.38 / \sqrt d` (Roberts & Rosenthal 2001), tuned again over the second half. Latent
sites of different scales or correlated ones (an Ising model's :math:`\beta` and field
:math:`h`) then move together. Dual averaging would first try steps ten times larger, and an
exact auxiliary draw at a far proposal (an Ising model below its critical temperature) can
cost thousands of sweeps. A coupling from the past
that has not coalesced after 13 doublings (4096 sweeps) rejects its proposal; such
proposals are counted in ``sample_stats.auxiliary_failed`` and warned about. They are not
harmless: rejecting them weights the posterior by the probability of coalescing in time,
which falls towards the ordered phase, so a run with failures is biased there (narrow the
prior, or use the approximate algorithm).

References
----------
I. Murray, Z. Ghahramani and D. J. C. MacKay (2006). MCMC for doubly-intractable
distributions. UAI.
J. G. Propp and D. B. Wilson (1996). Exact sampling with coupled Markov chains and
applications to statistical mechanics. Random Structures & Algorithms 9(1-2).
C. Andrieu and J. Thoms (2008). A tutorial on adaptive MCMC. Statistics and Computing 18(4).
H. Haario, E. Saksman and J. Tamminen (2001). An adaptive Metropolis algorithm. Bernoulli 7(2).
G. O. Roberts and J. S. Rosenthal (2001). Optimal scaling for various Metropolis-Hastings
algorithms. Statistical Science 16(4).
F. Liang (2010). A double Metropolis-Hastings sampler for spatial models with intractable
normalizing constants. Journal of Statistical Computation and Simulation 80(9).
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp

from numpyro_ebm._checks import check_int, check_positive_number, check_probability
from numpyro_ebm.samplers._intractable import (
    auxiliary_draws,
    check_auxiliary,
    energy_sites,
    log_f,
)
from numpyro_ebm.samplers.base import ChainSampler, Sampler, finite, register_sampler, stats

__all__ = ["Exchange", "exchange"]


class Exchange(Sampler):
    """The exchange algorithm's sampler value (:func:`exchange`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _exchange_chain(target, **self.options)


def _exchange_chain(target, *, auxiliary, auxiliary_steps, step_size, target_acceptance_rate):
    logdensity_fn = target.logdensity_fn
    draws, _ = auxiliary_draws(target, auxiliary, auxiliary_steps, "the exchange algorithm")
    unravel = jax.flatten_util.ravel_pytree(
        jax.tree.map(lambda x: x[0], target.initial_position)
    )[1]

    def move(rng_key, state, scale, factor):
        """One exchange transition proposing ``z + scale * factor @ noise`` (flattened)."""
        position, logdensity = state
        move_key, draw_key, accept_key = jax.random.split(rng_key, 3)
        z = jax.flatten_util.ravel_pytree(position)[0]
        proposal = unravel(z + scale * factor @ jax.random.normal(move_key, z.shape, z.dtype))
        proposed = logdensity_fn(proposal)
        valid = jnp.isfinite(proposed)
        # auxiliary draws at a proposal of zero density are not needed (it is rejected):
        # draw at the current point, where they are defined
        at = jax.tree.map(lambda new, old: jnp.where(valid, new, old), proposal, position)
        here, there = energy_sites(target, position), energy_sites(target, at)
        w, exact = draws(draw_key, there)
        log_ratio = proposed - logdensity + log_f(here, w) - log_f(there, w)
        log_ratio = jnp.where(valid & exact, log_ratio, -jnp.inf)
        accept = jnp.log(jax.random.uniform(accept_key)) < log_ratio
        acceptance = jnp.exp(jnp.minimum(jnp.nan_to_num(log_ratio, nan=-jnp.inf), 0.0))
        position = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, position)
        failed = valid & ~exact
        return (position, jnp.where(accept, proposed, logdensity)), acceptance, failed

    def warmup(rng_key, position, num_warmup):
        size = jax.flatten_util.ravel_pytree(position)[0].shape[0]
        eye = jnp.eye(size, dtype=jnp.float32)
        # the shape is learnt over the first half, then used (and the scale retuned for it)
        learn = num_warmup // 2

        def body(carry, key_and_time):
            state, log_scale, factor, count, mean, scatter = carry
            key, t = key_and_time
            state, acceptance, _ = move(key, state, jnp.exp(log_scale), factor)
            log_scale = log_scale + (acceptance - target_acceptance_rate) / (t + 1.0) ** 0.6
            z = jax.flatten_util.ravel_pytree(state[0])[0]
            count = count + 1.0
            delta = z - mean
            mean = mean + delta / count
            scatter = scatter + jnp.outer(delta, z - mean)
            # at the half: the Cholesky factor of the draws' covariance (regularized), with the
            # scale reset to 2.38 / sqrt(d) of it (Roberts & Rosenthal 2001)
            switch = t == learn - 1
            covariance = scatter / jnp.maximum(count - 1.0, 1.0) + 1e-6 * eye
            shaped = jnp.linalg.cholesky(covariance)
            usable = switch & jnp.all(jnp.isfinite(shaped))
            factor = jnp.where(usable, shaped, factor)
            log_scale = jnp.where(usable, jnp.log(2.38 / jnp.sqrt(size)), log_scale)
            return (state, log_scale, factor, count, mean, scatter), None

        state = (position, logdensity_fn(position))
        log_scale = jnp.log(jnp.asarray(step_size, jnp.float32))
        zeros = jnp.zeros(size, jnp.float32)
        times = jnp.arange(num_warmup, dtype=jnp.float32)
        carry = (state, log_scale, eye, jnp.zeros(()), zeros, jnp.zeros((size, size)))
        (state, log_scale, factor, *_), _ = jax.lax.scan(
            body, carry, (jax.random.split(rng_key, num_warmup), times)
        )
        return state, {"step_size": jnp.exp(log_scale), "proposal_factor": factor}

    def step(rng_key, state, parameters):
        state, acceptance, failed = move(
            rng_key, state, parameters["step_size"], parameters["proposal_factor"]
        )
        return state, stats(
            acceptance_rate=acceptance,
            step_size=parameters["step_size"],
            logdensity=state[1],
            grads=0,
            finite=finite(state[0], state[1]),
        ) | {"auxiliary_failed": failed}

    return ChainSampler(warmup, step, lambda state: state[0])


@register_sampler("exchange")
def exchange(
    *,
    auxiliary="exact",
    auxiliary_steps: int = 100,
    step_size: float = 0.1,
    target_acceptance_rate: float = 0.4,
) -> Sampler:
    """The exchange algorithm (see the module docstring) for a model whose observed energy site
    has a normalizer that depends on its latent sites: random-walk proposals of the latent
    sites (scale tuned in warm-up from ``step_size`` towards ``target_acceptance_rate``),
    auxiliary configurations drawn exactly (``auxiliary="exact"``: enumeration or coupling
    from the past) or by ``auxiliary_steps`` transitions of a kernel (``auxiliary=`` a sampler
    value: the approximate exchange algorithm)."""
    auxiliary = check_auxiliary(auxiliary)
    check_int("auxiliary_steps", auxiliary_steps)
    check_positive_number("step_size", step_size)
    check_probability("target_acceptance_rate", target_acceptance_rate)
    return Exchange(
        "exchange",
        {
            "auxiliary": auxiliary,
            "auxiliary_steps": auxiliary_steps,
            "step_size": step_size,
            "target_acceptance_rate": target_acceptance_rate,
        },
        frozenset({"doubly_intractable"}),
    )
