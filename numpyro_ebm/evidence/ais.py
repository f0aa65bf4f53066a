r"""Annealed importance sampling (AIS) and its reverse (RAISE): log normalizing constants
with error bars, for unnormalized log densities, NumPyro models and trained energies.

AIS (Neal 2001, "Annealed importance sampling", Statistics and Computing 11) moves
independent particles from a normalized, sampleable base :math:`p_0` to an unnormalized
target :math:`f` through the geometric path

.. math::

    \pi_\beta(x) \propto p_0(x)^{1-\beta} f(x)^{\beta}, \qquad
    0 = \beta_0 < \beta_1 < \dots < \beta_K = 1,

reweighting each particle by :math:`\log w = \sum_k (\beta_k - \beta_{k-1})
(\log f - \log p_0)(x_{k-1})` and moving it with a Markov kernel that leaves
:math:`\pi_{\beta_k}` invariant. :math:`\mathbb{E}[w] = Z = \int f`, so
:math:`\log \hat Z = \log \frac1N \sum_i w_i` is a stochastic *lower* bound of :math:`\log Z`
(Jensen). Run backwards from exact draws of the target, the same path estimates :math:`1/Z`
without bias, so :math:`-\log \widehat{Z^{-1}}` is a stochastic *upper* bound (RAISE: Burda,
Grosse & Salakhutdinov 2015, "Accurate and conservative estimates of MRF log-likelihood using
reverse annealing", AISTATS); the two sandwich :math:`\log Z`.

Positions are vectors of shape ``(d,)`` (a model's pytree of sites is raveled by
:func:`model_ais`). The bases (:class:`~numpyro_ebm.evidence.references.Gaussian`,
:func:`~numpyro_ebm.evidence.references.laplace`) and the tuned moves
(:mod:`numpyro_ebm.evidence.mutations`) are those of :mod:`numpyro_ebm.evidence.smc` too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp

from numpyro_ebm._checks import check_finite_array, check_int, check_ladder, check_positive
from numpyro_ebm.diagnostics import pareto_khat, pareto_khat_threshold
from numpyro_ebm.evidence import _checks
from numpyro_ebm.evidence.mutations import check_mutation, transition, tuned_parameters
from numpyro_ebm.evidence.references import Gaussian, check_gaussian, laplace

__all__ = [
    "AISResult",
    "LogLikelihood",
    "ais",
    "annealing_schedule",
    "log_likelihood",
    "log_mean_exp",
    "model_ais",
    "reverse_ais",
]


def log_mean_exp(log_values: jax.Array, axis=None) -> tuple[jax.Array, jax.Array]:
    r""":math:`\log \bar w` of weights given by their logs, with the delta-method standard
    error of :math:`\log \bar w`,

    .. math::

        \mathrm{se}(\log \bar w) \approx \frac{\sqrt{\widehat{\mathrm{Var}}(w) / N}}{\bar w}
        = \sqrt{\frac{1}{N(N-1)} \sum_i \Big(\frac{w_i}{\bar w} - 1\Big)^2},

    computed from :math:`w_i / \bar w = e^{\log w_i - \log \bar w}`, so nothing overflows.
    """
    log_values = jnp.asarray(log_values)
    n = log_values.size if axis is None else log_values.shape[axis]
    log_mean = logsumexp(log_values, axis=axis) - jnp.log(n)
    expanded = log_mean if axis is None else jnp.expand_dims(log_mean, axis)
    ratio = jnp.exp(log_values - expanded)
    standard_error = jnp.sqrt(jnp.sum((ratio - 1.0) ** 2, axis=axis) / (n * (n - 1)))
    return log_mean, standard_error


def annealing_schedule(num_steps: int, kind: str = "sigmoid", sharpness: float = 4.0):
    r"""Inverse temperatures :math:`0 = \beta_0 < \dots < \beta_K = 1`, ``K = num_steps``.

    ``"linear"``: evenly spaced. ``"sigmoid"`` (Grosse, Maddison & Salakhutdinov 2013):
    :math:`\tilde\beta_k = \sigma(\delta(2k/K - 1))` rescaled to :math:`[0, 1]`, denser at both
    ends, where the weights of AIS change fastest.
    """
    check_int("num_steps", num_steps)
    check_positive("sharpness", sharpness)
    grid = np.linspace(0.0, 1.0, num_steps + 1)
    if kind == "linear":
        return jnp.asarray(grid)
    if kind != "sigmoid":
        raise ValueError(f"kind must be 'linear' or 'sigmoid', got {kind!r}")
    s = 1.0 / (1.0 + np.exp(-sharpness * (2.0 * grid - 1.0)))
    return jnp.asarray((s - s[0]) / (s[-1] - s[0]))


# -- AIS --------------------------------------------------------------------------------


#: the fewest log weights whose Pareto k-hat is estimated (a tail of 5 at ``reff=1``)
KHAT_MIN_WEIGHTS = 21


class AISResult(NamedTuple):
    r"""What :func:`ais` and :func:`reverse_ais` return.

    Attributes
    ----------
    log_normalizer
        :math:`\log \hat Z` over all particles of all runs: :math:`\log` of the mean weight
        (forward); :math:`-\log` of the mean reverse weight (reverse).
    standard_error
        Delta-method standard error of ``log_normalizer`` from the weights
        (:func:`log_mean_exp`).
    runs_standard_error
        The same from the runs' own estimates :math:`\hat Z_r` (independent runs given the
        pilot run's tuning).
    log_normalizer_per_run
        :math:`\log \hat Z_r`, shape ``(runs,)``.
    log_weights
        Shape ``(runs, particles)``; for the reverse pass, the log weights of :math:`1/Z`.
    ess
        Effective sample size of the weights, :math:`(\sum w)^2 / \sum w^2`.
    particles
        The final particles, ``(runs, particles, d)``: (weighted) draws of the target going
        forward, of the base going backward.
    acceptance_rate
        Mean acceptance rate of the transitions, per annealing step.
    num_grad_evals
        Gradient evaluations, all particles together.
    is_finite
        Whether every log weight and particle is finite. When not, ``log_normalizer`` is
        not to be trusted (an improper or running-off target).
    scale_consistent
        Whether the runs with a base :data:`~numpyro_ebm.evidence._checks.SCALE_CHECK_FACTOR`
        times wider (:func:`ais`'s ``scale_check``) agree with the others (``True`` when not
        checked): an improper target's :math:`\log \hat Z` grows with the base's scale.
    ok
        Whether no problem was found (finite, scale-consistent, weights not heavy-tailed); a
        problem is also reported by a ``RuntimeWarning``.
    pareto_khat
        The Pareto :math:`\hat k` of all the log weights
        (:func:`~numpyro_ebm.diagnostics.pareto_khat`; Vehtari, Simpson, Gelman, Yao & Gabry
        2024): above :func:`~numpyro_ebm.diagnostics.pareto_khat_threshold` (0.7 for 2154
        weights or more) the weights' variance is too large for the estimate and its standard
        error to be trusted, and ``ok`` is ``False``. NaN with fewer than 21 weights or
        non-finite ones.
    """

    log_normalizer: jax.Array
    standard_error: jax.Array
    runs_standard_error: jax.Array
    log_normalizer_per_run: jax.Array
    log_weights: jax.Array
    ess: jax.Array
    particles: jax.Array
    acceptance_rate: jax.Array
    num_grad_evals: jax.Array
    is_finite: jax.Array
    scale_consistent: bool = True
    ok: bool = True
    pareto_khat: float = math.nan


class Mutation(NamedTuple):
    """The transitions' static configuration (hashable: a key of the compilation cache)."""

    kernel: Callable | None
    mutation: str
    step_scale: float
    num_mcmc_steps: int
    num_integration_steps: int

    def move(self) -> Callable:
        return transition(
            self.kernel, self.mutation, self.num_mcmc_steps, self.num_integration_steps
        )

    def tune(self, x: jax.Array) -> dict:
        """The built-in move's parameters tuned to particles ``x (N, d)``."""
        return tuned_parameters(x, self.mutation, self.step_scale, self.num_integration_steps)


