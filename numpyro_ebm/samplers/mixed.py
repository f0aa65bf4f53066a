r"""Gibbs within HMC: a NumPyro model's discrete latent sites moved by Gibbs-type kernels, its
continuous sites by NUTS, HMC or MALA, in turn (a ``"mixed"`` target,
:func:`~numpyro_ebm.model_target`).

Write :math:`z` for the continuous sites (on NumPyro's unconstrained space, Jacobian included)
and :math:`d = (d_1, \dots, d_m)` for the discrete sites, each of bits or spins. One transition

1. moves each discrete site :math:`d_j` in turn by one sweep of the discrete kernel (``gibbs``,
   ``checkerboard``, ``gibbs_with_gradients``, ``swendsen_wang`` for a conditional that is
   an Ising model in a field, such as an Ising prior with a likelihood of each spin, or
   ``block_gibbs`` for an RBM prior on the site with a likelihood of each unit: an RBM's
   hidden layer drawn afresh, then the visible units, by data augmentation) on its full
   conditional
   :math:`p(d_j \mid d_{-j}, z) \propto p(z, d)`, the log joint with every other site fixed;
2. then moves :math:`z` by one transition of the continuous kernel on
   :math:`p(z \mid d) \propto p(z, d)`.

Each move leaves its conditional invariant, hence the joint :math:`p(z, d)`; their composition
is a deterministic-scan Gibbs sampler over blocks (Geman & Geman 1984), with Metropolis-type
moves inside the blocks (Tierney 1994). It is the scheme of NumPyro's ``HMCGibbs`` and
``DiscreteHMCGibbs`` (Liu 1996 for the discrete Metropolized Gibbs moves), with our discrete
kernels doing whole sweeps where ``DiscreteHMCGibbs`` updates one site per transition.

Warm-up tunes the continuous kernel's step size (dual averaging towards its target acceptance
rate) and mass matrix (Stan's windows) with BlackJAX's window adaptation run one transition at
a time (``blackjax.adaptation.window_adaptation.base``): BlackJAX's ``window_adaptation``
driver fixes one log density, while here :math:`p(z \mid d)` changes with every discrete move.
MALA has no mass matrix; its step is tuned alone.

References
----------
S. Geman and D. Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
restoration of images. IEEE TPAMI 6(6).
L. Tierney (1994). Markov chains for exploring posterior distributions. Ann. Statist. 22(4).
J. S. Liu (1996). Peskun's theorem and a modified discrete-state Gibbs sampler. Biometrika 83(3).
"""

from __future__ import annotations

import blackjax
import jax
import jax.flatten_util
import jax.numpy as jnp
from blackjax.adaptation.window_adaptation import base as window_base
from blackjax.adaptation.window_adaptation import build_schedule
from jax.core import Tracer

from numpyro_ebm._checks import structure_checked
from numpyro_ebm.energy import BoundEnergy
from numpyro_ebm.kernels import block_gibbs as block_gibbs_kernel
from numpyro_ebm.model_density import base_distribution, trace_at
from numpyro_ebm.samplers.base import (
    ChainSampler,
    Sampler,
    blackjax_step_size,
    finite,
    get_sampler,
    register_sampler,
    stats,
    untuned_warmup,
)

__all__ = ["HMCGibbs", "hmc_gibbs"]

#: The continuous moves and their BlackJAX algorithms, from (log density, tuned values, options).
CONTINUOUS = {
    "nuts": lambda logdensity_fn, p, o: blackjax.nuts(
        logdensity_fn,
        p["step_size"],
        p["inverse_mass_matrix"],
        max_num_doublings=o["max_num_doublings"],
    ),
    "hmc": lambda logdensity_fn, p, o: blackjax.hmc(
        logdensity_fn, p["step_size"], p["inverse_mass_matrix"], o["num_integration_steps"]
    ),
    "mala": lambda logdensity_fn, p, o: blackjax.mala(
        logdensity_fn, blackjax_step_size(p["step_size"])
    ),
}

#: The discrete moves: samplers that need only the log density (a ``kernel`` of one site).
DISCRETE = ("gibbs", "checkerboard", "gibbs_with_gradients", "swendsen_wang", "block_gibbs")


def _rbm(target, name: str) -> tuple:
    """The ``(model, params)`` of the RBM whose visible units the discrete site ``name`` is (for
    ``block_gibbs``), or a ``ValueError`` saying what it needs."""
    trace = trace_at(target, jax.tree.map(lambda x: x[0], target.initial_position))
    site = base_distribution(trace[name]["fn"])
    energy = getattr(site, "energy", None)
    model = getattr(getattr(energy, "energy_fn", None), "__self__", None)
    if (
        not isinstance(energy, BoundEnergy)
        or model is None
        or energy.energy_fn != getattr(model, "free_energy", None)
        or not getattr(model, "binary_visible", False)
        or site.spins != "01"
        or isinstance(site.temperature, Tracer)
        or site.temperature != 1.0
    ):
        raise ValueError(
            f"block_gibbs moves the discrete site {name!r} only as the visible units of an RBM: "
            "DiscreteEnergyDistribution(BoundEnergy(rbm.free_energy, params), (n_visible,), "
            "support='01') at temperature 1, with Bernoulli visible units; sample it with "
            "gibbs, which assumes no structure"
        )
    return model, energy.params


