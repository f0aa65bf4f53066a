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

Warm-up tunes :math:`\epsilon` towards ``target_acceptance_rate`` by stochastic
approximation, :math:`\log \epsilon_{t+1} = \log \epsilon_t + (t + 1)^{-0.6} (a_t - a_\star)`
(the adaptive scaling of Andrieu & Thoms 2008), from ``step_size``: dual averaging would
first try steps ten times larger, and an exact auxiliary draw at a far proposal (an Ising
model below its critical temperature) can cost thousands of sweeps. A coupling from the past
that has not coalesced after :data:`CFTP_DOUBLINGS` doublings rejects its proposal; such
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
F. Liang (2010). A double Metropolis-Hastings sampler for spatial models with intractable
normalizing constants. Journal of Statistical Computation and Simulation 80(9).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.core import Tracer
from numpyro import handlers

from numpyro_ebm._checks import check_int, check_positive, check_probability
from numpyro_ebm._spins import from_pm1
from numpyro_ebm.energy import DiscreteEnergyDistribution
from numpyro_ebm.kernels.cftp import ising_cftp
from numpyro_ebm.model_density import base_distribution
from numpyro_ebm.samplers.base import (
    ChainSampler,
    Sampler,
    finite,
    get_sampler,
    register_sampler,
    stats,
)

__all__ = ["exchange"]

#: Doublings of coupling from the past before an auxiliary draw is given up (at most 4096
#: sweeps from the past; the proposal is then rejected and counted in ``auxiliary_failed``).
CFTP_DOUBLINGS = 13

#: Auxiliary samplers of the approximate exchange algorithm, by the kind of energy they move.
DISCRETE_AUXILIARY = ("gibbs", "checkerboard", "gibbs_with_gradients")
CONTINUOUS_AUXILIARY = ("mala", "ula")


def _trace_at(target, position) -> dict:
    """The model's trace at the latent values of ``position`` (unconstrained)."""
    values = target.postprocess_fn(position)
    model = handlers.substitute(handlers.seed(target.fn, rng_seed=0), data=values)
    return handlers.trace(model).get_trace(*target.model_args, **(target.model_kwargs or {}))


def _energy_sites(target, position) -> dict:
    """The distributions of the target's intractable energy sites at the latent values of
    ``position`` (unconstrained)."""
    trace = _trace_at(target, position)
    return {name: trace[name]["fn"] for name, _ in target.intractable}


def _exact_draw(name: str, fn):
    """``draw(key, fn) -> (w, exact)`` drawing exactly from a site's distribution ``fn`` (its
    batch included), chosen from the site's prototype ``fn``; ``ValueError`` where none
    exists."""
    base = base_distribution(fn)
    batch = fn.batch_shape
    if isinstance(base, DiscreteEnergyDistribution):
        if math.prod(base.event_shape) <= base.max_enumerated_sites:
            return lambda key, fn: (fn.sample(key), jnp.asarray(True))
        from numpyro_ebm.models.ising import Ising

        ising = getattr(base.energy, "__self__", None)
        if (
            isinstance(ising, Ising)
            and base.energy == ising.energy
            and ising.spins == base.spins
            and all(side % 2 == 0 for side in ising.shape)
            and (isinstance(ising.J, Tracer) or float(ising.J) >= 0)
        ):

            def cftp(key, fn):
                site = base_distribution(fn)
                one = site.energy.__self__
                coupling = one.J / site.temperature
                spins, coalesced, _ = jax.vmap(
                    lambda k: ising_cftp(
                        k,
                        one.shape,
                        coupling,
                        one.h / site.temperature,
                        max_doublings=CFTP_DOUBLINGS,
                    )
                )(jax.random.split(key, math.prod(batch)))
                spins = from_pm1(spins.reshape((*batch, *one.shape)), site.spins)
                # an antiferromagnetic coupling breaks the monotone coupling: no exact draw
                return spins, coalesced.all() & (coupling >= 0)

            return cftp
    raise ValueError(
        f"exchange(auxiliary='exact') has no exact sampler for the energy site {name!r} "
        f"({type(base).__name__}): exact draws come from enumeration (at most "
        f"{DiscreteEnergyDistribution.max_enumerated_sites} sites) or coupling from the past "
        "(a ferromagnetic Ising(L).energy with every side even, in the Ising model's own spin "
        "encoding); give auxiliary=ne.samplers.gibbs() (or another kernel) for the "
        "approximate exchange algorithm"
    )


