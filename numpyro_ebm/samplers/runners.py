"""Samplers that run as a whole rather than one Markov chain per (chain, draw): NumPyro's own
NUTS (the reference implementation) and adaptive tempered SMC."""

from __future__ import annotations

import blackjax
import jax
import jax.flatten_util
import jax.numpy as jnp

from numpyro_ebm._checks import all_finite, check_int, check_positive
from numpyro_ebm.samplers.base import DENSITY_KINDS, Sampler, check_probability, register_sampler

__all__ = ["numpyro_nuts", "tempered_smc"]


def _run_numpyro_nuts(rng_key, target, *, num_warmup, num_samples, progress, **options):
    from numpyro.infer import MCMC, NUTS

    initial_positions = target.initial_position
    # with potential_fn, NumPyro's samples are the unconstrained positions themselves
    fields = ("potential_energy", "diverging", "accept_prob", "adapt_state.step_size", "num_steps")
    num_chains = jax.tree.leaves(initial_positions)[0].shape[0]
    mcmc = MCMC(
        NUTS(potential_fn=lambda z: -target.logdensity_fn(z), **options),
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
    return Sampler("numpyro_nuts", options, DENSITY_KINDS, run=_run_numpyro_nuts)


def _reference(target, initial_positions, init_scale: float):
    """The tempered-SMC reference: log density and a sampler of particles (one run)."""
    if target.kind == "model":
        from numpyro import handlers
        from numpyro.infer import Predictive
        from numpyro.infer.util import unconstrain_fn

        from numpyro_ebm.model import logdensity_from_model

        def is_observed(site):
            return site.get("is_observed", False)

        prior_model = handlers.block(target.fn, hide_fn=is_observed)
        prior = logdensity_from_model(
            prior_model, *target.model_args, key=jax.random.key(0), **(target.model_kwargs or {})
        )
        latent = list(initial_positions)  # a model's positions are a dict of its sites

        def draw(key, num):
            values = Predictive(prior_model, num_samples=num, return_sites=latent)(
                key, *target.model_args, **(target.model_kwargs or {})
            )
            return jax.vmap(
                lambda v: unconstrain_fn(
                    prior_model, target.model_args, target.model_kwargs or {}, v
                )
            )(values)

        return prior.logdensity_fn, draw
    template = jax.tree.map(lambda x: x[0], initial_positions)

    def logdensity(x):
        flat = jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(x)])
        return jnp.sum(jax.scipy.stats.norm.logpdf(flat, scale=init_scale))

    def draw(key, num):
        leaves, treedef = jax.tree.flatten(template)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(
            treedef,
            [
                init_scale * jax.random.normal(k, (num, *jnp.shape(leaf)))
                for k, leaf in zip(keys, leaves, strict=True)
            ],
        )

    return logdensity, draw


def _run_tempered_smc(
    rng_key,
    target,
    *,
    num_warmup,
    num_samples,
    progress,
    mutation,
    step_scale,
    num_mcmc_steps,
    num_integration_steps,
    target_ess,
    init_scale,
    max_iterations,
):
    del num_warmup, progress
    initial_positions = target.initial_position
    reference_logdensity, draw = _reference(target, initial_positions, init_scale)

    def loglikelihood(x):
        return target.logdensity_fn(x) - reference_logdensity(x)

    algorithm = blackjax.mala if mutation == "mala" else blackjax.hmc

    def tuned_parameters(particles):
        flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(particles)
        variance = jnp.var(flat, axis=0)
        dim = flat.shape[1]
        if mutation == "mala":
            parameters = {"step_size": step_scale * 1.36 * jnp.mean(variance) / dim ** (1 / 3)}
        else:
            parameters = {
                "step_size": step_scale * dim**-0.25,
                "inverse_mass_matrix": variance,
                "num_integration_steps": num_integration_steps,
            }
        return blackjax.smc.extend_params(parameters)

    def one_run(key):
        init_key, run_key = jax.random.split(key)
        particles = draw(init_key, num_samples)
        smc = blackjax.inner_kernel_tuning(
            smc_algorithm=blackjax.adaptive_tempered_smc,
            logprior_fn=reference_logdensity,
            loglikelihood_fn=loglikelihood,
            mcmc_step_fn=algorithm.build_kernel(),
            mcmc_init_fn=algorithm.init,
            resampling_fn=blackjax.smc.resampling.systematic,
            mcmc_parameter_update_fn=lambda key, state, info: tuned_parameters(state.particles),
            initial_parameter_value=tuned_parameters(particles),
            num_mcmc_steps=num_mcmc_steps,
            target_ess=target_ess,
        )
        state = smc.init(particles)

        def cond(carry):
            state, _, _, i = carry
            return (state.sampler_state.tempering_param < 1.0) & (i < max_iterations)

        def body(carry):
            state, log_z, key, i = carry
            key, subkey = jax.random.split(key)
            state, info = smc.step(subkey, state)
            return state, log_z + info.log_likelihood_increment, key, i + 1

        state, log_z, key, steps = jax.lax.while_loop(
            cond, body, (state, jnp.zeros(()), run_key, jnp.asarray(0))
        )
        # BlackJAX reweights after mutating: the final particles are weighted, so resample
        # them to equally weighted draws.
        final = state.sampler_state
        index = blackjax.smc.resampling.systematic(key, final.weights, num_samples)
        return jax.tree.map(lambda x: x[index], final.particles), log_z, steps

    num_chains = jax.tree.leaves(initial_positions)[0].shape[0]
    particles, log_z, steps = jax.jit(jax.vmap(one_run))(jax.random.split(rng_key, num_chains))
    potential = -jax.vmap(jax.vmap(target.logdensity_fn))(particles)
    finite = jax.vmap(jax.vmap(all_finite))(particles) & jnp.isfinite(potential)
    per_draw = jnp.ones((num_chains, num_samples))
    cost = steps * num_mcmc_steps * (num_integration_steps if mutation == "hmc" else 1)
    stats = {
        "acceptance_rate": per_draw * jnp.nan,
        "diverging": per_draw < 0,
        "step_size": per_draw * jnp.nan,  # tuned per tempering step, not per draw
        "potential_energy": potential,
        "num_grad_evals": (per_draw * cost[:, None]).astype(jnp.int32),
        "nonfinite": ~finite,
        "log_normalizer": per_draw * log_z[:, None],
        "num_tempering_steps": (per_draw * steps[:, None]).astype(jnp.int32),
    }
    log_z = jnp.asarray(log_z, jnp.float64) if jax.config.jax_enable_x64 else log_z
    runs = log_z.shape[0]
    attrs = {
        "log_normalizer": float(jax.nn.logsumexp(log_z) - jnp.log(runs)),
        "log_normalizer_mcse": float(jnp.std(log_z, ddof=1) / jnp.sqrt(runs))
        if runs > 1
        else float("nan"),
        "did_not_reach_target": int(jnp.sum(steps >= max_iterations)),
    }
    return particles, stats, attrs


