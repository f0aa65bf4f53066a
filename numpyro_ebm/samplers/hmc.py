"""BlackJAX's HMC and NUTS with Stan's window adaptation."""

from __future__ import annotations

import blackjax
import jax
import jax.flatten_util
import jax.numpy as jnp
from blackjax.adaptation.base import get_filter_adapt_info_fn

from numpyro_ebm._checks import check_int, check_positive, check_probability
from numpyro_ebm.samplers.base import (
    DENSITY_KINDS,
    ChainSampler,
    Sampler,
    finite,
    register_sampler,
    stats,
)

__all__ = ["HMCFamily", "hmc", "nuts"]


def _hmc_family(
    target,
    *,
    algorithm,
    target_acceptance_rate,
    is_mass_matrix_diagonal,
    initial_step_size,
    **algorithm_options,
) -> ChainSampler:
    logdensity_fn = target.logdensity_fn

    def warmup(rng_key, position, num_warmup):
        if num_warmup == 0:  # no tuning: the initial step size and a unit mass matrix
            dim = jax.flatten_util.ravel_pytree(position)[0].shape[0]
            eye = jnp.ones(dim) if is_mass_matrix_diagonal else jnp.eye(dim)
            state = algorithm.init(position, logdensity_fn)
            return state, {"step_size": jnp.asarray(initial_step_size), "inverse_mass_matrix": eye}
        adaptation = blackjax.window_adaptation(
            algorithm,
            logdensity_fn,
            is_mass_matrix_diagonal=is_mass_matrix_diagonal,
            initial_step_size=initial_step_size,
            target_acceptance_rate=target_acceptance_rate,
            adaptation_info_fn=get_filter_adapt_info_fn(),  # keep no per-step warmup info
            **algorithm_options,
        )
        (state, parameters), _ = adaptation.run(rng_key, position, num_steps=num_warmup)
        # keep the tuned values only; static options stay closed over
        return state, {k: parameters[k] for k in ("step_size", "inverse_mass_matrix")}

    def step(rng_key, state, parameters):
        kernel = algorithm(logdensity_fn, **algorithm_options, **parameters)
        state, info = kernel.step(rng_key, state)
        return state, hmc_stats(state, info, parameters["step_size"])

    return ChainSampler(warmup, step, lambda state: state.position)


def hmc_stats(state, info, step_size) -> dict:
    """The statistics of one HMC-type transition (BlackJAX's HMC, NUTS, dynamic HMC), with
    the Hamiltonian as ``energy`` (for the BFMI)."""
    out = stats(
        acceptance_rate=info.acceptance_rate,
        diverging=info.is_divergent,
        step_size=step_size,
        logdensity=state.logdensity,
        grads=info.num_integration_steps,
        finite=finite(state.position, state.logdensity),
    )
    out["energy"] = info.energy.astype(out["potential_energy"].dtype)
    return out


class HMCFamily(Sampler):
    """BlackJAX's HMC or NUTS (by its name) tuned by Stan's window adaptation (:func:`hmc`,
    :func:`nuts`)."""

    def chain_sampler(self, target) -> ChainSampler:
        algorithm = {"hmc": blackjax.hmc, "nuts": blackjax.nuts}[self.name]
        return _hmc_family(target, algorithm=algorithm, **self.options)


def _hmc_family_sampler(name: str, options: dict) -> HMCFamily:
    """The sampler ``name`` of the HMC family (:class:`HMCFamily`), with the options of its
    factory (in the order of its signature, which its repr keeps), checked here."""
    check_probability("target_acceptance_rate", options["target_acceptance_rate"])
    diagonal = options["is_mass_matrix_diagonal"]
    if not isinstance(diagonal, bool):
        raise TypeError(f"is_mass_matrix_diagonal must be True or False, got {diagonal!r}")
    check_positive("initial_step_size", options["initial_step_size"])
    for trajectory in ("max_num_doublings", "num_integration_steps"):
        if trajectory in options:
            check_int(trajectory, options[trajectory])
    return HMCFamily(name, options, DENSITY_KINDS)


@register_sampler("nuts")
def nuts(
    *,
    target_acceptance_rate: float = 0.8,
    is_mass_matrix_diagonal: bool = True,
    initial_step_size: float = 1.0,
    max_num_doublings: int = 10,
) -> Sampler:
    """BlackJAX NUTS (Hoffman & Gelman 2014, multinomial variant of Betancourt 2017) with
    Stan's window adaptation of the leapfrog step size (dual averaging towards
    ``target_acceptance_rate``) and of a diagonal (or, with ``is_mass_matrix_diagonal=False``,
    dense) mass matrix. Trajectories stop after at most ``max_num_doublings`` doublings. The
    per-draw Hamiltonian is reported as ``energy`` (for the BFMI, Betancourt 2016)."""
    options = dict(locals())  # the arguments, nothing else yet
    return _hmc_family_sampler("nuts", options)


@register_sampler("hmc")
def hmc(
    *,
    num_integration_steps: int = 16,
    target_acceptance_rate: float = 0.8,
    is_mass_matrix_diagonal: bool = True,
    initial_step_size: float = 1.0,
) -> Sampler:
    """BlackJAX HMC (Duane et al. 1987; Neal 2011) with ``num_integration_steps`` leapfrog
    steps and Stan's window adaptation, as :func:`nuts`."""
    options = dict(locals())  # the arguments, nothing else yet
    return _hmc_family_sampler("hmc", options)
