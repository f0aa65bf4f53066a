r"""Gradient samplers whose tuning suits many vectorized chains, wrapping BlackJAX: ChEES-HMC and
MEADS tune one set of parameters across all the chains (the warm-up of
:func:`~numpyro_ebm.samplers.base.tuned_across_chains`), MCLMC tunes each chain on its own
without a Metropolis step.

* :func:`chees_hmc`: jittered HMC (a uniform fraction of a trajectory length :math:`T` per
  transition, from a Halton sequence shared by the chains) whose :math:`T` follows the
  gradient of the ChEES criterion, the change in the expected squared distance to the
  ensemble mean, and whose step size follows dual averaging on the chains' mean acceptance
  (Hoffman, Radul & Sountsov 2021; BlackJAX's ``chees_adaptation``), with a diagonal mass
  matrix estimated from the ensemble over the last half of the warm-up.
* :func:`meads`: generalized HMC (one leapfrog step, partial momentum refreshment, a
  persistent non-reversible slice) whose step size, damping and preconditioner each fold of
  chains takes from the others (Hoffman & Sountsov 2022, Algorithm 3; BlackJAX's
  ``meads_adaptation``). It needs the chains in ``num_folds`` folds of at least 2.
* :func:`mclmc`: microcanonical Langevin Monte Carlo (Robnik, De Luca, Silverstein & Seljak
  2023; BlackJAX's ``mclmc``), an isokinetic dynamics with partial momentum refreshment over a
  decoherence length :math:`L`; its step size is tuned towards an energy-error variance per
  dimension of ``desired_energy_var`` and :math:`L` from the chain's autocorrelation
  (``mclmc_find_L_and_step_size``). It has no accept/reject step: its draws carry a bias that
  shrinks with the energy error (what the tuning holds small); it reports no acceptance rate.

MEADS and MCLMC run, by default, in the whitened coordinates :math:`z` of a Laplace
approximation :math:`\mathcal{N}(m, LL^\top)` of the target, :math:`x = m + Lz`
(:class:`WhitenedState`): a dense preconditioner from the curvature at the mode, under which a
correlated posterior (a regression with an uncentred covariate) is close to a standard normal.
Their own preconditioning is diagonal.

References
----------
M. D. Hoffman, A. Radul and P. Sountsov (2021). An adaptive MCMC scheme for setting trajectory
lengths in Hamiltonian Monte Carlo. AISTATS.
M. D. Hoffman and P. Sountsov (2022). Tuning-free generalized Hamiltonian Monte Carlo.
AISTATS.
J. Robnik, G. B. De Luca, E. Silverstein and U. Seljak (2023). Microcanonical Hamiltonian Monte
Carlo. JMLR 24.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import blackjax
import jax
import jax.flatten_util
import jax.numpy as jnp
import optax
from blackjax.adaptation.base import get_filter_adapt_info_fn
from blackjax.mcmc import dynamic_hmc

from numpyro_ebm._checks import (
    all_finite,
    check_bool,
    check_int,
    check_positive,
    check_probability,
)
from numpyro_ebm.evidence.references import laplace_fit
from numpyro_ebm.samplers.base import (
    DENSITY_KINDS,
    ChainSampler,
    Sampler,
    finite,
    register_sampler,
    stats,
    tuned_across_chains,
)
from numpyro_ebm.samplers.hmc import hmc_stats

__all__ = ["MCLMC", "MEADS", "ChEES", "chees_hmc", "laplace_starts", "mclmc", "meads"]

#: Bits of the Halton sequence that jitters ChEES-HMC's trajectories (distinct fractions for
#: 2^30 transitions).
HALTON_BITS = 30


def _laplace(logdensity_fn, key, position, num_steps: int = 200):
    """One chain's Laplace approximation at the mode that ``num_steps`` L-BFGS steps find from
    ``position`` (:func:`~numpyro_ebm.evidence.references.laplace_fit`), as the affine map
    ``x = shift + scale @ z`` of flat vectors, a draw ``z`` of the standard normal, and whether
    the fit holds. A fit without a proper mode, or a non-finite draw, gives the identity map at
    ``position`` (and ``z = 0``)."""
    flat, unravel = jax.flatten_util.ravel_pytree(position)
    gaussian, valid = laplace_fit(flat, lambda v: logdensity_fn(unravel(v)), num_steps)
    z = jax.random.normal(key, flat.shape, flat.dtype)
    draw = gaussian.mean + gaussian.scale @ z
    ok = valid & all_finite(draw) & jnp.isfinite(logdensity_fn(unravel(draw)))
    shift = jnp.where(ok, gaussian.mean, flat)
    scale = jnp.where(ok, gaussian.scale, jnp.eye(flat.shape[0], dtype=flat.dtype))
    return shift, scale, jnp.where(ok, z, 0.0), ok


def laplace_starts(logdensity_fn, keys, positions, num_steps: int = 200):
    """Each chain's start moved to a draw of a Laplace approximation at the mode that
    ``num_steps`` L-BFGS steps find from its given position
    (:func:`~numpyro_ebm.evidence.references.laplace_fit`, a fixed number of steps): starts in
    the bulk, still dispersed, where NumPyro's uniform starts can lie millions of nats out and
    freeze an ensemble that shares one step size. A fit without a proper mode, or a non-finite
    draw, leaves the chain where it was. (BlackJAX's Pathfinder, the first choice, ran forever
    on eight schools from some starts: its line search is an unbounded loop.)"""

    def one(key, position):
        shift, scale, z, _ = _laplace(logdensity_fn, key, position, num_steps)
        return jax.flatten_util.ravel_pytree(position)[1](shift + scale @ z)

    return jax.vmap(one)(keys, positions)


class WhitenedState(NamedTuple):
    """A chain run in whitened coordinates: BlackJAX's state ``inner`` at ``z``, the position
    being ``x = shift + scale @ z`` (flat, then unravelled to the target's shape). With the
    map of a Laplace approximation the target is close to a standard normal in ``z``: a dense
    preconditioner, which correlated posteriors need and a diagonal mass matrix cannot give.
    Without one (``laplace_start=False``) ``shift`` and ``scale`` are ``None`` and ``z`` is
    ``x`` itself, flat: no matrix is stored or applied."""

    inner: Any
    shift: jax.Array | None
    scale: jax.Array | None


def _whitened(logdensity_fn, unravel):
    """``(log_density_of, position_of)``: ``log_density_of(shift, scale)`` is the log density
    of ``z``, that of ``x = shift + scale @ z`` (the map's constant Jacobian left out; ``x =
    z`` for ``scale=None``), and ``position_of(state)`` a :class:`WhitenedState`'s position."""

    def to_x(shift, scale, z):
        return unravel(z if scale is None else shift + scale @ z)

    def log_density_of(shift, scale):
        return lambda z: logdensity_fn(to_x(shift, scale, z))

    def position_of(state: WhitenedState):
        return to_x(state.shift, state.scale, state.inner.position)

    return log_density_of, position_of


def _per_chain(parameters: dict, num_chains: int) -> dict:
    """Parameters shared by the ensemble, one copy per chain (what the chain steps take)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains, *jnp.shape(x))), parameters)


def _jittered_steps(random_generator_arg, num_leapfrog_steps):
    """ChEES-HMC's leapfrog steps at a transition: a Halton fraction of the tuned number."""
    fraction = dynamic_hmc.halton_sequence(random_generator_arg, HALTON_BITS)
    return jnp.asarray(jnp.ceil(fraction * num_leapfrog_steps), jnp.int32)


def _starts(logdensity_fn, laplace_start: bool, keys, positions, num_warmup: int):
    """The positions warm-up starts from: draws of Laplace approximations
    (:func:`laplace_starts`, keys folded apart from the warm-up's) when asked and there is a
    warm-up, else as given."""
    if not laplace_start or num_warmup == 0:
        return positions
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    return laplace_starts(logdensity_fn, keys, positions)


class ChEES(Sampler):
    """ChEES-HMC's sampler value (:func:`chees_hmc`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _chees_chain(target, **self.options)


def _chees_chain(
    target, *, initial_step_size, learning_rate, target_acceptance_rate, laplace_start
):
    logdensity_fn = target.logdensity_fn

    def ensemble_warmup(keys, positions, num_warmup):
        num_chains = keys.shape[0]
        positions = _starts(logdensity_fn, laplace_start, keys, positions, num_warmup)
        adaptation = blackjax.chees_adaptation(
            logdensity_fn,
            num_chains,
            target_acceptance_rate=target_acceptance_rate,
            mass_matrix_estimation="diagonal",
            adaptation_info_fn=get_filter_adapt_info_fn(),
        )
        (states, tuned), _ = adaptation.run(
            keys[0], positions, initial_step_size, optax.adam(learning_rate), num_warmup
        )
        parameters = {
            "step_size": tuned["step_size"],
            "inverse_mass_matrix": tuned["inverse_mass_matrix"],
            "num_leapfrog_steps": tuned["integration_steps_params"][0],
        }
        return states, _per_chain(parameters, num_chains)

    def step(rng_key, state, parameters):
        kernel = blackjax.dynamic_hmc(
            logdensity_fn,
            parameters["step_size"],
            parameters["inverse_mass_matrix"],
            next_random_arg_fn=lambda i: i + 1,
            integration_steps_fn=_jittered_steps,
            integration_steps_params=(parameters["num_leapfrog_steps"],),
        )
        state, info = kernel.step(rng_key, state)
        return state, hmc_stats(state, info, parameters["step_size"])

    return tuned_across_chains(ensemble_warmup, step, lambda state: state.position)


@register_sampler("chees_hmc")
def chees_hmc(
    *,
    initial_step_size: float = 0.1,
    learning_rate: float = 0.025,
    target_acceptance_rate: float = 0.651,
    laplace_start: bool = True,
) -> Sampler:
    """ChEES-HMC (see the module docstring): jittered HMC whose trajectory length and step size
    are tuned across all the chains in warm-up (Adam at ``learning_rate`` on the log
    trajectory length, dual averaging of the step size from ``initial_step_size`` towards
    ``target_acceptance_rate``), from draws of Laplace approximations
    (:func:`laplace_starts`) unless ``laplace_start=False``."""
    check_positive("initial_step_size", initial_step_size)
    check_positive("learning_rate", learning_rate)
    check_probability("target_acceptance_rate", target_acceptance_rate)
    options = {
        "initial_step_size": initial_step_size,
        "learning_rate": learning_rate,
        "target_acceptance_rate": target_acceptance_rate,
        "laplace_start": check_bool("laplace_start", laplace_start),
    }
    return ChEES("chees_hmc", options, DENSITY_KINDS)


class MEADS(Sampler):
    """MEADS' sampler value (:func:`meads`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _meads_chain(target, **self.options)


def _meads_chain(target, *, num_folds, laplace_start):
    logdensity_fn = target.logdensity_fn
    one = jax.tree.map(lambda x: x[0], target.initial_position)
    flat, unravel = jax.flatten_util.ravel_pytree(one)
    whitened, position_of = _whitened(logdensity_fn, unravel)

    def shared_map(keys, positions, num_warmup):
        """The affine map every chain runs in, and the chains' starts in its coordinates: the
        Laplace approximation whose mode is the highest of the chains' fits, starts drawn
        from it; else (no fit, or none holds) the identity at the given starts."""
        flats = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(positions)
        if not laplace_start:
            return None, None, flats
        identity = (jnp.zeros_like(flat), jnp.eye(flat.size, dtype=flat.dtype), flats)
        if num_warmup == 0:  # the same state structure as after a fit, for resume=
            return identity
        keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        shifts, scales, zs, oks = jax.vmap(lambda k, p: _laplace(logdensity_fn, k, p))(
            keys, positions
        )
        heights = jnp.where(oks, jax.vmap(lambda x: logdensity_fn(unravel(x)))(shifts), -jnp.inf)
        best = jnp.argmax(heights)
        fitted = (shifts[best], scales[best], zs)
        return jax.tree.map(lambda a, b: jnp.where(oks.any(), a, b), fitted, identity)

    def ensemble_warmup(keys, positions, num_warmup):
        num_chains = keys.shape[0]
        if num_chains % num_folds or num_chains < 2 * num_folds:
            raise ValueError(
                f"meads tunes each of its {num_folds} folds of chains from the others: "
                f"num_chains must be a multiple of num_folds={num_folds} with at least 2 "
                f"chains per fold, got num_chains={num_chains}"
            )
        shift, scale, starts = shared_map(keys, positions, num_warmup)
        adaptation = blackjax.meads_adaptation(
            whitened(shift, scale),
            num_chains,
            num_folds,
            adaptation_info_fn=get_filter_adapt_info_fn(),
        )
        (states, parameters), _ = adaptation.run(keys[0], starts, num_warmup)
        shared = _per_chain({"shift": shift, "scale": scale}, num_chains)
        return WhitenedState(states, **shared), _per_chain(parameters, num_chains)

    def step(rng_key, state, parameters):
        kernel = blackjax.ghmc(whitened(state.shift, state.scale), **parameters)
        inner, info = kernel.step(rng_key, state.inner)
        return state._replace(inner=inner), stats(
            acceptance_rate=info.acceptance_rate,
            diverging=info.is_divergent,
            step_size=parameters["step_size"],
            logdensity=inner.logdensity,
            grads=1,
            finite=finite(inner.position, inner.logdensity),
        )

    return tuned_across_chains(ensemble_warmup, step, position_of)


@register_sampler("meads")
def meads(*, num_folds: int = 4, laplace_start: bool = True) -> Sampler:
    """MEADS (see the module docstring): generalized HMC tuned across chains, split into
    ``num_folds`` folds that tune one another; ``num_chains`` must be a multiple of
    ``num_folds``, with at least 2 chains per fold. With ``laplace_start=True`` (the default)
    every chain runs in the whitened coordinates of one Laplace approximation (that of the
    highest of the chains' modes, :class:`WhitenedState`) and starts from a draw of it; MEADS'
    diagonal preconditioner cannot undo a correlated posterior's shape, the whitening can
    (kidiq: R-hat 1.02 whitened, about 10 without). ``laplace_start=False`` runs on the target
    as given, from the given starts (for targets too large for a dense Hessian)."""
    check_int("num_folds", num_folds, minimum=2)
    options = {"num_folds": num_folds, "laplace_start": check_bool("laplace_start", laplace_start)}
    return MEADS("meads", options, DENSITY_KINDS)


#: Fractions of its run that ``mclmc_find_L_and_step_size`` spends in its three stages.
MCLMC_FRACTIONS = (0.1, 0.1, 0.1)


class MCLMC(Sampler):
    """MCLMC's sampler value (:func:`mclmc`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _mclmc_chain(target, **self.options)


def _mclmc_chain(target, *, desired_energy_var, laplace_start):
    logdensity_fn = target.logdensity_fn
    one = jax.tree.map(lambda x: x[0], target.initial_position)
    flat, unravel = jax.flatten_util.ravel_pytree(one)
    if flat.size < 2:
        raise ValueError(
            "mclmc moves on the unit sphere of velocities, which needs at least 2 dimensions; "
            "this target has 1: use mala, hmc or nuts"
        )

    whitened, position_of = _whitened(logdensity_fn, unravel)

    def warmup(rng_key, position, num_warmup):
        init_key, tune_key, fit_key = jax.random.split(rng_key, 3)
        if not laplace_start:
            shift, scale, z = None, None, jax.flatten_util.ravel_pytree(position)[0]
        elif num_warmup > 0:
            shift, scale, z, _ = _laplace(logdensity_fn, fit_key, position)
        else:  # the identity map at the start: the same state structure as after a fit
            shift = jax.flatten_util.ravel_pytree(position)[0]
            scale, z = jnp.eye(flat.size, dtype=flat.dtype), jnp.zeros_like(flat)
        logdensity_z = whitened(shift, scale)
        state = blackjax.mcmc.mclmc.init(z, logdensity_z, init_key)
        if num_warmup == 0:
            return WhitenedState(state, shift, scale), {
                "L": jnp.asarray(math.sqrt(flat.size), jnp.float32),
                "step_size": jnp.asarray(0.25 * math.sqrt(flat.size), jnp.float32),
                "inverse_mass_matrix": jnp.ones(flat.size),
            }
        # the tuner spends the fractions MCLMC_FRACTIONS of the run it is told of
        state, tuned, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=blackjax.mcmc.mclmc.build_kernel(desired_energy_var=desired_energy_var),
            num_steps=math.ceil(num_warmup / sum(MCLMC_FRACTIONS)),
            state=state,
            rng_key=tune_key,
            logdensity_fn=logdensity_z,
            frac_tune1=MCLMC_FRACTIONS[0],
            frac_tune2=MCLMC_FRACTIONS[1],
            frac_tune3=MCLMC_FRACTIONS[2],
            desired_energy_var=desired_energy_var,
        )
        return WhitenedState(state, shift, scale), {
            "L": tuned.L,
            "step_size": tuned.step_size,
            "inverse_mass_matrix": tuned.inverse_mass_matrix,
        }

    def step(rng_key, state, parameters):
        kernel = blackjax.mclmc(
            whitened(state.shift, state.scale),
            L=parameters["L"],
            step_size=parameters["step_size"],
            inverse_mass_matrix=parameters["inverse_mass_matrix"],
        )
        inner, info = kernel.step(rng_key, state.inner)
        return state._replace(inner=inner), stats(
            step_size=parameters["step_size"],
            logdensity=inner.logdensity,
            grads=2,  # the isokinetic McLachlan integrator: two gradients a step
            finite=finite(inner.position, inner.logdensity),
        ) | {"energy_change": info.energy_change.astype(jnp.float32)}

    return ChainSampler(warmup, step, position_of)


@register_sampler("mclmc")
def mclmc(*, desired_energy_var: float = 5e-4, laplace_start: bool = True) -> Sampler:
    """Microcanonical Langevin Monte Carlo (see the module docstring), each chain's step size
    and decoherence length tuned in warm-up towards an energy-error variance per dimension of
    ``desired_energy_var`` (smaller: less bias, smaller steps). With ``laplace_start=True``
    (the default) each chain runs in the whitened coordinates of its own Laplace approximation
    (:class:`WhitenedState`) and starts from a draw of it; ``laplace_start=False`` runs on the
    target as given, from the given start (for targets too large for a dense Hessian)."""
    check_positive("desired_energy_var", desired_energy_var)
    options = {
        "desired_energy_var": desired_energy_var,
        "laplace_start": check_bool("laplace_start", laplace_start),
    }
    return MCLMC("mclmc", options, DENSITY_KINDS)
