r"""What the samplers of doubly intractable posteriors share (the exchange algorithm and
calibrated pseudo-likelihood): the energy sites of a model at a latent value, and auxiliary
configurations drawn from them, exactly (enumeration, coupling from the past) or by a kernel's
transitions from the observed configurations."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.core import Tracer

from numpyro_ebm._checks import structure_checked
from numpyro_ebm._spins import from_pm1
from numpyro_ebm.energy import DiscreteEnergyDistribution
from numpyro_ebm.kernels.cftp import ising_cftp
from numpyro_ebm.model_density import base_distribution, trace_at
from numpyro_ebm.samplers.base import Sampler, get_sampler, untuned_warmup

#: Doublings of coupling from the past before an auxiliary draw is given up (at most 4096
#: sweeps from the past; the proposal is then rejected and counted in ``auxiliary_failed``).
CFTP_DOUBLINGS = 13

#: Auxiliary samplers of the approximate exchange algorithm, by the kind of energy they move.
DISCRETE_AUXILIARY = ("gibbs", "checkerboard", "gibbs_with_gradients")
CONTINUOUS_AUXILIARY = ("mala", "ula")


def energy_sites(target, position) -> dict:
    """The distributions of the target's intractable energy sites at the latent values of
    ``position`` (unconstrained)."""
    trace = trace_at(target, position)
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
        f"auxiliary='exact' has no exact sampler for the energy site {name!r} "
        f"({type(base).__name__}): exact draws come from enumeration (at most "
        f"{DiscreteEnergyDistribution.max_enumerated_sites} sites) or coupling from the past "
        "(a ferromagnetic Ising(L).energy with every side even, in the Ising model's own spin "
        "encoding); give auxiliary=ne.samplers.gibbs() (or another kernel) for approximate "
        "auxiliary draws"
    )


def _kernel_draw(name: str, fn, auxiliary: Sampler, steps: int, observed):
    """``draw(key, fn) -> (w, True)``: ``steps`` transitions of the auxiliary sampler's kernel on
    each configuration of the site's batch, from the ``observed`` configurations."""
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
            with structure_checked():  # checked above, on concrete values
                state = kernel.init(x)
            return untuned_warmup(kernel.step, state, key, steps).position

        event = site.event_shape
        flat = observed.reshape((-1, *event))
        keys = jax.random.split(key, flat.shape[0])
        return jax.vmap(chain)(keys, flat).reshape(observed.shape), jnp.asarray(True)

    return draw


def _observed(target, trace, sampler: str) -> dict:
    """The observed values of the intractable energy sites in the model's ``trace`` (the start
    of approximate auxiliary draws); ``ValueError`` for a latent energy site, which ``sampler``
    does not sample."""
    observed = {}
    for name, latent in target.intractable:
        if not trace[name]["is_observed"]:
            raise ValueError(
                f"the energy site {name!r} is latent and its normalizer depends on {latent!r}: "
                f"{sampler} samples the parameters of observed configurations; fix "
                f"{latent!r} or observe {name!r}"
            )
        observed[name] = jnp.asarray(trace[name]["value"])
    return observed


def check_auxiliary(auxiliary):
    """``"exact"`` or the auxiliary sampler value (``ValueError`` for any other)."""
    if auxiliary == "exact":
        return auxiliary
    auxiliary = get_sampler(auxiliary)
    if auxiliary.name not in DISCRETE_AUXILIARY + CONTINUOUS_AUXILIARY:
        raise ValueError(
            "auxiliary must be 'exact' or one of "
            f"{list(DISCRETE_AUXILIARY + CONTINUOUS_AUXILIARY)}, got {auxiliary!r}"
        )
    return auxiliary


def auxiliary_draws(target, auxiliary, steps: int, sampler: str):
    """``(draws, observed)``: the observed configurations of the intractable energy sites (by
    name), and ``draws(key, fns) -> (values, exact)``: one auxiliary configuration per observed one
    for every intractable energy site, from the site distributions ``fns`` (by name, as
    :func:`energy_sites` gives them), with ``exact`` whether every draw is exact (a coupling
    from the past that did not coalesce makes it ``False``). Refuses, in the words of
    ``sampler``, a model with discrete latent sites or a latent energy site, and an energy
    without an exact sampler when ``auxiliary="exact"``."""
    if target.discrete:
        names = [name for name, _ in target.discrete]
        raise ValueError(
            f"the model has discrete latent sites {names} beside its doubly intractable energy "
            f"site: {sampler} moves continuous latent sites only"
        )
    trace = trace_at(target, jax.tree.map(lambda x: x[0], target.initial_position))
    prototypes = {name: trace[name]["fn"] for name, _ in target.intractable}
    observed = _observed(target, trace, sampler)
    if auxiliary == "exact":
        draw = {name: _exact_draw(name, fn) for name, fn in prototypes.items()}
    else:
        draw = {
            name: _kernel_draw(name, fn, auxiliary, steps, observed[name])
            for name, fn in prototypes.items()
        }

    def draws(key, fns):
        keys = jax.random.split(key, len(fns))
        pairs = {n: draw[n](k, fns[n]) for n, k in zip(fns, keys, strict=True)}
        return (
            {n: pair[0] for n, pair in pairs.items()},
            jnp.all(jnp.stack([pair[1] for pair in pairs.values()])),
        )

    return draws, observed


def log_f(fns, values) -> jax.Array:
    """The unnormalized log densities of the energy sites ``fns`` at ``values``, summed."""
    return sum(jnp.sum(fns[name].log_prob(values[name])) for name in fns)
