r"""Log normalizing constants by adaptive tempered SMC over independent runs.

Adaptive tempered SMC (Del Moral, Doucet & Jasra 2006; Jasra, Stephens, Doucet & Tsagaris
2011; BlackJAX's ``adaptive_tempered_smc``, retuned at every step) moves particles from a
normalized reference :math:`\pi_0` to the target :math:`f` through
:math:`\pi_\lambda \propto \pi_0^{1-\lambda} f^\lambda`, each :math:`\lambda` chosen so that
the effective sample size of the incremental weights is ``target_ess`` of the particles, and
estimates

.. math::

    \hat Z = \prod_t \frac1N \sum_i w_t^{(i)}, \qquad \mathbb{E}[\hat Z] = Z = \int f.

**The reference covers every mode it can find.** The MCMC moves at one temperature rarely cross
a barrier between separated modes, so mass moves between modes only by reweighting and
resampling: a mode that holds no particles when its share of :math:`\pi_\lambda` grows is lost,
with its share of :math:`Z` (the torpid mixing of tempering on multimodal targets: Woodard,
Schmidler & Huber 2009). A Laplace fit at one mode of a mixture is the extreme case. The
default reference is therefore a *defensive Laplace mixture*
(:func:`~numpyro_ebm.evidence.references.laplace_mixture`): L-BFGS from ``num_starts`` starts
spread around ``position``, one Gaussian (Laplace) per distinct mode found, weighted half by
its Laplace mass and half uniformly, plus a broad component that covers all of them. It is the
mixture importance sampler of Oh & Berger (1993, "Integration of multimodal functions by Monte
Carlo importance sampling", JASA 88), made defensive (Hesterberg 1995, "Weighted average
importance sampling and defensive mixture distributions", Technometrics 37): every mode found
starts with particles, the tempering corrects the weights, and the broad component bounds the
weights of a region the modes miss. The reference needs no prior sampling, so a model whose
prior is an ``EnergyDistribution`` works.

**The mutations adapt.** At each tempering step the HMC (or MALA) moves are tuned to the
particles: the mass matrix is their per-coordinate variance
(:func:`~numpyro_ebm.evidence.mutations.tuned_parameters`), the step size follows the previous
step's mean acceptance rate towards the optimal one (one Robbins-Monro step on its log:
Andrieu & Thoms 2008; 0.651 for HMC, Beskos, Pillai, Roberts, Sanz-Serna & Stuart 2013; 0.574
for MALA, Roberts & Rosenthal 1998), and the number of MCMC steps is the one that moves a
particle at least once with probability ``MOVE_PROBABILITY`` at that rate. Each depends only
on the particles before the step, so the runs stay valid adaptive SMC (Beskos, Jasra, Kantas &
Thiery 2016); the tempering increments are chosen by ESS (Jasra et al. 2011).

**The particles come back in random order.** After the final systematic resampling the
particles of a run sit in their ancestors' order, grouped by mode, so split :math:`\hat R`
and the ESS, which read a run as a chain, would measure that arbitrary order. Each run's
particles are permuted by a key-driven shuffle; the draws of a run are then exchangeable, and
:math:`\hat R` and ESS over runs measure what they can measure for independent runs: the
variation between runs (a mode missed or over-weighted by some runs) against the variation
within them. :func:`smc` is the engine that the ``tempered_smc`` sampler calls; both
take the same options (:class:`SMCOptions`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from numpyro_ebm._checks import check_finite_array, check_int, check_positive, check_probability
from numpyro_ebm.evidence import _checks
from numpyro_ebm.evidence.ais import log_mean_exp
from numpyro_ebm.evidence.mutations import check_mutation, grad_evals_per_step, tuned_parameters
from numpyro_ebm.evidence.references import (
    LAPLACE_STEPS,
    NUM_STARTS,
    Gaussian,
    check_reference,
    is_pair,
    laplace_mixture,
    on_vectors,
    position_structure,
)

__all__ = [
    "SMCEvidence",
    "SMCOptions",
    "model_smc",
    "smc",
]

#: the mutations' step size follows the acceptance rate towards the optimal one: HMC's
#: (Beskos, Pillai, Roberts, Sanz-Serna & Stuart 2013) or MALA's (Roberts & Rosenthal 1998)
OPTIMAL_ACCEPTANCE = {"hmc": 0.651, "mala": 0.574}
#: ... and the number of MCMC steps lets a particle move at least once with this probability
MOVE_PROBABILITY = 0.99


class SMCOptions(NamedTuple):
    r"""The options of tempered SMC: one list, taken by :func:`smc`,
    :func:`model_smc` and the ``tempered_smc`` sampler (``ne.samplers.tempered_smc``), whose
    defaults are these.

    Attributes
    ----------
    reference
        :math:`\pi_0`. ``None``: the defensive Laplace mixture of
        :func:`~numpyro_ebm.evidence.references.laplace_mixture`
        (if no start finds a proper mode, a ``RuntimeWarning`` and
        :math:`\mathcal{N}(\text{position}, c^2 I)`, :math:`c` = ``init_scale``). A
        :class:`~numpyro_ebm.evidence.references.Gaussian` or a
        :class:`~numpyro_ebm.evidence.references.GaussianMixture` on the
        raveled position, or a pair ``(logdensity_fn, draw_fn)`` of a normalized density and
        ``draw_fn(rng_key, num)``.
    mutation, num_integration_steps
        ``"hmc"`` or ``"mala"``, tuned at each temperature to the particles
        (:func:`~numpyro_ebm.evidence.mutations.tuned_parameters`); leapfrog steps of HMC.
    step_scale
        Multiplies the first tempering step's step size; the later ones follow the acceptance
        rate (see the module docstring).
    num_mcmc_steps, max_mcmc_steps
        The bounds of the MCMC steps per tempering step, whose number follows the acceptance
        rate; the first tempering step takes ``num_mcmc_steps``.
    target_ess
        Fraction of the particles' ESS kept by each tempering increment, in (0, 1).
    max_iterations
        Tempering steps allowed per run.
    init_scale
        Multiplies the scales of a Gaussian or mixture reference (the default's too).
    num_starts, laplace_steps
        The default reference's L-BFGS starts and steps per start.
    scale_check
        With a Gaussian or mixture reference and at least four runs (two per half, for their
        standard errors), the second half of the runs uses a reference ``SCALE_CHECK_FACTOR``
        times wider. Every run still estimates :math:`Z` without bias, so all are combined;
        the halves disagreeing (log Z by more than ``SCALE_CHECK_Z`` standard errors, or the
        final particles' standard deviation by more than a factor ``SCALE_CHECK_SPREAD`` in
        some coordinate) flags an improper target or a reference that misses part of it (the
        check of :mod:`numpyro_ebm.evidence._checks`, which AIS runs too).
    """

    reference: Any = None
    mutation: str = "hmc"
    step_scale: float = 1.0
    num_mcmc_steps: int = 5
    max_mcmc_steps: int = 50
    num_integration_steps: int = 5
    target_ess: float = 0.5
    max_iterations: int = 500
    init_scale: float = 1.0
    num_starts: int = NUM_STARTS
    laplace_steps: int = LAPLACE_STEPS
    scale_check: bool = True

    @classmethod
    def of(cls, **options) -> SMCOptions:
        """The options given by name, checked; unknown names are refused, listing the known."""
        unknown = sorted(set(options) - set(cls._fields))
        if unknown:
            raise TypeError(
                f"tempered SMC takes no option(s) {unknown}; its options are {list(cls._fields)}"
            )
        return cls(**options).checked()

    def checked(self) -> SMCOptions:
        """These options, or a ``ValueError``/``TypeError`` naming the first bad one."""
        check_mutation(
            self.mutation, self.step_scale, self.num_mcmc_steps, self.num_integration_steps
        )
        target_ess = check_probability("target_ess", self.target_ess)
        check_int("max_mcmc_steps", self.max_mcmc_steps, minimum=self.num_mcmc_steps)
        check_int("max_iterations", self.max_iterations)
        check_positive("init_scale", self.init_scale)
        check_int("num_starts", self.num_starts)
        check_int("laplace_steps", self.laplace_steps)
        if not isinstance(self.scale_check, bool):
            raise TypeError(f"scale_check must be True or False, got {self.scale_check!r}")
        return self._replace(reference=check_reference(self.reference), target_ess=target_ess)


class SMCEvidence(NamedTuple):
    r"""What :func:`smc` returns.

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
        Equally weighted draws after a final systematic resampling, in a random order within
        each run, ``(runs, N, ...)`` with the structure of ``position``.
    num_tempering_steps
        Per run.
    num_mcmc_steps
        Per run: the MCMC steps of each particle over all tempering steps (their number per
        tempering step adapts to the acceptance rate, see :func:`smc`).
    num_grad_evals
        All runs and particles together (the mutation kernel's initialization included, the
        default reference's fit not).
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
    reference
        The reference of the runs on the raveled position (before the scale check's
        widening): a :class:`GaussianMixture` (the default; ``reference.means`` holds the
        modes found, then the broad component's centre), a Gaussian, or ``None`` for a
        given pair of functions.
    """

    log_normalizer: jax.Array
    standard_error: jax.Array
    log_normalizer_per_run: jax.Array
    particles: jax.Array
    num_tempering_steps: jax.Array
    num_mcmc_steps: jax.Array
    num_grad_evals: jax.Array
    reached_target: jax.Array
    is_finite: jax.Array
    scale_consistent: bool
    ok: bool
    reference: Any


class _Static(NamedTuple):
    """Static options of one compiled SMC program."""

    num_particles: int
    mutation: str
    step_scale: float
    num_mcmc_steps: int
    max_mcmc_steps: int
    num_integration_steps: int
    target_ess: float
    max_iterations: int


def _reference(key, reference, logdensity_fn, position, options: SMCOptions):
    """(reference on raveled vectors or None, functions or None, problem or None)."""
    if reference is None:
        if position is None:
            raise ValueError(
                "position is required when reference is None (the Laplace mixture starts there)"
            )
        mixture = laplace_mixture(
            key,
            logdensity_fn,
            position,
            num_starts=options.num_starts,
            laplace_steps=options.laplace_steps,
        )
        if mixture is not None:
            return mixture.scaled(options.init_scale), None, None
        flat = jnp.asarray(ravel_pytree(position)[0], jnp.result_type(float))
        fallback = Gaussian(flat, options.init_scale * jnp.ones_like(flat))
        return (
            fallback,
            None,
            f"the Laplace fit failed from all {options.num_starts} starts (no finite mode with "
            "a negative-definite Hessian); the reference is "
            f"N(position, {options.init_scale}^2 I) instead",
        )
    if is_pair(reference):
        return None, reference, None
    return reference.scaled(options.init_scale), None, None


def _moves(mcmc_init_fn, logdensity_fn, step_fn, num_mcmc_steps, n_particles, **unused):
    """BlackJAX's ``update_strategy`` with a traced number of MCMC steps (the same for every
    particle): ``num_mcmc_steps`` steps from each particle, keeping the last; the info is the
    particle's mean acceptance rate."""

    def move(rng_key, position, parameters):
        def body(i, carry):
            state, accepted = carry
            state, info = step_fn(
                jax.random.fold_in(rng_key, i), state, logdensity_fn, **parameters
            )
            return state, accepted + info.acceptance_rate

        state = mcmc_init_fn(position, logdensity_fn)
        state, accepted = jax.lax.fori_loop(0, num_mcmc_steps, body, (state, 0.0))
        return state.position, accepted / num_mcmc_steps

    return jax.vmap(move), n_particles


def _next_moves(acceptance, static: _Static):
    r"""The step-size change and the number of MCMC steps of the next tempering step, from
    the mean acceptance rate :math:`\bar a` of this one: :math:`\log \epsilon` moves by
    :math:`\bar a - a^*` (one Robbins-Monro step towards the optimal rate :math:`a^*`), and
    the steps are enough for a particle to move at least once with probability
    ``MOVE_PROBABILITY``, :math:`\lceil \log(1-p) / \log(1-\bar a) \rceil`, within
    ``[num_mcmc_steps, max_mcmc_steps]``."""
    optimal = OPTIMAL_ACCEPTANCE[static.mutation]
    acceptance = jnp.clip(jnp.nan_to_num(acceptance), 1e-6, 1.0 - 1e-6)
    needed = jnp.ceil(math.log1p(-MOVE_PROBABILITY) / jnp.log1p(-acceptance))
    steps = jnp.clip(needed, static.num_mcmc_steps, static.max_mcmc_steps).astype(jnp.int32)
    return acceptance - optimal, steps


def _one_run(key, scale_factor, reference, logdensity_fn, functions, static: _Static):
    """One SMC run on vectors: (particles in random order, log Z, steps, reached)."""
    if functions is None:
        widened = reference.scaled(scale_factor)
        reference_logdensity, draw = widened.logdensity, widened.sample
    else:
        reference_logdensity, draw = functions

    def loglikelihood(x):
        return logdensity_fn(x) - reference_logdensity(x)

    algorithm = blackjax.mala if static.mutation == "mala" else blackjax.hmc

    def smc(particles, log_step, num_mcmc_steps):
        parameters = tuned_parameters(
            particles, static.mutation, static.step_scale, static.num_integration_steps
        )
        parameters["step_size"] = parameters["step_size"] * jnp.exp(log_step)
        return blackjax.adaptive_tempered_smc(
            reference_logdensity,
            loglikelihood,
            algorithm.build_kernel(),
            algorithm.init,
            blackjax.smc.extend_params(parameters),
            blackjax.smc.resampling.systematic,
            static.target_ess,
            num_mcmc_steps=num_mcmc_steps,
            update_strategy=_moves,
        )

    def running(carry):
        state, log_z, *_, i = carry
        return (state.tempering_param < 1.0) & (i < static.max_iterations) & jnp.isfinite(log_z)

    def step(carry):
        state, log_z, log_step, num_mcmc_steps, moves, i = carry
        state, info = smc(state.particles, log_step, num_mcmc_steps).step(
            jax.random.fold_in(run_key, i), state
        )
        change, next_steps = _next_moves(jnp.mean(info.update_info), static)
        return (
            state,
            log_z + info.log_likelihood_increment,
            log_step + change,
            next_steps,
            moves + num_mcmc_steps,
            i + 1,
        )

    init_key, run_key, final_key, shuffle_key = jax.random.split(key, 4)
    particles = draw(init_key, static.num_particles)
    start = (blackjax.smc.tempered.init(particles), 0.0, 0.0, static.num_mcmc_steps, 0, 0)
    state, log_z, _, _, moves, steps = jax.lax.while_loop(running, step, start)
    index = blackjax.smc.resampling.systematic(final_key, state.weights, static.num_particles)
    # systematic resampling lists the ancestors in order: shuffle, so that the draws of a run
    # are exchangeable and split R-hat and ESS do not read an arbitrary order
    index = jax.random.permutation(shuffle_key, index)
    return state.particles[index], log_z, steps, moves, state.tempering_param >= 1.0


@partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _runs(keys, scale_factors, reference, logdensity_fn, functions, structure, static):
    logdensity_fn, functions = on_vectors(logdensity_fn, functions, structure)
    return jax.vmap(
        lambda key, factor: _one_run(key, factor, reference, logdensity_fn, functions, static)
    )(keys, scale_factors)


def _scale_problem(log_z, particles, num_runs) -> str | None:
    """Why the runs with a wider reference (the second half) disagree with the others, or
    ``None`` when they agree (:func:`numpyro_ebm.evidence._checks.scale_problem`)."""
    narrow, wide = _checks.halves(num_runs)
    return _checks.scale_problem(
        log_mean_exp(log_z[narrow]),
        log_mean_exp(log_z[wide]),
        jnp.std(particles[narrow], axis=(0, 1)),
        jnp.std(particles[wide], axis=(0, 1)),
        reference="reference",
    )


def smc(
    rng_key: jax.Array,
    logdensity_fn: Callable,
    position=None,
    *,
    num_particles: int = 256,
    num_runs: int = 8,
    **options,
) -> SMCEvidence:
    r""":math:`\log Z = \log \int f` by adaptive tempered SMC, over independent runs.

    Parameters
    ----------
    rng_key
        PRNG key.
    logdensity_fn
        :math:`\log f` of one position (an array or a pytree), unnormalized.
    position
        A position: the centre of the default reference's starts (``reference=None``) and
        the structure of the particles.
    num_particles, num_runs
        Particles per run; independent runs (vmapped). The error bar needs several runs.
    **options
        The fields of :class:`SMCOptions` (the reference, the mutations, ``target_ess``,
        ``max_iterations``, ``init_scale``, ``num_starts``, ``laplace_steps``,
        ``scale_check``), the same as the ``tempered_smc`` sampler's, with its defaults.

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

    The particles of a run are shuffled after the final resampling (see the module
    docstring): as draws of chains, they give an :math:`\hat R` and an ESS that compare the
    runs with one another, whatever the order in which resampling left them.

    A target that is improper or runs off (non-finite :math:`\log \hat Z_r` or particles,
    :math:`\lambda` not reaching 1 within ``max_iterations``, :math:`\log \hat Z` depending
    on the reference's scale) is reported by ``ok=False`` and a ``RuntimeWarning``.
    """
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {logdensity_fn!r}")
    check_int("num_particles", num_particles, minimum=2)
    check_int("num_runs", num_runs)
    options = SMCOptions.of(**options)
    unravel, structure = None, None
    if position is not None:
        flat, unravel = ravel_pytree(position)
        check_finite_array("position", flat)
        _checks.check_defined(logdensity_fn(position), "position")
        structure = position_structure(position)
    reference, functions, problem = _reference(
        jax.random.fold_in(rng_key, 1), options.reference, logdensity_fn, position, options
    )
    problems = [] if problem is None else [problem]
    check_runs = options.scale_check and reference is not None and num_runs >= 4
    factors = _checks.run_scales(num_runs, check_runs)
    static = _Static(
        num_particles,
        options.mutation,
        float(options.step_scale),
        options.num_mcmc_steps,
        options.max_mcmc_steps,
        options.num_integration_steps,
        options.target_ess,
        options.max_iterations,
    )
    particles, log_z, steps, moves, reached = _runs(
        jax.random.split(rng_key, num_runs),
        factors,
        reference,
        logdensity_fn,
        functions,
        structure,
        static,
    )
    log_normalizer, standard_error = log_mean_exp(log_z)
    per_step = grad_evals_per_step(options.mutation, options.num_integration_steps)
    # per tempering step and particle: the kernel's initialization, then its steps
    grads = num_particles * (jnp.sum(steps) + jnp.sum(moves) * per_step)
    finite = bool(jnp.all(jnp.isfinite(log_z)) & jnp.all(jnp.isfinite(particles)))
    consistent = True
    if check_runs and finite:
        scale_problem = _scale_problem(log_z, particles, num_runs)
        consistent = scale_problem is None
        problems += [] if consistent else [scale_problem]
    if not finite:
        problems.append("non-finite log Z or particles: the target is improper or runs off")
    if not bool(jnp.all(reached)):
        problems.append(
            f"{int(jnp.sum(~reached))} of {num_runs} runs did not reach the target within "
            f"max_iterations={options.max_iterations} tempering steps"
        )
    if problems:
        warnings.warn("tempered SMC: " + "; ".join(problems), RuntimeWarning, stacklevel=2)
    if unravel is not None:
        particles = jax.vmap(jax.vmap(unravel))(particles)
    return SMCEvidence(
        log_normalizer=log_normalizer,
        standard_error=standard_error,
        log_normalizer_per_run=log_z,
        particles=particles,
        num_tempering_steps=steps,
        num_mcmc_steps=moves,
        num_grad_evals=grads,
        reached_target=reached,
        is_finite=jnp.asarray(finite),
        scale_consistent=consistent,
        ok=not problems,
        reference=reference,
    )


def model_smc(
    rng_key: jax.Array,
    model: Callable,
    *model_args,
    model_kwargs: dict | None = None,
    **options,
) -> SMCEvidence:
    r"""The evidence :math:`p(y) = \int p(y, z)\,dz` of a NumPyro model by :func:`smc`
    on the unconstrained space (:func:`numpyro_ebm.logdensity_from_model`). The reference
    defaults to the Laplace fit of the log joint, so nothing is drawn from the prior and a
    prior that is an ``EnergyDistribution`` works. ``options`` go to :func:`smc`;
    the particles are dicts of unconstrained sites.
    """
    from numpyro_ebm.model_density import logdensity_from_model

    init_key, run_key = jax.random.split(rng_key)
    density = logdensity_from_model(model, *model_args, key=init_key, **(model_kwargs or {}))
    return smc(run_key, density.logdensity_fn, density.initial_position, **options)
