"""Samplers that run as a whole rather than one Markov chain per (chain, draw): NumPyro's own
NUTS (the reference implementation) and adaptive tempered SMC."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from numpyro_ebm._checks import all_finite, check_int, check_probability
from numpyro_ebm.evidence import smc
from numpyro_ebm.evidence.references import GaussianMixture
from numpyro_ebm.samplers.base import DENSITY_KINDS, Sampler, register_sampler

__all__ = ["NumPyroNUTS", "TemperedSMC", "numpyro_nuts", "tempered_smc"]


class NumPyroNUTS(Sampler):
    """NumPyro's NUTS, run as a whole (:func:`numpyro_nuts`)."""

    def run(self, rng_key, target, *, num_warmup, num_samples, progress):
        from numpyro.infer import MCMC, NUTS

        initial_positions = target.initial_position
        # with potential_fn, NumPyro's samples are the unconstrained positions themselves
        fields = (
            "potential_energy",
            "diverging",
            "accept_prob",
            "adapt_state.step_size",
            "num_steps",
        )
        num_chains = jax.tree.leaves(initial_positions)[0].shape[0]
        mcmc = MCMC(
            NUTS(potential_fn=lambda z: -target.logdensity_fn(z), **self.options),
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=progress,
        )
        mcmc.run(rng_key, init_params=initial_positions, extra_fields=fields)
        extra = mcmc.get_extra_fields(group_by_chain=True)
        positions = mcmc.get_samples(group_by_chain=True)
        stats = {
            "acceptance_rate": extra["accept_prob"],
            "diverging": extra["diverging"],
            "step_size": extra["adapt_state.step_size"],
            "potential_energy": extra["potential_energy"],
            "num_grad_evals": extra["num_steps"],
            "nonfinite": ~jax.vmap(jax.vmap(all_finite))(positions)
            | ~jnp.isfinite(extra["potential_energy"]),
        }
        return positions, stats, {}


@register_sampler("numpyro_nuts")
def numpyro_nuts(*, target_accept_prob: float = 0.8, max_tree_depth: int = 10) -> Sampler:
    """NumPyro's own NUTS (``numpyro.infer.MCMC``, vectorized chains) on the same unconstrained
    potential :math:`-\\log p` that the BlackJAX samplers see: the reference implementation."""
    check_probability("target_accept_prob", target_accept_prob)
    check_int("max_tree_depth", max_tree_depth)
    options = {"target_accept_prob": target_accept_prob, "max_tree_depth": max_tree_depth}
    return NumPyroNUTS("numpyro_nuts", options, DENSITY_KINDS)


@dataclass(frozen=True)
class _KeyedDensity:
    """A target's log density that compares and hashes by the target's ``cache_key``, so the
    SMC programs compiled for one target (jitted on the function) serve an equal one."""

    cache_key: Any
    logdensity_fn: Callable = field(compare=False)

    def __call__(self, position):
        return self.logdensity_fn(position)


