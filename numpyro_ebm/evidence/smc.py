r"""Log normalizing constants by adaptive tempered SMC over independent runs.

Adaptive tempered SMC (Del Moral, Doucet & Jasra 2006; Jasra, Stephens, Doucet & Tsagaris
2011; BlackJAX's ``adaptive_tempered_smc`` with ``inner_kernel_tuning``) moves particles from a
normalized reference :math:`\pi_0` to the target :math:`f` through
:math:`\pi_\lambda \propto \pi_0^{1-\lambda} f^\lambda`, each :math:`\lambda` chosen so that
the effective sample size of the incremental weights is ``target_ess`` of the particles, and
estimates

.. math::

    \hat Z = \prod_t \frac1N \sum_i w_t^{(i)}, \qquad \mathbb{E}[\hat Z] = Z = \int f.

The reference needs no prior sampling: by default it is the Laplace approximation at the mode
of :math:`f` (:func:`numpyro_ebm.evidence.ais.laplace`), so a model whose prior is an
``EnergyDistribution`` works. :func:`tempered_smc` is the engine that the ``tempered_smc``
sampler calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from numpyro_ebm._checks import check_finite_array, check_int, check_positive
from numpyro_ebm.evidence.ais import (
    Gaussian,
    check_gaussian,
    check_mutation,
    grad_evals_per_step,
    laplace,
    log_mean_exp,
    tuned_parameters,
)

__all__ = ["SMCEvidence", "model_smc", "tempered_smc"]

#: the reference scale of the check runs, relative to the others
SCALE_CHECK_FACTOR = 2.0
#: runs' halves whose log Z differ by more than this many standard errors are inconsistent
SCALE_CHECK_Z = 5.0
#: ... or whose final particles' spread (standard deviation) differs by more than this factor
SCALE_CHECK_SPREAD = 1.5


class SMCEvidence(NamedTuple):
    r"""What :func:`tempered_smc` returns.

    Attributes
    ----------
    log_normalizer
        :math:`\log` of the mean of the runs' :math:`\hat Z_r` (each unbiased for :math:`Z`).
    standard_error
        Delta-method standard error of ``log_normalizer`` from the runs' :math:`\hat Z_r`
        (:func:`~numpyro_ebm.evidence.ais.log_mean_exp`).
    log_normalizer_per_run
        :math:`\log \hat Z_r`, shape ``(runs,)``.
    particles
        Equally weighted draws after a final systematic resampling, ``(runs, N, ...)`` with
        the structure of ``position``.
    num_tempering_steps
        Per run.
    num_grad_evals
        All runs and particles together (the mutation kernel's initialization included).
    reached_target
        Per run: whether :math:`\lambda` reached 1 within ``max_iterations``.
    is_finite
        Whether every run's :math:`\log \hat Z_r` and particles are finite.
    scale_consistent
        Whether the runs with a reference scale multiplied by ``SCALE_CHECK_FACTOR`` agree with
        the others (``True`` when the check did not run): for a proper target both halves
        estimate the same :math:`Z` and end with particles of the same spread; for an
        improper one :math:`\log \hat Z` or the spread grows with the reference's scale.
    ok
        All of the above: when ``False`` a ``RuntimeWarning`` said why, and
        ``log_normalizer`` is not an estimate of a finite :math:`\log Z`.
    """

    log_normalizer: jax.Array
    standard_error: jax.Array
    log_normalizer_per_run: jax.Array
    particles: jax.Array
    num_tempering_steps: jax.Array
    num_grad_evals: jax.Array
    reached_target: jax.Array
    is_finite: jax.Array
    scale_consistent: bool
    ok: bool


class _Options(NamedTuple):
    """Static options of one compiled SMC program."""

    num_particles: int
    mutation: str
    step_scale: float
    num_mcmc_steps: int
    num_integration_steps: int
    target_ess: float
    max_iterations: int


def _structure(position) -> tuple:
    """A hashable description of a position pytree: its treedef and leaves' shapes/dtypes."""
    leaves, treedef = jax.tree.flatten(position)
    return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _unravel(structure) -> Callable:
    treedef, leaves = structure
    template = treedef.unflatten([jnp.zeros(shape, dtype) for shape, dtype in leaves])
    return ravel_pytree(template)[1]


def _on_vectors(logdensity_fn, functions, structure):
    """The target and a reference pair as functions of raveled vectors."""
    if structure is None:
        return logdensity_fn, functions
    unravel = _unravel(structure)

    def logdensity_flat(z):
        return logdensity_fn(unravel(z))

    if functions is None:
        return logdensity_flat, None
    logdensity, draw = functions

    def draw_flat(key, num):
        return jax.vmap(lambda p: ravel_pytree(p)[0])(draw(key, num))

    return logdensity_flat, (lambda z: logdensity(unravel(z)), draw_flat)


def _one_run(key, scale_factor, gaussian, logdensity_fn, functions, options: _Options):
    """One SMC run on vectors: (particles, log Z, steps)."""
    if functions is None:
        reference = gaussian.scaled(scale_factor)
        reference_logdensity, draw = reference.logdensity, reference.sample
    else:
        reference_logdensity, draw = functions

    def loglikelihood(x):
        return logdensity_fn(x) - reference_logdensity(x)

    algorithm = blackjax.mala if options.mutation == "mala" else blackjax.hmc

    def parameters(particles):
        return blackjax.smc.extend_params(
            tuned_parameters(
                particles, options.mutation, options.step_scale, options.num_integration_steps
            )
        )

    init_key, run_key, final_key = jax.random.split(key, 3)
    particles = draw(init_key, options.num_particles)
    smc = blackjax.inner_kernel_tuning(
        smc_algorithm=blackjax.adaptive_tempered_smc,
        logprior_fn=reference_logdensity,
        loglikelihood_fn=loglikelihood,
        mcmc_step_fn=algorithm.build_kernel(),
        mcmc_init_fn=algorithm.init,
        resampling_fn=blackjax.smc.resampling.systematic,
        mcmc_parameter_update_fn=lambda key, state, info: parameters(state.particles),
        initial_parameter_value=parameters(particles),
        num_mcmc_steps=options.num_mcmc_steps,
        target_ess=options.target_ess,
    )

    def running(carry):
        state, log_z, _, i = carry
        return (
            (state.sampler_state.tempering_param < 1.0)
            & (i < options.max_iterations)
            & jnp.isfinite(log_z)
        )

    def step(carry):
        state, log_z, key, i = carry
        key, subkey = jax.random.split(key)
        state, info = smc.step(subkey, state)
        return state, log_z + info.log_likelihood_increment, key, i + 1

    state, log_z, _, steps = jax.lax.while_loop(
        running, step, (smc.init(particles), jnp.zeros(()), run_key, jnp.asarray(0))
    )
    final = state.sampler_state
    index = blackjax.smc.resampling.systematic(final_key, final.weights, options.num_particles)
    reached = final.tempering_param >= 1.0
    return final.particles[index], log_z, steps, reached


@partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _runs(keys, scale_factors, gaussian, logdensity_fn, functions, structure, options):
    logdensity_fn, functions = _on_vectors(logdensity_fn, functions, structure)
    return jax.vmap(
        lambda key, factor: _one_run(key, factor, gaussian, logdensity_fn, functions, options)
    )(keys, scale_factors)


def _reference(reference, logdensity_fn, flat, structure, init_scale, laplace_steps):
    """(Gaussian | None, functions | None, problem | None); a Gaussian is on raveled
    vectors."""
    if reference is None:
        if flat is None:
            raise ValueError("position is required when reference is None (the Laplace fit)")
        logdensity_flat, _ = _on_vectors(logdensity_fn, None, structure)
        gaussian, valid = laplace(logdensity_flat, flat, num_steps=laplace_steps)
        if valid:
            return gaussian.scaled(init_scale), None, None
        fallback = Gaussian(gaussian.mean, init_scale * jnp.ones_like(flat))
        return (
            fallback,
            None,
            "the Laplace fit failed (no finite mode with a negative-definite "
            f"Hessian); the reference is N(mode, {init_scale}^2 I) instead",
        )
    if isinstance(reference, Gaussian):
        return check_gaussian("reference", reference).scaled(init_scale), None, None
    if isinstance(reference, tuple) and len(reference) == 2 and all(map(callable, reference)):
        return None, reference, None
    raise TypeError(
        "reference must be None (Laplace), a Gaussian(mean, scale) or a pair (logdensity_fn, "
        f"draw_fn) with draw_fn(rng_key, num) -> num draws, got {reference!r}"
    )


def tempered_smc(
    rng_key: jax.Array,
    logdensity_fn: Callable,
    position=None,
    *,
    reference=None,
    num_particles: int = 256,
    num_runs: int = 8,
    mutation: str = "hmc",
    step_scale: float = 1.0,
    num_mcmc_steps: int = 5,
    num_integration_steps: int = 5,
    target_ess: float = 0.5,
    max_iterations: int = 500,
    init_scale: float = 1.0,
    laplace_steps: int = 200,
    scale_check: bool = True,
) -> SMCEvidence:
    r""":math:`\log Z = \log \int f` by adaptive tempered SMC, over independent runs.

    Parameters
    ----------
    rng_key
        PRNG key.
    logdensity_fn
        :math:`\log f` of one position (an array or a pytree), unnormalized.
    position
        A position: the start of the Laplace fit (``reference=None``) and the structure of
        the particles.
    reference
        ``None``: :math:`\mathcal{N}(\hat x, (c L)(c L)^\top)` with :math:`\hat x, LL^\top` the
        Laplace fit and :math:`c` = ``init_scale`` (if the fit fails, a ``RuntimeWarning``
        and :math:`\mathcal{N}(\hat x, c^2 I)`). A :class:`~numpyro_ebm.evidence.ais.Gaussian`
        on the raveled position (its scale multiplied by ``init_scale``), or a pair
        ``(logdensity_fn, draw_fn)`` of a normalized density and ``draw_fn(rng_key, num)``.
    num_particles, num_runs
        Particles per run; independent runs (vmapped). The error bar needs several runs.
    mutation, step_scale, num_mcmc_steps, num_integration_steps
        ``"hmc"`` or ``"mala"``, tuned at each temperature to the particles
        (:func:`~numpyro_ebm.evidence.ais.tuned_parameters`); steps per temperature; leapfrog
        steps of HMC.
    target_ess
        Fraction of the particles' ESS kept by each tempering increment, in (0, 1).
    max_iterations
        Tempering steps allowed per run.
    init_scale
        Multiplies the Gaussian reference's scale (this SMC's own option).
    scale_check
        With a Gaussian reference and at least two runs, the second half of the runs uses a
        reference ``SCALE_CHECK_FACTOR`` times wider. Every run still estimates :math:`Z`
        without bias, so all are combined; the halves disagreeing (log Z by more than
        ``SCALE_CHECK_Z`` standard errors, or the final particles' standard deviation by more
        than a factor ``SCALE_CHECK_SPREAD`` in some coordinate) flags an improper target.

    Returns
    -------
    SMCEvidence

    Notes
    -----
    Each run's :math:`\hat Z_r` is unbiased; :math:`\log \frac1R \sum_r \hat Z_r` is the
    estimate, and its standard error is the delta method's,
    :math:`\mathrm{sd}(\hat Z_r) / (\sqrt R\, \bar Z)`. The standard deviation of the runs'
    :math:`\log \hat Z_r` over :math:`\sqrt R` is the error of a different estimator (the
    mean of the logs, biased low by about half the variance); when the :math:`\log\hat Z_r`
    are skewed (a few lucky runs carry :math:`\bar Z`) it under-covers the log-mean-exp
    estimate, and with 4 runs its own estimate of the spread has 3 degrees of freedom, so
    "3 standard errors" covers only about 94 % of the time (Student's :math:`t_3`) even
    without skew. Hence 8 runs by default and the delta method on :math:`Z`.

    A target that is improper or runs off (non-finite :math:`\log \hat Z_r` or particles,
    :math:`\lambda` not reaching 1 within ``max_iterations``, :math:`\log \hat Z` depending
    on the reference's scale) is reported by ``ok=False`` and a ``RuntimeWarning``.
    """
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {logdensity_fn!r}")
    check_int("num_particles", num_particles, minimum=2)
    check_int("num_runs", num_runs)
    check_mutation(mutation, step_scale, num_mcmc_steps, num_integration_steps)
    check_int("max_iterations", max_iterations)
    check_int("laplace_steps", laplace_steps)
    check_positive("init_scale", init_scale)
    if not 0.0 < float(target_ess) < 1.0:
        raise ValueError(f"target_ess must lie in (0, 1), got {target_ess!r}")
    flat, unravel, structure = None, None, None
    if position is not None:
        flat, unravel = ravel_pytree(position)
        flat = jnp.asarray(flat, jnp.result_type(float))
        check_finite_array("position", flat)
        structure = _structure(position)
    gaussian, functions, problem = _reference(
        reference, logdensity_fn, flat, structure, init_scale, laplace_steps
    )
    problems = [] if problem is None else [problem]
    check_runs = scale_check and gaussian is not None and num_runs >= 2
    factors = jnp.where(
        jnp.arange(num_runs) >= (num_runs + 1) // 2 if check_runs else False,
        SCALE_CHECK_FACTOR,
        1.0,
    )
    options = _Options(
        num_particles,
        mutation,
        float(step_scale),
        num_mcmc_steps,
        num_integration_steps,
        float(target_ess),
        max_iterations,
    )
    particles, log_z, steps, reached = _runs(
        jax.random.split(rng_key, num_runs),
        factors,
        gaussian,
        logdensity_fn,
        functions,
        structure,
        options,
    )
    log_normalizer, standard_error = log_mean_exp(log_z)
    per_step = grad_evals_per_step(mutation, num_integration_steps)
    grads = jnp.sum(steps) * num_particles * (1 + num_mcmc_steps * per_step)
    finite = bool(jnp.all(jnp.isfinite(log_z)) & jnp.all(jnp.isfinite(particles)))
    consistent = True
    if check_runs and finite:
        half = (num_runs + 1) // 2
        z_narrow, se_narrow = log_mean_exp(log_z[:half])
        z_wide, se_wide = log_mean_exp(log_z[half:])
        spread = jnp.sqrt(jnp.nan_to_num(se_narrow) ** 2 + jnp.nan_to_num(se_wide) ** 2)
        sd_ratio = jnp.sqrt(
            jnp.var(particles[half:], axis=(0, 1)) / jnp.var(particles[:half], axis=(0, 1))
        )
        worst = float(jnp.max(jnp.abs(jnp.log(sd_ratio))))
        same_z = bool(jnp.abs(z_wide - z_narrow) <= SCALE_CHECK_Z * spread + 1e-3)
        consistent = same_z and worst <= float(jnp.log(SCALE_CHECK_SPREAD))
        if not consistent:
            problems.append(
                f"the runs depend on the reference's scale (log Z {float(z_narrow):.4g} and "
                f"particles' spread x1 at scale x1; log Z {float(z_wide):.4g} and spread "
                f"x{float(jnp.exp(worst)):.3g} at x{SCALE_CHECK_FACTOR}): the target looks "
                "improper, or the narrower reference misses part of it"
            )
    if not finite:
        problems.append("non-finite log Z or particles: the target is improper or runs off")
    if not bool(jnp.all(reached)):
        problems.append(
            f"{int(jnp.sum(~reached))} of {num_runs} runs did not reach the target within "
            f"max_iterations={max_iterations} tempering steps"
        )
    if problems:
        warnings.warn("tempered_smc: " + "; ".join(problems), RuntimeWarning, stacklevel=2)
    if unravel is not None:
        particles = jax.vmap(jax.vmap(unravel))(particles)
    return SMCEvidence(
        log_normalizer=log_normalizer,
        standard_error=standard_error,
        log_normalizer_per_run=log_z,
        particles=particles,
        num_tempering_steps=steps,
        num_grad_evals=grads,
        reached_target=reached,
        is_finite=jnp.asarray(finite),
        scale_consistent=consistent,
        ok=not problems,
    )


def model_smc(
    rng_key: jax.Array,
    model: Callable,
    *model_args,
    model_kwargs: dict | None = None,
    **options,
) -> SMCEvidence:
    r"""The evidence :math:`p(y) = \int p(y, z)\,dz` of a NumPyro model by :func:`tempered_smc`
    on the unconstrained space (:func:`numpyro_ebm.logdensity_from_model`). The reference
    defaults to the Laplace fit of the log joint, so nothing is drawn from the prior and a
    prior that is an ``EnergyDistribution`` works. ``options`` go to :func:`tempered_smc`;
    the particles are dicts of unconstrained sites.
    """
    from numpyro_ebm.model import logdensity_from_model

    init_key, run_key = jax.random.split(rng_key)
    density = logdensity_from_model(model, *model_args, key=init_key, **(model_kwargs or {}))
    return tempered_smc(run_key, density.logdensity_fn, density.initial_position, **options)