def _split_base(base) -> tuple[Gaussian | None, tuple[Callable, Callable] | None]:
    """A Gaussian travels as data (no recompilation when it changes); a pair of functions
    as a static argument."""
    if isinstance(base, Gaussian):
        return check_gaussian("base", base), None
    if isinstance(base, tuple) and len(base) == 2 and all(callable(f) for f in base):
        return None, base
    raise TypeError(
        "base must be a Gaussian(mean, scale) or a pair (logdensity_fn, sample_fn) with "
        f"sample_fn(rng_key, num) -> (num, d), got {base!r}"
    )


def _base_point(gaussian, functions) -> jax.Array:
    """A point of the base: the Gaussian's mean, or one draw of ``sample_fn``."""
    if gaussian is not None:
        return gaussian.mean
    draws = jnp.asarray(functions[1](jax.random.key(0), 1))
    if draws.ndim != 2 or draws.shape[0] != 1:
        raise ValueError(
            f"the base's sample_fn(rng_key, 1) must return shape (1, d), got {draws.shape}"
        )
    return draws[0]


def _check_target(logdensity_fn, point: jax.Array, dimension: int | None = None) -> None:
    r"""Refuse, in words, a log density that cannot take the base's points (another
    dimension), does not return a scalar, or is NaN or :math:`+\infty` at the base's point
    (``point``); and ``dimension``, that of target samples, unless it is the base's."""
    if not callable(logdensity_fn):
        raise TypeError(f"logdensity_fn must be callable, got {logdensity_fn!r}")
    d = point.shape[0]
    if dimension is not None and dimension != d:
        raise ValueError(
            f"target_samples have dimension {dimension} but the base has dimension {d}: "
            "give a base on the target's space"
        )
    try:
        value = logdensity_fn(point)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"logdensity_fn cannot take a point of the base's dimension d={d} (shape "
            f"{point.shape}): {error}; give a base on the target's space"
        ) from None
    if jnp.shape(value) != ():
        raise ValueError(
            f"logdensity_fn must return a scalar for one point of shape ({d},), got shape "
            f"{jnp.shape(value)}"
        )
    _checks.check_defined(value, "the base's point (its mean, or a draw)")