class HMCGibbs(Sampler):
    """Gibbs within HMC's sampler value (:func:`hmc_gibbs`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _hmc_gibbs_chain(target, **self.options)


def _hmc_gibbs_chain(target, *, discrete: Sampler, continuous: Sampler) -> ChainSampler:
    logdensity_fn = target.logdensity_fn
    names = [name for name, _ in target.discrete]
    options = continuous.options
    initial_step_size = options.get("initial_step_size", options.get("step_size"))
    diagonal = options.get("is_mass_matrix_diagonal", True)
    adapt_init, adapt_update, adapt_final = window_base(diagonal, options["target_acceptance_rate"])

    def split(position):
        continuous_part = {k: v for k, v in position.items() if k not in names}
        return continuous_part, {name: position[name] for name in names}

    rbms = (
        {name: _rbm(target, name) for name in names} if discrete.name == "block_gibbs" else {}
    )

    def discrete_kernel(position, name, support):
        def conditional(value):
            return logdensity_fn({**position, name: value})

        if rbms:
            return block_gibbs_kernel.with_visible_terms(*rbms[name], conditional)
        return discrete.kernel(conditional, support, **discrete.options)

    # the structure a discrete kernel assumes (checkerboard's sublattices), checked once on
    # the first chain's start, where the values are concrete (inside the run they are traced)
    start = jax.tree.map(lambda x: x[0], target.initial_position)
    for name, support in target.discrete:
        discrete_kernel(start, name, support).init(start[name])

    def transition(rng_key, position, parameters):
        keys = jax.random.split(rng_key, len(names) + 1)
        rates, grads = [], jnp.zeros((), jnp.int32)
        for (name, support), key in zip(target.discrete, keys[:-1], strict=True):
            kernel = discrete_kernel(position, name, support)
            with structure_checked():  # checked above, on the first chain's start
                state = kernel.init(position[name])
            state, info = kernel.step(key, state)
            position = {**position, name: state.position}
            rates.append(info.acceptance_rate)
            grads += getattr(info, "num_grad_evals", 0)
        discrete_rate = jnp.mean(jnp.stack(rates)).astype(jnp.float32)
        z, values = split(position)
        if not z:  # discrete sites only
            logdensity = logdensity_fn(position)
            return position, stats(
                acceptance_rate=discrete_rate,
                logdensity=logdensity,
                grads=grads,
                finite=finite(position, logdensity),
            ) | {"discrete_acceptance_rate": discrete_rate}
        algorithm = CONTINUOUS[continuous.name](
            lambda z: logdensity_fn({**z, **values}), parameters, options
        )
        state, info = algorithm.step(keys[-1], algorithm.init(z))
        position = {**state.position, **values}
        return position, stats(
            acceptance_rate=info.acceptance_rate,
            diverging=getattr(info, "is_divergent", False),
            step_size=parameters["step_size"],
            logdensity=state.logdensity,
            grads=grads + 1 + getattr(info, "num_integration_steps", 0),
            finite=finite(state.position, state.logdensity),
        ) | {"discrete_acceptance_rate": discrete_rate}

    def warmup(rng_key, position, num_warmup):
        z, _ = split(position)
        if not z:
            state = untuned_warmup(lambda k, p: transition(k, p, {}), position, rng_key, num_warmup)
            return state, {}
        schedule = jnp.asarray(build_schedule(num_warmup), jnp.int32).reshape(-1, 2)

        def body(carry, xs):
            position, adaptation = carry
            key, stage = xs
            parameters = {
                "step_size": adaptation.step_size,
                "inverse_mass_matrix": adaptation.inverse_mass_matrix,
            }
            position, out = transition(key, position, parameters)
            acceptance = jnp.nan_to_num(out["acceptance_rate"])
            adaptation = adapt_update(
                adaptation, (stage[0], stage[1].astype(bool)), split(position)[0], acceptance
            )
            return (position, adaptation), None

        adaptation = adapt_init(z, initial_step_size)
        keys = jax.random.split(rng_key, num_warmup)
        (position, adaptation), _ = jax.lax.scan(body, (position, adaptation), (keys, schedule))
        if num_warmup:
            step_size, inverse_mass_matrix = adapt_final(adaptation)
        else:
            step_size = jnp.asarray(initial_step_size, jnp.float32)
            inverse_mass_matrix = adaptation.inverse_mass_matrix
        return position, {"step_size": step_size, "inverse_mass_matrix": inverse_mass_matrix}

    return ChainSampler(warmup, transition, lambda position: position)


def _part(name: str, value, allowed) -> Sampler:
    sampler = get_sampler(value)
    if sampler.name not in allowed:
        raise ValueError(
            f"hmc_gibbs(): {name} must be one of {list(allowed)} (a name or a sampler value), "
            f"got {sampler!r}"
        )
    return sampler


@register_sampler("hmc_gibbs")
def hmc_gibbs(*, discrete="gibbs", continuous="nuts") -> Sampler:
    """Gibbs within HMC for a NumPyro model with discrete latent sites of bits or spins beside
    continuous ones (see the module docstring): each transition sweeps every discrete site with
    ``discrete`` (``"gibbs"``, ``"checkerboard"``, ``"gibbs_with_gradients"``,
    ``"swendsen_wang"`` for an Ising model in a field, ``"block_gibbs"`` for an RBM's visible
    units, or their sampler values with options) given the rest, then moves the continuous
    sites with ``continuous`` (``"nuts"``, ``"hmc"``, ``"mala"``, or their values), tuned in
    warm-up.

    ``sample_stats`` report the continuous move's ``acceptance_rate``, ``step_size`` and
    ``diverging``, and ``discrete_acceptance_rate`` (the mean flip rate of the Metropolis-type
    discrete moves; 1 for heat-bath sweeps)."""
    discrete = _part("discrete", discrete, DISCRETE)
    continuous = _part("continuous", continuous, tuple(CONTINUOUS))
    return HMCGibbs(
        "hmc_gibbs",
        {"discrete": discrete, "continuous": continuous},
        frozenset({"mixed"}),
    )