@register_sampler("tempered_smc")
def tempered_smc(
    *,
    mutation: str = "hmc",
    step_scale: float = 1.0,
    num_mcmc_steps: int = 10,
    num_integration_steps: int = 10,
    target_ess: float = 0.5,
    init_scale: float = 3.0,
    max_iterations: int = 1000,
) -> Sampler:
    r"""Adaptive tempered SMC (Del Moral, Doucet & Jasra 2006; BlackJAX's
    ``adaptive_tempered_smc``) from a reference :math:`\pi_0` to the target :math:`p`
    through :math:`\pi_\lambda \propto \pi_0^{1-\lambda} p^\lambda`, each :math:`\lambda` chosen
    so that the effective sample size is ``target_ess`` of the particles (Jasra et al. 2011).

    The reference is the model's prior (observed sites blocked) for a model, and
    :math:`\mathcal{N}(0, \text{init\_scale}^2 I)` for an energy. After each reweighting and
    resampling, every particle takes ``num_mcmc_steps`` MALA or HMC steps on
    :math:`\pi_\lambda`, tuned to the current particles (BlackJAX's ``inner_kernel_tuning``):
    MALA's step is :math:`h = 1.36\, s\, \bar\sigma^2 / d^{1/3}` (the optimal scaling of
    Roberts & Rosenthal 1998, with :math:`\bar\sigma^2` the mean particle variance and
    :math:`s` = ``step_scale``), HMC's inverse mass matrix is the particles' per-coordinate
    variance with step :math:`s\, d^{-1/4}`. A fixed step would be
    wrong for most of the path, whose scale shrinks from the reference's to the target's. HMC (the
    default) is the robust choice for correlated targets; MALA is cheaper per step.

    Each chain is one independent SMC run with ``num_samples`` particles; the draws are its
    particles after the final resampling. The log normalizing constant
    :math:`\log Z = \sum_t \log \frac{1}{N}\sum_i w_t^{(i)}` (unbiased for :math:`Z`) is
    reported per run (``log_normalizer``) and combined over runs: ``attrs["log_normalizer"]``
    is :math:`\log` of the mean of the runs' :math:`Z` and ``attrs["log_normalizer_mcse"]``
    the standard deviation of the runs' :math:`\log Z` over :math:`\sqrt{\text{runs}}`. For an
    energy :math:`Z = \int e^{-E(x)/T} dx`; for a model, the marginal likelihood.
    """
    if mutation not in ("mala", "hmc"):
        raise ValueError(f"mutation must be 'mala' or 'hmc', got {mutation!r}")
    check_positive("step_scale", step_scale)
    check_int("num_mcmc_steps", num_mcmc_steps)
    check_int("num_integration_steps", num_integration_steps)
    check_probability("target_ess", target_ess)
    check_positive("init_scale", init_scale)
    check_int("max_iterations", max_iterations)
    options = dict(
        mutation=mutation,
        step_scale=step_scale,
        num_mcmc_steps=num_mcmc_steps,
        num_integration_steps=num_integration_steps,
        target_ess=target_ess,
        init_scale=init_scale,
        max_iterations=max_iterations,
    )
    return Sampler("tempered_smc", options, DENSITY_KINDS, run=_run_tempered_smc)