class TemperedSMC(Sampler):
    """Tempered SMC, run as a whole (:func:`tempered_smc`)."""

    def run(self, rng_key, target, *, num_warmup, num_samples, progress):
        del num_warmup, progress
        num_chains = target.num_chains
        logdensity_fn = target.logdensity_fn
        if target.cache_key is not None:
            logdensity_fn = _KeyedDensity(target.cache_key, logdensity_fn)
        result = smc.smc(
            rng_key,
            logdensity_fn,
            jax.tree.map(lambda x: x[0], target.initial_position),
            num_particles=num_samples,
            num_runs=num_chains,
            **self.options,
        )
        particles = result.particles
        potential = -jax.vmap(jax.vmap(target.logdensity_fn))(particles)
        finite = jax.vmap(jax.vmap(all_finite))(particles) & jnp.isfinite(potential)
        per_draw = jnp.ones((num_chains, num_samples))
        stats = {
            "acceptance_rate": per_draw * jnp.nan,
            "diverging": per_draw < 0,
            "step_size": per_draw * jnp.nan,  # tuned per tempering step, not per draw
            "potential_energy": potential,
            "num_grad_evals": (
                per_draw * result.num_grad_evals / (num_chains * num_samples)
            ).astype(jnp.int32),
            "nonfinite": ~finite,
            "log_normalizer": per_draw * result.log_normalizer_per_run[:, None],
            "num_tempering_steps": (per_draw * result.num_tempering_steps[:, None]).astype(
                jnp.int32
            ),
            "num_mcmc_steps": (per_draw * result.num_mcmc_steps[:, None]).astype(jnp.int32),
        }
        attrs = {
            "log_normalizer": float(result.log_normalizer),
            "log_normalizer_mcse": float(result.standard_error),
            "did_not_reach_target": int(jnp.sum(~result.reached_target)),
            "scale_consistent": int(result.scale_consistent),
            "evidence_ok": int(result.ok),
        }
        if isinstance(result.reference, GaussianMixture):
            # less the broad one
            attrs["reference_modes"] = int(result.reference.means.shape[0]) - 1
        return particles, stats, attrs


@register_sampler("tempered_smc")
def tempered_smc(**options) -> Sampler:
    r"""Adaptive tempered SMC (Del Moral, Doucet & Jasra 2006; BlackJAX's
    ``adaptive_tempered_smc``) from a reference :math:`\pi_0` to the target :math:`p`
    through :math:`\pi_\lambda \propto \pi_0^{1-\lambda} p^\lambda`, each :math:`\lambda`
    chosen so that the effective sample size is ``target_ess`` of the particles, with HMC or
    MALA mutations tuned to the particles (:func:`numpyro_ebm.evidence.smc.smc`, where
    the details are). The options are those of
    :class:`~numpyro_ebm.evidence.smc.SMCOptions`, with its defaults and checks.

    The default reference is a defensive mixture of Laplace fits at the modes that L-BFGS
    finds from ``num_starts`` starts around the first chain's initial position
    (:func:`~numpyro_ebm.evidence.references.laplace_mixture`), so that every mode found starts
    with particles; ``sample_stats.attrs["reference_modes"]`` says how many. It needs no
    prior sampling, so a model whose prior is an :class:`~numpyro_ebm.EnergyDistribution`
    works. Each chain is one independent run with ``num_samples`` particles, equally weighted
    after a final resampling and **shuffled**: the draws of a chain are exchangeable, so its
    R-hat and ESS compare the runs with one another instead of reading the order in which
    resampling left the particles. The log normalizing constant (for a model, the log
    evidence) is combined over runs: ``sample_stats.attrs["log_normalizer"]`` is :math:`\log`
    of the mean of the runs' unbiased :math:`\hat Z_r` and ``"log_normalizer_mcse"`` its
    delta-method standard error (use 8 or more chains); ``"evidence_ok"`` is 0, with a
    ``RuntimeWarning``, for a target that is improper or runs off (non-finite weights, the
    tempering not reaching 1 in ``max_iterations``, log Z depending on the reference's scale).
    """
    options = smc.SMCOptions(**options).checked()  # unknown names: refused by the registry
    return TemperedSMC(
        "tempered_smc",
        options._asdict(),
        DENSITY_KINDS,
        refine=lambda s: s.replace(
            step_scale=s.options["step_scale"] / 2,
            num_mcmc_steps=2 * s.options["num_mcmc_steps"],
            max_mcmc_steps=2 * s.options["max_mcmc_steps"],
        ),
    )


# the options and their defaults are SMCOptions' fields, read from there (one list) so that
# help(), the command line and unknown-option errors see them by name
tempered_smc.__signature__ = inspect.Signature(
    [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, default in smc.SMCOptions._field_defaults.items()
    ],
    return_annotation=Sampler,
)