def _problems(result: AISResult, reference_check, name: str = "ais") -> AISResult:
    """``result`` with ``scale_consistent``, ``pareto_khat`` and ``ok`` set, and its problems
    warned (the warning starts with ``name``)."""
    problems = []
    if not bool(result.is_finite):
        problems.append(
            "non-finite log weights or particles: the log density is NaN or infinite where "
            "the particles went, or the target is improper and they ran off"
        )
    consistent = True
    if reference_check is not None and bool(result.is_finite):
        problem = reference_check(result)
        consistent = problem is None
        problems += [] if consistent else [problem]
    khat = math.nan
    weights = result.log_weights.reshape(-1)
    if bool(result.is_finite) and weights.size >= KHAT_MIN_WEIGHTS:
        khat = float(pareto_khat(weights))
        limit = pareto_khat_threshold(weights.size)
        if khat > limit:
            problems.append(
                f"the importance weights are heavy-tailed (Pareto k-hat {khat:.2f} > "
                f"{limit:.2f}): log Z and its standard error are unreliable; anneal with more "
                "steps or from a base closer to the target"
            )
    if problems:
        warnings.warn(f"{name}: " + "; ".join(problems), RuntimeWarning, stacklevel=3)
    return result._replace(scale_consistent=consistent, ok=not problems, pareto_khat=khat)


def _scale_check(result: AISResult) -> str | None:
    """The reference-scale check (:mod:`numpyro_ebm.evidence._checks`) of runs whose
    second half started from the wider base."""
    halves = _checks.halves(result.log_weights.shape[0])
    z = [log_mean_exp(result.log_weights[part]) for part in halves]
    spread = [
        _checks.weighted_spread(result.particles[part], result.log_weights[part]) for part in halves
    ]
    return _checks.scale_problem(*z, *spread, reference="base")


def _base_functions(gaussian, functions) -> tuple[Callable, Callable]:
    return (gaussian.logdensity, gaussian.sample) if functions is None else functions


