r"""Samplers that move through temperatures or noise levels: replica exchange over any inner
move, and annealed Langevin dynamics over a noise schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_ebm import _health
from numpyro_ebm._checks import (
    check_int,
    check_positive_number,
    check_probability,
    check_strictly_decreasing,
    check_temperatures,
    structure_checked,
)
from numpyro_ebm._precision import full_precision
from numpyro_ebm.kernels import annealed_langevin as _annealed
from numpyro_ebm.kernels import block_gibbs, replica_exchange
from numpyro_ebm.samplers.base import (
    ChainSampler,
    Sampler,
    dual_averaging_warmup,
    register_sampler,
    stats,
    untuned_warmup,
)
from numpyro_ebm.samplers.discrete import bipartite
from numpyro_ebm.samplers.langevin import mala

__all__ = ["AnnealedLangevin", "ParallelTempering", "annealed_langevin", "parallel_tempering"]

#: Ladder updates of ``parallel_tempering(adapt_ladder=True)`` in the first half of warm-up.
_LADDER_ROUNDS = 8


class ParallelTempering(Sampler):
    """Parallel tempering's sampler value (:func:`parallel_tempering`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _parallel_tempering_chain(target, **self.options)


def _parallel_tempering_chain(
    target,
    *,
    inner,
    temperatures,
    num_replicas,
    max_temperature,
    target_acceptance_rate,
    adapt_ladder,
) -> ChainSampler:
    if temperatures is None:
        temperatures = replica_exchange.geometric_ladder(num_replicas, max_temperature)
    temperatures = jnp.asarray(temperatures, jnp.float32)
    logdensity_fn = target.logdensity_fn
    # a step size scales with the temperature; it is tuned only for a move with an acceptance
    # rate (ULA has none: its step stays the one given)
    scaled = "step_size" in inner.options
    tuned = "target_acceptance_rate" in inner.options
    fixed = ("step_size", "target_acceptance_rate")
    extra = {k: v for k, v in inner.options.items() if k not in fixed}
    joint = inner.name == "block_gibbs"
    if joint:
        # an RBM's replicas temper its joint p(v, h) (kernels.block_gibbs): (v, h) positions,
        # swaps on the joint energy, the cold replica's v the draw
        model, params = bipartite(target)
        logdensity_fn = block_gibbs.joint_logdensity(model, params)
        tempered = block_gibbs.tempered_factory(model, params)
    elif "discrete" in inner.accepts:
        # The replicas' log densities are tempered under vmap, where a discrete move's checks
        # of its target's structure (checkerboard's colouring) cannot evaluate them: run its
        # init once on the untempered target, which has the same structure.
        one = jax.tree.map(lambda x: x[0], target.initial_position)
        inner.kernel(logdensity_fn, target.support, **extra).init(one)

    def factory(step_size):
        # replica k moves with step size (noise variance) step_size * T_k
        if joint:
            return tempered
        if scaled:
            return lambda ld, t: inner.kernel(ld, step_size * t, **extra)
        if "discrete" in inner.accepts:
            return lambda ld, t: inner.kernel(ld, target.support, **extra)
        return lambda ld, t: inner.kernel(ld, **extra)

    def move(key, state, step_size, ladder):
        kernel = replica_exchange.build_kernel(factory(step_size))
        return kernel(key, state, logdensity_fn, ladder)

    def draw(state):
        return state.position[0] if joint else state.position

    def warmup(rng_key, position, num_warmup):
        if joint:  # the first sweep draws h afresh
            position = (position, model.hidden_probs(params, position))
        positions = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (temperatures.shape[0], *jnp.shape(x))), position
        )
        initial = inner.options.get("step_size")
        with structure_checked():  # checked once on the untempered target, above
            state = replica_exchange.init(positions, logdensity_fn, temperatures, factory(initial))
        ladder_key, rng_key = jax.random.split(rng_key)
        ladder, steps = temperatures, num_warmup
        if adapt_ladder and num_warmup >= 4 * _LADDER_ROUNDS:
            # the first half of warm-up places the ladder, the second tunes the step on it
            state, ladder = replica_exchange.adapt_ladder(
                ladder_key,
                state,
                logdensity_fn,
                factory(initial),
                temperatures,
                _LADDER_ROUNDS,
                num_warmup // (2 * _LADDER_ROUNDS),
            )
            steps = num_warmup - _LADDER_ROUNDS * (num_warmup // (2 * _LADDER_ROUNDS))
        if not tuned:
            state = untuned_warmup(lambda k, s: move(k, s, initial, ladder), state, rng_key, steps)
            fixed_step = {} if initial is None else {"step_size": jnp.asarray(initial)}
            return state, {"temperatures": ladder, **fixed_step}

        def make_step(step_size):
            def one(key, state):
                state, info = move(key, state, step_size, ladder)
                return state, info.inner_info.acceptance_rate

            return one

        state, step_size = dual_averaging_warmup(
            make_step, state, rng_key, steps, initial, target_acceptance_rate
        )
        return state, {"step_size": step_size, "temperatures": ladder}

    def step(rng_key, state, parameters):
        ladder = parameters["temperatures"]
        state, info = move(rng_key, state, parameters.get("step_size"), ladder)
        inner_grads = getattr(info.inner_info, "num_grad_evals", 1)
        out = stats(
            acceptance_rate=getattr(info.inner_info, "acceptance_rate", jnp.nan),
            step_size=parameters.get("step_size", jnp.nan),
            logdensity=target.logdensity_fn(draw(state)) if joint else state.logdensity[0],
            # K inner moves (one gradient each unless the move says otherwise) and the
            # exchange's re-initialisations (free for a move that evaluates no gradient)
            grads=temperatures.shape[0] * inner_grads + info.num_grad_evals * (inner_grads > 0),
            finite=info.is_finite,
        )
        out["swap_acceptance"] = info.swap_acceptance
        out["round_trips"] = info.round_trips
        out["drift"] = _health.drift_counts(-info.inner_logdensity_change, info.inner_norm_change)
        return state, out

    return ChainSampler(warmup, step, draw)


@register_sampler("parallel_tempering")
def parallel_tempering(
    *,
    inner: Sampler | None = None,
    temperatures=None,
    num_replicas: int = 8,
    max_temperature: float = 20.0,
    target_acceptance_rate: float = 0.574,
    step_size: float | None = None,
    adapt_ladder: bool = False,
) -> Sampler:
    r"""Replica exchange (Swendsen & Wang 1986; Geyer 1991) over any inner move.

    :math:`K` replicas sample :math:`p^{1/T_k}` for a ladder :math:`1 = T_0 < \dots < T_{K-1}`
    (``temperatures``, or the geometric ladder of ``num_replicas`` up to
    ``max_temperature``); after each inner move, neighbour pairs (even pairs on even steps,
    odd pairs on odd steps) swap with the Metropolis probability. The draw is the cold
    replica. ``inner`` is a sampler value with a move of its own (default
    ``mala(step_size=0.2)``; ``step_size=`` is a shortcut for ``inner=mala(step_size=...)``;
    for discrete targets ``gibbs()``, ``checkerboard()`` or ``gibbs_with_gradients()``; for an
    RBM ``block_gibbs()``, whose replicas temper the joint :math:`p(v, h)^{1/T_k}` (the RBM of
    parameters :math:`\theta / T_k`) and swap on the joint energy, Desjardins et al. 2010).
    An inner move with a step size uses :math:`\epsilon T_k` in replica :math:`k`, with
    :math:`\epsilon` tuned during warmup by dual averaging of the cold replica's acceptance
    rate towards ``target_acceptance_rate`` (``ula()``, which has no acceptance step, keeps
    its own :math:`\epsilon`). Swap acceptance rates per neighbour pair are
    reported as the statistic ``swap_acceptance`` (NaN for pairs not attempted at a draw), and
    the round trips (cold to hot to cold) completed so far as ``round_trips``; ``drift`` counts
    the inner moves of all replicas that lowered and raised the energy and raised and lowered
    the norm of the position (the post-run check of an improper target reads it: every inner
    move is reversible for its tempered target).

    ``adapt_ladder=True`` spends the first half of warm-up (at least 32 steps) placing the
    ladder so that the swap rejection rates are equal (Syed, Bouchard-Côté, Deligiannidis &
    Doucet 2021, Algorithm 4: the new temperatures sit at equal quantiles of the estimated
    communication barrier), keeping its end points; the tuned ladder is a per-chain warm-up
    parameter, carried by ``resume=``.
    """
    if step_size is not None:
        if inner is not None:
            raise ValueError("give either inner= or step_size= (a shortcut for inner=mala(...))")
        inner = mala(step_size=step_size)
    inner = mala() if inner is None else inner
    if not isinstance(inner, Sampler) or (inner.kernel is None and inner.name != "block_gibbs"):
        raise TypeError(
            "inner must be a sampler value with a move of its own (mala, ula, gibbs, "
            f"checkerboard, gibbs_with_gradients, swendsen_wang, block_gibbs), got {inner!r}"
        )
    if temperatures is None:
        check_int("num_replicas", num_replicas, minimum=2)
        replica_exchange.geometric_ladder(num_replicas, max_temperature)  # checks both
    else:
        check_temperatures("temperatures", temperatures)
        temperatures = tuple(float(t) for t in jnp.asarray(temperatures))
    check_probability("target_acceptance_rate", target_acceptance_rate)
    if not isinstance(adapt_ladder, bool):
        raise TypeError(f"adapt_ladder must be True or False, got {adapt_ladder!r}")
    options = dict(
        inner=inner,
        temperatures=temperatures,
        num_replicas=num_replicas,
        max_temperature=max_temperature,
        target_acceptance_rate=target_acceptance_rate,
        adapt_ladder=adapt_ladder,
    )
    return ParallelTempering(
        "parallel_tempering",
        options,
        inner.accepts,
    )


class AnnealedLangevin(Sampler):
    """Annealed Langevin's sampler value (:func:`annealed_langevin`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _annealed_langevin_chain(target, **self.options)


def _annealed_langevin_chain(
    target, *, sigmas, step_size, num_steps_per_level, parameterization, metropolis, denoise
) -> ChainSampler:
    sigmas = jnp.asarray(sigmas, jnp.float32)
    if target.kind == "model":
        if parameterization != "energy":
            raise ValueError("a model's annealed Langevin needs parameterization='energy'")
        fn = _model_potential(target)
    else:
        fn = target.fn
    _check_noise_conditional(fn, target.initial_position, sigmas[-1])
    algorithm = _annealed.as_top_level_api(
        sigmas,
        step_size,
        num_steps_per_level,
        metropolis=metropolis,
        denoise=denoise,
        **{f"{parameterization}_fn": fn},
    )

    def potential(position):
        if parameterization == "score":
            return jnp.nan
        return fn(position, sigmas[-1])

    def warmup(rng_key, position, num_warmup):
        state = algorithm.init(position)
        return untuned_warmup(algorithm.step, state, rng_key, num_warmup), {}

    def step(rng_key, state, parameters):
        state, info = algorithm.step(rng_key, state)
        return state, stats(
            acceptance_rate=info.acceptance_rate,
            step_size=step_size,
            logdensity=-potential(state.position),
            grads=info.num_grad_evals,
            finite=info.is_finite,
        )

    return ChainSampler(warmup, step, lambda state: state.position)


def _model_potential(target):
    r"""A model's potential :math:`U_\sigma(z)` on its unconstrained space with its
    noise-conditional prior sites at the noise level :math:`\sigma` (the likelihood and every
    other site unchanged): posterior annealed Langevin adds the likelihood's score to the
    prior's at every level."""
    from numpyro import handlers
    from numpyro.infer.util import potential_energy

    from numpyro_ebm.energy import at_noise_level, is_noise_conditional

    args, kwargs = target.model_args, target.model_kwargs or {}
    z0 = jax.tree.map(lambda x: x[0], target.initial_position)
    values = target.postprocess_fn(z0)
    trace = handlers.trace(handlers.substitute(handlers.seed(target.fn, 0), data=values))
    sites = trace.get_trace(*args, **kwargs).values()
    if not any(is_noise_conditional(site.get("fn")) for site in sites):
        raise ValueError(
            "annealed_langevin samples a model only when its prior is noise-conditional: give "
            "the prior as ne.EnergyDistribution(E(x, sigma), event_shape, sigma=sigma_min)"
        )

    @full_precision
    def potential(z, sigma):
        return potential_energy(at_noise_level(target.fn, sigma), args, kwargs, z)

    return potential


def _check_noise_conditional(fn, positions, sigma) -> None:
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), positions)
    try:
        jax.eval_shape(fn, one, sigma)
    except Exception as error:  # a one-argument energy, or another shape: in our words
        raise ValueError(
            "annealed_langevin needs a noise-conditional energy E(x, sigma) or score "
            f"s(x, sigma); calling the target as fn(x, sigma) fails with "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from error


@register_sampler("annealed_langevin")
def annealed_langevin(
    *,
    sigmas=None,
    step_size: float = 2e-5,
    num_steps_per_level: int = 100,
    parameterization: str = "energy",
    metropolis: bool = False,
    denoise: bool = True,
) -> Sampler:
    r"""Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1); one draw is one sweep
    over the noise levels ``sigmas`` (strictly decreasing, required), level :math:`i` moving
    with the noise variance :math:`\epsilon \sigma_i^2 / \sigma_L^2` (``step_size`` is
    :math:`\epsilon`).

    The target must be noise-conditional: an energy ``E(x, sigma)``
    (``parameterization="energy"``) or a score ``s(x, sigma)`` (``"score"``), or a NumPyro
    model whose prior is a noise-conditional
    :class:`~numpyro_ebm.EnergyDistribution` (``sigma=`` given): *posterior* annealed
    Langevin, the prior evaluated at each level :math:`\sigma_i` and the likelihood's score
    added unchanged at every level (as in Jalal et al. 2021, "Robust compressed sensing MRI
    with deep generative priors"). The reported potential energy is :math:`E(x, \sigma_L)`
    (NaN for a score model). ``metropolis=True`` makes every step a MALA step exact for its
    level (energies only).
    """
    if sigmas is None:
        raise ValueError("annealed_langevin needs sigmas, a strictly decreasing noise schedule")
    check_strictly_decreasing("sigmas", sigmas)
    check_positive_number("step_size", step_size)
    check_int("num_steps_per_level", num_steps_per_level)
    if parameterization not in ("energy", "score"):
        raise ValueError(f"parameterization must be 'energy' or 'score', got {parameterization!r}")
    if metropolis and parameterization == "score":
        raise ValueError("metropolis=True needs parameterization='energy' (a score has no density)")
    options = dict(
        sigmas=tuple(float(s) for s in jnp.asarray(sigmas)),
        step_size=step_size,
        num_steps_per_level=num_steps_per_level,
        parameterization=parameterization,
        metropolis=metropolis,
        denoise=denoise,
    )
    return AnnealedLangevin(
        "annealed_langevin",
        options,
        {"noise_conditional", "model"},
        refine=lambda s: s.replace(
            step_size=s.options["step_size"] / 2,
            num_steps_per_level=2 * s.options["num_steps_per_level"],
        ),
    )