def _kernel_draw(name: str, fn, auxiliary: Sampler, steps: int, observed):
    """``draw(key, fn) -> w``: ``steps`` transitions of the auxiliary sampler's kernel on each
    configuration of the site's batch, from the ``observed`` configurations."""
    base = base_distribution(fn)
    discrete = isinstance(base, DiscreteEnergyDistribution)
    allowed = DISCRETE_AUXILIARY if discrete else CONTINUOUS_AUXILIARY
    if auxiliary.name not in allowed:
        raise ValueError(
            f"the energy site {name!r} is {'discrete' if discrete else 'continuous'}: its "
            f"auxiliary sampler must be one of {list(allowed)}, got {auxiliary!r}"
        )

    def kernel_of(site):
        if discrete:
            return auxiliary.kernel(site.log_prob, site.spins, **auxiliary.options)
        return auxiliary.kernel(site.log_prob, auxiliary.options["step_size"])

    # the structure the kernel assumes (checkerboard's), checked once where values are concrete
    kernel_of(base).init(observed.reshape((-1, *base.event_shape))[0])

    def draw(key, fn):
        site = base_distribution(fn)
        kernel = kernel_of(site)

        def chain(key, x):
            state = kernel.init(x)
            state, _ = jax.lax.scan(
                lambda state, k: (kernel.step(k, state)[0], None),
                state,
                jax.random.split(key, steps),
            )
            return state.position

        event = site.event_shape
        flat = observed.reshape((-1, *event))
        keys = jax.random.split(key, flat.shape[0])
        return jax.vmap(chain)(keys, flat).reshape(observed.shape)

    return draw