def _anneal(key, x, betas, log_base, log_target, move, schedule):
    """One run: weights and moves along ``betas`` from particles ``x (N, d)``.

    ``schedule`` gives the moves' parameters: stacked along the steps, or a function of the
    particles about to move (the pilot, :func:`_pilot`). Returns the particles, the log
    weights, the acceptance rate per step, the gradient count and the parameters used.
    """
    tune = schedule if callable(schedule) else None

    def body(carry, inputs):
        x, log_w = carry
        key, beta_prev, beta, parameters = inputs
        parameters = parameters if tune is None else tune(x)
        log_ratio = jax.vmap(lambda p: log_target(p) - log_base(p))(x)
        log_w = log_w + (beta - beta_prev) * log_ratio

        def logdensity(p):
            return (1.0 - beta) * log_base(p) + beta * log_target(p)

        x, acceptance, grads = move(key, x, logdensity, parameters)
        return (x, log_w), (jnp.mean(acceptance), grads, parameters)

    keys = jax.random.split(key, betas.shape[0] - 1)
    inputs = (keys, betas[:-1], betas[1:], None if tune is not None else schedule)
    (x, log_w), (acceptance, grads, parameters) = jax.lax.scan(
        body, (x, jnp.zeros(x.shape[0])), inputs
    )
    return x, log_w, acceptance, jnp.sum(grads), parameters


def _pilot(key, betas, log_base, sample, log_target, num_particles, config, move):
    r"""The built-in moves' parameters along increasing ``betas``, tuned at each step to the
    particles of a pilot run of ``num_particles`` from the base (its weights unused), and the
    pilot's gradient count; none for a user's kernel.

    Step :math:`k` (to :math:`\beta_{k+1}`) takes the parameters tuned to the pilot's
    particles at :math:`\beta_k`. Fixed before the runs start, the moves leave every
    :math:`\pi_\beta` exactly invariant, which the unbiasedness of :math:`\hat Z` (and of the
    reverse weights) needs: a kernel tuned to the particles it moves depends on each
    particle's own position, and biased :math:`\log \hat Z` upward (by 0.2, 4.5-5.8 standard
    errors, with 200 steps and 4 x 128 particles on a 3-d Gaussian).
    """
    if config.kernel is not None:
        return {}, 0
    draw_key, anneal_key = jax.random.split(key)
    x = sample(draw_key, num_particles)
    *_, grads, parameters = _anneal(anneal_key, x, betas, log_base, log_target, move, config.tune)
    return parameters, grads


def _summarize(x, log_w, acceptance, grads, sign: float) -> AISResult:
    runs = log_w.shape[0]
    log_z, standard_error = log_mean_exp(log_w)
    log_z_runs, _ = log_mean_exp(log_w, axis=1)
    _, runs_standard_error = log_mean_exp(log_z_runs) if runs > 1 else (None, jnp.nan)
    ess = jnp.exp(2 * logsumexp(log_w) - logsumexp(2 * log_w))
    finite = jnp.all(jnp.isfinite(log_w)) & jnp.all(jnp.isfinite(x))
    return AISResult(
        log_normalizer=sign * log_z,
        standard_error=standard_error,
        runs_standard_error=jnp.asarray(runs_standard_error),
        log_normalizer_per_run=sign * log_z_runs,
        log_weights=log_w,
        ess=ess,
        particles=x,
        acceptance_rate=jnp.mean(acceptance, axis=0),
        num_grad_evals=jnp.sum(grads),
        is_finite=finite,
    )


def _options(
    num_particles,
    num_runs,
    num_steps,
    betas,
    reverse,
    mutation,
    step_scale,
    num_mcmc_steps,
    num_integration_steps,
    kernel,
):
    check_int("num_particles", num_particles, minimum=2)
    check_int("num_runs", num_runs)
    check_mutation(mutation, step_scale, num_mcmc_steps, num_integration_steps)
    if kernel is not None and not callable(kernel):
        raise TypeError(
            f"kernel must be a factory kernel(logdensity_fn) -> SamplingAlgorithm, got {kernel!r}"
        )
    if betas is None:
        betas = annealing_schedule(num_steps)
        betas = betas[::-1] if reverse else betas
    return check_ladder("betas", betas, reverse)


