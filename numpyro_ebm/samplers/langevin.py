r"""Langevin samplers: ULA, MALA (BlackJAX) and SGLD (BlackJAX), ``step_size`` the noise
variance :math:`\epsilon` in all three (see :mod:`numpyro_ebm.samplers.base`)."""

from __future__ import annotations

import blackjax
import jax
import jax.numpy as jnp

from numpyro_ebm._checks import check_positive_number, check_probability
from numpyro_ebm.kernels import ula as ula_kernel
from numpyro_ebm.samplers.base import (
    DENSITY_KINDS,
    ChainSampler,
    Sampler,
    blackjax_step_size,
    dual_averaging_warmup,
    finite,
    register_sampler,
    stats,
    untuned_warmup,
)

__all__ = ["MALA", "SGLD", "SGLD_SCHEDULES", "ULA", "mala", "sgld", "ula"]


def _mala_kernel(logdensity_fn, step_size):
    """BlackJAX's MALA with our step size (noise variance)."""
    return blackjax.mala(logdensity_fn, blackjax_step_size(step_size))


class ULA(Sampler):
    """The unadjusted Langevin algorithm's sampler value (:func:`ula`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _ula_chain(target, **self.options)


def _ula_chain(target, *, step_size) -> ChainSampler:
    logdensity_fn = target.logdensity_fn
    kernel = ula_kernel.build_kernel()

    def move(key, state):
        return kernel(key, state, logdensity_fn, step_size)

    def warmup(rng_key, position, num_warmup):
        state = ula_kernel.init(position, logdensity_fn)
        return untuned_warmup(move, state, rng_key, num_warmup), {}

    def step(rng_key, state, parameters):
        state, info = move(rng_key, state)
        return state, stats(
            step_size=step_size, logdensity=state.logdensity, grads=1, finite=info.is_finite
        )

    return ChainSampler(warmup, step, lambda state: state.position)


@register_sampler("ula")
def ula(*, step_size: float = 1e-2) -> Sampler:
    r"""The unadjusted Langevin algorithm (:mod:`numpyro_ebm.kernels.ula`): no
    Metropolis correction, so the chain is biased by :math:`O(\epsilon)`; the short-run
    sampler of contrastive divergence, exposed for speed comparisons and quick looks."""
    check_positive_number("step_size", step_size)
    return ULA("ula", {"step_size": step_size}, DENSITY_KINDS, kernel=ula_kernel.as_top_level_api)


class MALA(Sampler):
    """MALA's sampler value (:func:`mala`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _mala_chain(target, **self.options)


def _mala_chain(target, *, step_size, target_acceptance_rate) -> ChainSampler:
    logdensity_fn = target.logdensity_fn
    kernel = blackjax.mala.build_kernel()

    def move(key, state, eps):
        return kernel(key, state, logdensity_fn, blackjax_step_size(eps))

    def warmup(rng_key, position, num_warmup):
        state = blackjax.mala.init(position, logdensity_fn)

        def make_step(eps):
            def one(key, state):
                state, info = move(key, state, eps)
                return state, info.acceptance_rate

            return one

        state, tuned = dual_averaging_warmup(
            make_step, state, rng_key, num_warmup, step_size, target_acceptance_rate
        )
        return state, {"step_size": tuned}

    def step(rng_key, state, parameters):
        state, info = move(rng_key, state, parameters["step_size"])
        return state, stats(
            acceptance_rate=info.acceptance_rate,
            step_size=parameters["step_size"],
            logdensity=state.logdensity,
            grads=1,
            finite=finite(state.position, state.logdensity),
        )

    return ChainSampler(warmup, step, lambda state: state.position)


@register_sampler("mala")
def mala(*, step_size: float = 0.2, target_acceptance_rate: float = 0.574) -> Sampler:
    """BlackJAX MALA (Roberts & Tweedie 1996); ``step_size`` (the noise variance) is the
    initial value that warmup tunes by dual averaging towards ``target_acceptance_rate``
    (0.574 is optimal for high-dimensional targets, Roberts & Rosenthal 1998)."""
    check_positive_number("step_size", step_size)
    check_probability("target_acceptance_rate", target_acceptance_rate)
    return MALA(
        "mala",
        {"step_size": step_size, "target_acceptance_rate": target_acceptance_rate},
        DENSITY_KINDS,
        kernel=_mala_kernel,
    )


SGLD_SCHEDULES = {
    "constant": lambda t: jnp.ones_like(t),
    "inverse_sqrt": lambda t: 1.0 / jnp.sqrt(t),
    "inverse_cube_root": lambda t: 1.0 / jnp.cbrt(t),
}


class SGLD(Sampler):
    """SGLD's sampler value (:func:`sgld`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _sgld_chain(target, **self.options)


def _sgld_chain(target, *, step_size, schedule) -> ChainSampler:
    rate = SGLD_SCHEDULES[schedule]
    logdensity_fn = target.logdensity_fn
    minibatch_logdensity_fn = target.minibatch_logdensity_fn or (lambda key, x: logdensity_fn(x))
    kernel = blackjax.sgld.build_kernel()

    def grad_estimator(position, minibatch_key):
        return jax.grad(minibatch_logdensity_fn, argnums=1)(minibatch_key, position)

    def sgld_step(rng_key, state):
        position, t = state
        noise_key, minibatch_key = jax.random.split(rng_key)
        eps = step_size * rate(t.astype(jnp.float32))
        position = kernel(
            noise_key, position, grad_estimator, minibatch_key, blackjax_step_size(eps)
        )
        return (position, t + 1), eps

    def warmup(rng_key, position, num_warmup):
        state = (position, jnp.asarray(1, jnp.int32))
        return untuned_warmup(sgld_step, state, rng_key, num_warmup), {}

    def step(rng_key, state, parameters):
        state, eps = sgld_step(rng_key, state)
        logdensity = logdensity_fn(state[0])
        return state, stats(
            step_size=eps, logdensity=logdensity, grads=1, finite=finite(state[0], logdensity)
        )

    return ChainSampler(warmup, step, lambda state: state[0])


@register_sampler("sgld")
def sgld(*, step_size: float = 1e-3, schedule: str = "inverse_sqrt") -> Sampler:
    r"""BlackJAX SGLD (Welling & Teh 2011).

    Gradients are full-batch, or minibatched when the target is a NumPyro model that subsamples
    its data (``numpyro.plate(name, N, subsample_size=b)``): each step then draws a fresh
    minibatch and uses the :math:`N/b`-scaled likelihood gradient. The step size (noise
    variance) at draw :math:`t \ge 1` is :math:`\epsilon_0 s(t)` with the schedule
    ``"inverse_sqrt"`` (:math:`t^{-1/2}`), ``"inverse_cube_root"`` (:math:`t^{-1/3}`, the rate
    of Teh, Thiery & Vollmer 2016) or ``"constant"``; :math:`t` counts from the start of warmup.
    No Metropolis correction: the chain is biased by :math:`O(\epsilon)`, and by the minibatch
    noise.
    """
    check_positive_number("step_size", step_size)
    if schedule not in SGLD_SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SGLD_SCHEDULES)}, got {schedule!r}")
    return SGLD(
        "sgld", {"step_size": step_size, "schedule": schedule}, DENSITY_KINDS, minibatch=True
    )