def _build(target, *, auxiliary, auxiliary_steps, step_size, target_acceptance_rate):
    if target.discrete:
        names = [name for name, _ in target.discrete]
        raise ValueError(
            f"the model has discrete latent sites {names} beside its doubly intractable energy "
            "site: the exchange algorithm moves continuous latent sites only"
        )
    logdensity_fn = target.logdensity_fn
    trace = _trace_at(target, jax.tree.map(lambda x: x[0], target.initial_position))
    prototypes = {name: trace[name]["fn"] for name, _ in target.intractable}
    observed = _observed(target, trace)
    if auxiliary == "exact":
        exact = {name: _exact_draw(name, fn) for name, fn in prototypes.items()}

        def draws(key, fns):
            keys = jax.random.split(key, len(fns))
            pairs = {n: exact[n](k, fns[n]) for n, k in zip(fns, keys, strict=True)}
            ok = jnp.all(jnp.stack([pair[1] for pair in pairs.values()]))
            return {n: pair[0] for n, pair in pairs.items()}, ok

    else:
        sampler = get_sampler(auxiliary)
        kernel_draws = {
            name: _kernel_draw(name, fn, sampler, auxiliary_steps, observed[name])
            for name, fn in prototypes.items()
        }

        def draws(key, fns):
            keys = jax.random.split(key, len(fns))
            values = {n: kernel_draws[n](k, fns[n]) for n, k in zip(fns, keys, strict=True)}
            return values, jnp.asarray(True)

    def log_f(fns, values) -> jax.Array:
        return sum(jnp.sum(fns[name].log_prob(values[name])) for name in fns)

    def move(rng_key, state, scale):
        position, logdensity = state
        move_key, draw_key, accept_key = jax.random.split(rng_key, 3)
        leaves, treedef = jax.tree.flatten(position)
        noise = jax.random.split(move_key, len(leaves))
        proposal = jax.tree.unflatten(
            treedef,
            [
                x + scale * jax.random.normal(k, x.shape, x.dtype)
                for x, k in zip(leaves, noise, strict=True)
            ],
        )
        proposed = logdensity_fn(proposal)
        valid = jnp.isfinite(proposed)
        # auxiliary draws at a proposal of zero density are not needed (it is rejected):
        # draw at the current point, where they are defined
        at = jax.tree.map(lambda new, old: jnp.where(valid, new, old), proposal, position)
        here, there = _energy_sites(target, position), _energy_sites(target, at)
        w, exact = draws(draw_key, there)
        log_ratio = proposed - logdensity + log_f(here, w) - log_f(there, w)
        log_ratio = jnp.where(valid & exact, log_ratio, -jnp.inf)
        accept = jnp.log(jax.random.uniform(accept_key)) < log_ratio
        acceptance = jnp.exp(jnp.minimum(jnp.nan_to_num(log_ratio, nan=-jnp.inf), 0.0))
        position = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, position)
        failed = valid & ~exact
        return (position, jnp.where(accept, proposed, logdensity)), acceptance, failed

    def warmup(rng_key, position, num_warmup):
        def body(carry, key_and_time):
            state, log_scale = carry
            key, t = key_and_time
            state, acceptance, _ = move(key, state, jnp.exp(log_scale))
            log_scale = log_scale + (acceptance - target_acceptance_rate) / (t + 1.0) ** 0.6
            return (state, log_scale), None

        state = (position, logdensity_fn(position))
        log_scale = jnp.log(jnp.asarray(step_size, jnp.float32))
        times = jnp.arange(num_warmup, dtype=jnp.float32)
        (state, log_scale), _ = jax.lax.scan(
            body, (state, log_scale), (jax.random.split(rng_key, num_warmup), times)
        )
        return state, {"step_size": jnp.exp(log_scale)}

    def step(rng_key, state, parameters):
        state, acceptance, failed = move(rng_key, state, parameters["step_size"])
        return state, stats(
            acceptance_rate=acceptance,
            step_size=parameters["step_size"],
            logdensity=state[1],
            grads=0,
            finite=finite(state[0], state[1]),
        ) | {"auxiliary_failed": failed}

    return ChainSampler(warmup, step, lambda state: state[0])


def _observed(target, trace) -> dict:
    """The observed values of the intractable energy sites in the model's ``trace`` (the start
    of approximate auxiliary draws); ``ValueError`` for a latent energy site, which the
    exchange algorithm does not sample."""
    observed = {}
    for name, latent in target.intractable:
        if not trace[name]["is_observed"]:
            raise ValueError(
                f"the energy site {name!r} is latent and its normalizer depends on {latent!r}: "
                "the exchange algorithm samples the parameters of observed configurations; fix "
                f"{latent!r} or observe {name!r}"
            )
        observed[name] = jnp.asarray(trace[name]["value"])
    return observed


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
    if auxiliary != "exact":
        auxiliary = get_sampler(auxiliary)
        if auxiliary.name not in DISCRETE_AUXILIARY + CONTINUOUS_AUXILIARY:
            raise ValueError(
                "auxiliary must be 'exact' or one of "
                f"{list(DISCRETE_AUXILIARY + CONTINUOUS_AUXILIARY)}, got {auxiliary!r}"
            )
    check_int("auxiliary_steps", auxiliary_steps)
    check_positive("step_size", step_size)
    check_probability("target_acceptance_rate", target_acceptance_rate)
    return Sampler(
        "exchange",
        {
            "auxiliary": auxiliary,
            "auxiliary_steps": auxiliary_steps,
            "step_size": step_size,
            "target_acceptance_rate": target_acceptance_rate,
        },
        frozenset({"doubly_intractable"}),
        build=_build,
    )