def ais(
    rng_key: jax.Array,
    logdensity_fn: Callable,
    base,
    *,
    num_particles: int = 256,
    num_runs: int = 4,
    num_steps: int = 100,
    betas=None,
    kernel: Callable | None = None,
    mutation: str = "hmc",
    step_scale: float = 1.0,
    num_mcmc_steps: int = 1,
    num_integration_steps: int = 5,
    scale_check: bool = True,
) -> AISResult:
    r"""Annealed importance sampling of :math:`\log Z = \log \int f` (Neal 2001).

    Parameters
    ----------
    rng_key
        PRNG key.
    logdensity_fn
        :math:`\log f(x)` for one ``x`` of shape ``(d,)``, unnormalized.
    base
        The normalized base :math:`p_0`: a :class:`Gaussian` (for instance :func:`laplace`'s
        fit) or a pair ``(logdensity_fn, sample_fn)`` with ``sample_fn(rng_key, num)``
        returning ``(num, d)`` draws. Its tails must cover the target's.
    num_particles, num_runs
        Particles per run and independent runs (vmapped): the estimate uses all
        ``num_particles * num_runs`` weights.
    num_steps, betas
        The path: ``betas`` from 0 to 1, strictly increasing, or ``num_steps`` steps of
        :func:`annealing_schedule` (sigmoidal).
    kernel
        A factory ``kernel(logdensity_fn) -> blackjax.base.SamplingAlgorithm`` for the
        transitions, used as given at every :math:`\beta` (its gradient count is read from
        its ``Info``'s ``num_grad_evals`` or ``num_integration_steps``, else one per step).
        By default, ``mutation`` (``"hmc"`` or ``"mala"``) is tuned at each :math:`\beta`
        to the particles of a pilot run (:func:`tuned_parameters`, scaled by ``step_scale``;
        one more run of ``num_particles``, its own key, its weights unused), so the step
        follows the scale of :math:`\pi_\beta` along the path and is fixed before the runs
        start, as the estimate's unbiasedness needs.
    num_mcmc_steps, num_integration_steps
        Transitions per :math:`\beta`; leapfrog steps of HMC.
    scale_check
        With a :class:`Gaussian` base and at least two runs, the second half of the runs
        starts from the base widened :data:`~numpyro_ebm.evidence._checks.SCALE_CHECK_FACTOR`
        times (each run still estimates :math:`Z` without bias); if the halves disagree
        (:mod:`numpyro_ebm.evidence._checks`, the check of tempered SMC), the target
        looks improper, or the base misses part of it.

    Returns
    -------
    AISResult
        With ``ok=False`` and a ``RuntimeWarning`` when the weights or particles are not finite
        or the runs depend on the base's scale.

    Raises
    ------
    ValueError
        Early, when ``logdensity_fn`` cannot take a point of the base's dimension, does not
        return a scalar, or is NaN (or :math:`+\infty`) at the base's mean.

    Notes
    -----
    :math:`\hat Z` is unbiased, so :math:`\mathbb{E}\log\hat Z \le \log Z`; the gap shrinks as
    the weights' variance does (more steps). The standard error is that of the
    estimator's noise, not of this bias; compare with :func:`reverse_ais` to bound it.
    """
    if not isinstance(scale_check, bool):
        raise TypeError(f"scale_check must be True or False, got {scale_check!r}")
    betas = _options(
        num_particles,
        num_runs,
        num_steps,
        betas,
        False,
        mutation,
        step_scale,
        num_mcmc_steps,
        num_integration_steps,
        kernel,
    )
    gaussian, functions = _split_base(base)
    _check_target(logdensity_fn, _base_point(gaussian, functions))
    config = Mutation(kernel, mutation, float(step_scale), num_mcmc_steps, num_integration_steps)
    checked = scale_check and gaussian is not None and num_runs >= 2
    scales = _checks.run_scales(num_runs, checked)
    outputs = _forward(
        rng_key, betas, gaussian, scales, logdensity_fn, functions, num_particles, num_runs, config
    )
    return _problems(_summarize(*outputs, 1.0), _scale_check if checked else None)


@partial(jax.jit, static_argnums=(4, 5, 6, 7, 8))
def _forward(
    rng_key, betas, gaussian, scales, logdensity_fn, functions, num_particles, num_runs, config
):
    move = config.move()
    pilot_key, runs_key = jax.random.split(rng_key)
    schedule, pilot_grads = _pilot(
        pilot_key,
        betas,
        *_base_functions(gaussian, functions),
        logdensity_fn,
        num_particles,
        config,
        move,
    )

    def run(key, scale):
        log_base, sample = _base_functions(
            None if gaussian is None else gaussian.scaled(scale), functions
        )
        draw_key, anneal_key = jax.random.split(key)
        x = sample(draw_key, num_particles)
        return _anneal(anneal_key, x, betas, log_base, logdensity_fn, move, schedule)[:4]

    x, log_w, acceptance, grads = jax.vmap(run)(jax.random.split(runs_key, num_runs), scales)
    return x, log_w, acceptance, jnp.sum(grads) + pilot_grads


