r"""The MCMC moves of AIS and tempered SMC: MALA or HMC tuned to particles, or a user's
kernel, applied to all particles at once.

At each annealing step the particles are moved by a kernel that leaves the current
:math:`\pi_\beta` invariant. The built-in moves read their scale from particles
(:func:`tuned_parameters`): MALA's step :math:`h = 1.36\, s\, \bar\sigma^2 / d^{1/3}`
(Roberts & Rosenthal 1998, "Optimal scaling of discrete approximations to Langevin
diffusions", JRSS B 60), HMC's inverse mass matrix the per-coordinate variance and step
:math:`s\, d^{-1/4}` (Beskos, Pillai, Roberts, Sanz-Serna & Stuart 2013, "Optimal tuning of
the hybrid Monte Carlo algorithm", Bernoulli 19). Tempered SMC tunes them to the particles it
is about to move; AIS to a pilot run's (:func:`numpyro_ebm.evidence.ais.ais`), since a kernel
tuned to the particle it moves does not leave :math:`\pi_\beta` exactly invariant.
"""

from __future__ import annotations

import blackjax
import jax
import jax.numpy as jnp

from numpyro_ebm._checks import check_int, check_positive

__all__ = ["check_mutation", "grad_evals_per_step", "transition", "tuned_parameters"]


def tuned_parameters(
    particles: jax.Array, mutation: str, step_scale: float, num_integration_steps: int
) -> dict:
    r"""MALA or HMC parameters tuned to the current particles ``(N, d)``.

    MALA: :math:`h = 1.36\, s\, \bar\sigma^2 / d^{1/3}` (Roberts & Rosenthal 1998), with
    :math:`\bar\sigma^2` the mean per-coordinate particle variance. HMC: inverse mass matrix
    the per-coordinate variance, step :math:`s\, d^{-1/4}`. The scale of the annealed
    densities changes along the path; so do these.
    """
    variance = jnp.var(particles, axis=0)
    variance = jnp.where(jnp.isfinite(variance) & (variance > 0), variance, 1.0)
    dim = particles.shape[1]
    if mutation == "mala":
        return {"step_size": step_scale * 1.36 * jnp.mean(variance) / dim ** (1 / 3)}
    return {
        "step_size": step_scale * dim**-0.25,
        "inverse_mass_matrix": variance,
        "num_integration_steps": num_integration_steps,
    }


def grad_evals_per_step(mutation: str, num_integration_steps: int) -> int:
    """Gradient evaluations of one MALA (1) or HMC (L) step."""
    return num_integration_steps if mutation == "hmc" else 1


def check_mutation(mutation: str, step_scale, num_mcmc_steps, num_integration_steps) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first bad mutation option."""
    if mutation not in ("mala", "hmc"):
        raise ValueError(f"mutation must be 'mala' or 'hmc', got {mutation!r}")
    check_positive("step_scale", step_scale)
    check_int("num_mcmc_steps", num_mcmc_steps)
    check_int("num_integration_steps", num_integration_steps)


def _kernel_grad_evals(info) -> jax.Array:
    """Gradient evaluations of one step of a user kernel, read from its ``Info``."""
    for field in ("num_grad_evals", "num_integration_steps"):
        if hasattr(info, field):
            return jnp.asarray(getattr(info, field))
    return jnp.asarray(1)


def transition(kernel, mutation, num_mcmc_steps, num_integration_steps):
    """``move(key, x (N, d), logdensity_fn, parameters) -> (x, acceptance (N,), grad evals)``:
    the built-in ``mutation`` with ``parameters`` (:func:`tuned_parameters`), or ``kernel``
    (``parameters`` unused)."""

    def steps(key, x, init, step):
        def body(states, k):
            states, info = jax.vmap(step)(jax.random.split(k, x.shape[0]), states)
            return states, info

        states, infos = jax.lax.scan(body, jax.vmap(init)(x), jax.random.split(key, num_mcmc_steps))
        return states.position, infos

    if kernel is not None:

        def move(key, x, logdensity_fn, parameters):
            algorithm = kernel(logdensity_fn)
            position, infos = steps(key, x, algorithm.init, algorithm.step)
            # one gradient per particle at init, as BlackJAX's gradient kernels take
            grads = x.shape[0] + jnp.sum(_kernel_grad_evals(infos) * jnp.ones(x.shape[0]))
            acceptance = getattr(infos, "acceptance_rate", jnp.ones((num_mcmc_steps, x.shape[0])))
            return position, jnp.mean(acceptance, axis=0), grads

        return move

    algorithm = blackjax.mala if mutation == "mala" else blackjax.hmc
    per_step = grad_evals_per_step(mutation, num_integration_steps)

    def move(key, x, logdensity_fn, parameters):
        step_fn = algorithm.build_kernel()

        def step(k, state):
            return step_fn(k, state, logdensity_fn, **parameters)

        position, infos = steps(key, x, lambda p: algorithm.init(p, logdensity_fn), step)
        grads = x.shape[0] * (1 + num_mcmc_steps * per_step)  # init's gradient included
        return position, jnp.mean(infos.acceptance_rate, axis=0), jnp.asarray(grads)

    return move