def reverse_ais(
    rng_key: jax.Array,
    logdensity_fn: Callable,
    base,
    target_samples: jax.Array,
    *,
    num_runs: int = 4,
    num_steps: int = 100,
    betas=None,
    kernel: Callable | None = None,
    mutation: str = "hmc",
    step_scale: float = 1.0,
    num_mcmc_steps: int = 1,
    num_integration_steps: int = 5,
) -> AISResult:
    r"""Reverse AIS (RAISE; Burda, Grosse & Salakhutdinov 2015): a stochastic upper bound of
    :math:`\log Z`.

    Starting from exact draws :math:`x_K \sim f/Z`, the path is run from :math:`\beta = 1`
    to :math:`0` with the same transitions; the weights

    .. math::

        \log w^{\mathrm{rev}} = \sum_{k} (\beta_{k} - \beta_{k+1})
        (\log f - \log p_0)(x_{k+1})

    have :math:`\mathbb{E}[w^{\mathrm{rev}}] = 1/Z`, so :math:`\log \hat Z^{\mathrm{up}} =
    -\log \overline{w^{\mathrm{rev}}}` satisfies :math:`\mathbb{E}\log\hat Z^{\mathrm{up}}
    \ge \log Z`. With :func:`ais`'s lower estimate it sandwiches :math:`\log Z`. Draws that
    are only approximately exact (held-out data for a trained energy, long MCMC) make the
    bound approximate.

    Parameters
    ----------
    target_samples
        ``(num_runs * n, d)`` exact draws of the target, split into ``num_runs`` runs of
        ``n`` particles.
    betas
        From 1 to 0, strictly decreasing (default: :func:`annealing_schedule` reversed).
    base, num_runs, num_steps, kernel, mutation, step_scale, num_mcmc_steps, num_integration_steps
        As in :func:`ais`.
    """
    target_samples = jnp.asarray(target_samples, jnp.result_type(float))
    check_finite_array("target_samples", target_samples)
    check_int("num_runs", num_runs)
    if target_samples.ndim != 2 or target_samples.shape[0] % num_runs:
        raise ValueError(
            f"target_samples must have shape (num_runs * n, d) with num_runs={num_runs}, got "
            f"{target_samples.shape}"
        )
    num_particles = target_samples.shape[0] // num_runs
    betas = _options(
        num_particles,
        num_runs,
        num_steps,
        betas,
        True,
        mutation,
        step_scale,
        num_mcmc_steps,
        num_integration_steps,
        kernel,
    )
    gaussian, functions = _split_base(base)
    _check_target(logdensity_fn, _base_point(gaussian, functions), target_samples.shape[1])
    config = Mutation(kernel, mutation, float(step_scale), num_mcmc_steps, num_integration_steps)
    x0 = target_samples.reshape(num_runs, num_particles, -1)
    outputs = _backward(rng_key, betas, gaussian, x0, logdensity_fn, functions, config)
    return _problems(_summarize(*outputs, -1.0), None)


@partial(jax.jit, static_argnums=(4, 5, 6))
def _backward(rng_key, betas, gaussian, x0, logdensity_fn, functions, config):
    log_base, sample = _base_functions(gaussian, functions)
    move = config.move()
    pilot_key, runs_key = jax.random.split(rng_key)
    # The pilot runs forward from the base; step k of the reverse pass (to betas[k + 1])
    # takes the parameters tuned at that inverse temperature.
    schedule, pilot_grads = _pilot(
        pilot_key, betas[::-1], log_base, sample, logdensity_fn, x0.shape[1], config, move
    )
    schedule = jax.tree.map(lambda a: a[::-1], schedule)

    def run(key, x):
        return _anneal(key, x, betas, log_base, logdensity_fn, move, schedule)[:4]

    x, log_w, acceptance, grads = jax.vmap(run)(jax.random.split(runs_key, x0.shape[0]), x0)
    return x, log_w, acceptance, jnp.sum(grads) + pilot_grads


# -- NumPyro models and trained energies ------------------------------------------------------


def model_ais(
    rng_key: jax.Array,
    model: Callable,
    *model_args,
    base=None,
    model_kwargs: dict | None = None,
    laplace_steps: int = 200,
    **options,
) -> tuple[AISResult, Callable]:
    r"""The evidence :math:`p(y) = \int p(y, z)\,dz` of a NumPyro model by :func:`ais` on the
    unconstrained space (:func:`numpyro_ebm.logdensity_from_model`, Jacobians included).

    Parameters
    ----------
    model, *model_args, model_kwargs
        The model and its arguments (observed data included).
    base
        The base on the raveled unconstrained latent vector; by default the Laplace
        approximation at the mode (:func:`laplace`). A failed fit (no negative-definite
        Hessian) raises ``ValueError``: pass a ``base`` then.
    **options
        Passed to :func:`ais`.

    Returns
    -------
    (AISResult, unravel)
        The result, whose particles are raveled unconstrained vectors, and the function
        that maps one back to the model's dict of sites.
    """
    from numpyro_ebm.model_density import logdensity_from_model

    init_key, run_key = jax.random.split(rng_key)
    density = logdensity_from_model(model, *model_args, key=init_key, **(model_kwargs or {}))
    flat, unravel = ravel_pytree(density.initial_position)

    def logdensity(z):
        return density.logdensity_fn(unravel(z))

    if base is None:
        base, valid = laplace(logdensity, flat, num_steps=laplace_steps)
        if not valid:
            raise ValueError(
                "the Laplace fit of the model's log joint failed (no finite mode with a "
                "negative-definite Hessian); pass base=Gaussian(mean, scale) or "
                "(logdensity_fn, sample_fn)"
            )
    return ais(run_key, logdensity, base, **options), unravel


class LogLikelihood(NamedTuple):
    r"""Held-out log-likelihood of an energy: :math:`\overline{\log p} = -\overline{E} -
    \log Z` per point.

    ``standard_error`` combines, in quadrature, the standard error of the mean energy over
    the data (``data_standard_error``) and that of :math:`\log \hat Z` (AIS's).
    """

    mean_log_likelihood: jax.Array
    standard_error: jax.Array
    data_standard_error: jax.Array
    log_normalizer: AISResult

    @property
    def ok(self) -> bool:
        r"""Whether :math:`\log Z`'s AIS found no problem (``log_normalizer.ok``)."""
        return self.log_normalizer.ok


def log_likelihood(
    rng_key: jax.Array,
    energy: Callable,
    data: jax.Array,
    *,
    base: Gaussian | None = None,
    inflation: float = 1.5,
    **options,
) -> LogLikelihood:
    r"""Mean log-likelihood of ``data`` (``(n, d)``) under :math:`p(x) = e^{-E(x)}/Z`, with
    :math:`\log Z` by :func:`ais`.

    The base defaults to a Gaussian fitted to the data (mean and covariance, the scale
    multiplied by ``inflation`` so its tails cover the model's). ``options`` go to
    :func:`ais`. The AIS bias (:math:`\mathbb{E}\log\hat Z \le \log Z`) makes the reported
    log-likelihood optimistic by the same amount; check it with :func:`reverse_ais` from
    draws of the model. An improper energy (one that falls without bound) has no
    log-likelihood: AIS's checks report it (``ok`` False and a ``RuntimeWarning``).
    """
    if not callable(energy):
        raise TypeError(f"energy must be callable, got {energy!r}")
    data = jnp.asarray(data, jnp.result_type(float))
    check_finite_array("data", data)
    check_positive("inflation", inflation)
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(f"data must have shape (n, d) with n >= 2, got {data.shape}")
    if base is None:
        covariance = jnp.atleast_2d(jnp.cov(data, rowvar=False))
        jitter = 1e-6 * jnp.trace(covariance) / data.shape[1]
        scale = jnp.linalg.cholesky(covariance + jitter * jnp.eye(data.shape[1]))
        base = Gaussian(jnp.mean(data, axis=0), inflation * scale)
    energies = jax.vmap(energy)(data)
    result = ais(rng_key, lambda x: -energy(x), base, **options)
    mean_energy = jnp.mean(energies)
    data_se = jnp.std(energies, ddof=1) / jnp.sqrt(data.shape[0])
    return LogLikelihood(
        mean_log_likelihood=-mean_energy - result.log_normalizer,
        standard_error=jnp.sqrt(data_se**2 + result.standard_error**2),
        data_standard_error=data_se,
        log_normalizer=result,
    )
