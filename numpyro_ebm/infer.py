r"""Our samplers as NumPyro kernels: ``MCMC(ne.infer.MALA(model), ...)``.

Each class is a :class:`numpyro.infer.mcmc.MCMCKernel` around a sampler value of
:mod:`numpyro_ebm.samplers`, so that ``mcmc.run``, ``mcmc.print_summary()``,
``mcmc.get_samples()`` and ``arviz.from_numpyro(mcmc)`` work as a NumPyro user expects:

.. code::

    mcmc = MCMC(ne.infer.MALA(model, step_size=0.1), num_warmup=500, num_samples=1000)
    mcmc.run(jax.random.key(0), y)

Exactly one of ``model`` and ``potential_fn`` (:math:`U = -\log p`, NumPyro's sign) is given,
as for NumPyro's own ``HMC``; with ``potential_fn``, ``mcmc.run`` needs ``init_params``.

Warm-up: our samplers tune as a whole (dual averaging over the ``num_warmup`` transitions), so
the kernel tunes in ``init`` and the first ``num_warmup`` calls of ``sample`` — the ones
``MCMC`` discards as warm-up — return the tuned state unchanged, at no cost. The state's
``z`` is the draw (unconstrained for models; ``MCMC`` constrains it with
:meth:`SamplerKernel.postprocess_fn`), with ``potential_energy``, ``accept_prob`` and
``diverging`` as NumPyro's HMC reports them (``extra_fields=("accept_prob", ...)``).

Health: a start where the potential is not finite is refused in ``init`` (where the start is
concrete: not under ``chain_method="parallel"``). After warm-up the state keeps the counts of
:mod:`numpyro_ebm._health` (``health``), and a ``RuntimeWarning`` with the words of
:func:`numpyro_ebm.sample` is raised, from the running chain, when one of its checks first
fails: chains frozen, a step size that exploded on a flat target, draws that run off an
improper one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from numpyro.infer.mcmc import MCMCKernel

from numpyro_ebm import _health, samplers
from numpyro_ebm._precision import full_precision
from numpyro_ebm.model_density import density_of, model_key
from numpyro_ebm.samplers import Sampler
from numpyro_ebm.samplers.base import HEALTH_KINDS
from numpyro_ebm.targets import Target, model_kind

__all__ = ["MALA", "AnnealedLangevin", "ParallelTempering", "SamplerKernel", "SamplerKernelState"]


class SamplerKernelState(NamedTuple):
    """``z``: the draw; ``inner``: the sampler's own state; ``parameters``: its tuned values;
    ``i``: transitions asked for so far (warm-up included); ``potential_energy``,
    ``accept_prob``, ``diverging``: of the last transition; ``rng_key``; ``health``: the
    :class:`numpyro_ebm._health.Tally` of the transitions after warm-up; ``warned``: which
    of its checks (:data:`HEALTH_CHECKS`) have been warned about."""

    z: Any
    inner: Any
    parameters: Any
    i: jax.Array
    potential_energy: jax.Array
    accept_prob: jax.Array
    diverging: jax.Array
    rng_key: jax.Array
    health: _health.Tally
    warned: jax.Array


#: the checks of :mod:`numpyro_ebm._health` that the kernels run as they go
HEALTH_CHECKS = ("frozen", "flat", "improper")


def _check_structure(init_params, expected) -> None:
    """``init_params`` for a model must hold its latent sites, in their shapes."""
    if init_params is None:
        return
    got = jax.tree.map(jnp.shape, init_params)
    want = jax.tree.map(jnp.shape, expected)
    if jax.tree.structure(got) != jax.tree.structure(want) or got != want:
        raise ValueError(
            f"init_params must hold the model's latent sites (unconstrained) with shapes {want}, "
            f"got {got}"
        )


def _check_scalar_potential(potential_fn, position, gradient_based: bool) -> None:
    """The potential of one position must be a real scalar (traced only: nothing runs), and
    the position floating point for a gradient-based sampler."""
    leaves = jax.tree.leaves(position)
    integer = [not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves]
    if gradient_based and any(integer):
        raise TypeError(
            "init_params must be floating point (the potential is differentiated there), got "
            f"dtypes {[str(jnp.result_type(leaf)) for leaf in leaves]}"
        )
    out = jax.eval_shape(potential_fn, position)
    if not (hasattr(out, "shape") and out.shape == ()):
        raise TypeError(
            "potential_fn must return one real number for one position, got "
            f"{jax.tree.map(lambda x: x.shape, out)}"
        )


class SamplerKernel(MCMCKernel):
    """A sampler value of :mod:`numpyro_ebm.samplers` as a NumPyro ``MCMCKernel``.

    Parameters
    ----------
    sampler
        A Markov-chain sampler value, e.g. ``ne.samplers.mala(step_size=0.1)``.
    model
        A NumPyro model; or
    potential_fn
        :math:`U(z) = -\\log p(z)` of one configuration (give ``init_params`` to ``run``).
    """

    sample_field = "z"

    def __init__(
        self, sampler: Sampler, model: Callable | None = None, potential_fn: Callable | None = None
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError(
                "give exactly one of model and potential_fn, got "
                f"model={model!r}, potential_fn={potential_fn!r}"
            )
        if not isinstance(sampler, Sampler) or sampler.is_runner:
            raise TypeError(f"sampler must be a Markov-chain sampler value, got {sampler!r}")
        self.sampler = sampler
        self.model = model  # MCMC reads these, as on NumPyro's own kernels
        self.potential_fn = potential_fn
        self._postprocess = None
        self._chain = None
        self._num_warmup = 0
        self._checked = False

    @property
    def default_fields(self):
        return ("z", "potential_energy", "diverging")

    def _target(self, rng_key, init_params, model_args, model_kwargs) -> Target:
        if self.model is not None:
            # our reading of the model: a discrete latent site, a subsampled plate or a log
            # density finite nowhere is refused in our words, as by sample()
            kwargs = dict(model_kwargs or {})
            density = density_of(
                self.model, model_args, kwargs, rng_key, model_key(self.model, model_args, kwargs)
            )
            self._postprocess = density.postprocess_fn
            position = density.initial_position if init_params is None else init_params
            _check_structure(init_params, density.initial_position)
            potential, fn = (lambda z: -density.logdensity_fn(z)), self.model
            kind = model_kind(density)
            extra = {
                "postprocess_fn": density.postprocess_fn,
                "model_args": tuple(model_args),
                "model_kwargs": kwargs,
                "discrete": density.discrete,
                "intractable": density.intractable,
            }
        else:
            if init_params is None:
                raise ValueError("with potential_fn, pass init_params to mcmc.run")
            position, potential, kind, fn = init_params, self.potential_fn, "energy", None
            _check_scalar_potential(potential, position, "discrete" not in self.sampler.accepts)
            extra = {}
        target = Target(
            full_precision(lambda z: -potential(z)), _one_chain(position), kind, fn, **extra
        )
        self.sampler.check(target)
        _check_start(target.logdensity_fn, position)
        return target

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        if jnp.ndim(jax.random.key_data(rng_key)) > 1:  # vectorized chains
            density = self.potential_fn is not None and "energy" in self.sampler.accepts
            if density and init_params is not None:
                _check_start(lambda z: -self.potential_fn(z), init_params, batched=True)
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(rng_key)
            first = None if init_params is None else jax.tree.map(lambda x: x[0], init_params)
            target = self._target(keys[0, 0], first, model_args, model_kwargs)
            self._prepare(target, num_warmup)
            if self._chain.ensemble_warmup is not None:
                return self._init_ensemble(keys, num_warmup, init_params, target)
            return jax.vmap(lambda k, p: self.init(k, num_warmup, p, model_args, model_kwargs))(
                rng_key, init_params
            )
        init_key, warmup_key, rng_key = jax.random.split(rng_key, 3)
        target = self._target(init_key, init_params, model_args, model_kwargs)
        self._prepare(target, num_warmup)
        position = jax.tree.map(lambda x: x[0], target.initial_position)
        inner, parameters = self._chain.warmup(warmup_key, position, num_warmup)
        return self._initial_state(target, inner, parameters, rng_key)

    def _prepare(self, target, num_warmup) -> None:
        self._chain = self.sampler.chain_sampler(target)
        self._num_warmup = int(num_warmup)
        self._checked = target.kind in HEALTH_KINDS

    def _init_ensemble(self, keys, num_warmup, init_params, target):
        """Vectorized chains of a sampler tuned across chains (ChEES-HMC, MEADS): one warm-up
        of them all, from ``init_params`` or the model's initial positions, one per chain."""
        if init_params is None:
            kwargs = dict(target.model_kwargs or {})
            content = model_key(self.model, target.model_args, kwargs)
            init_params = density_of(
                self.model, target.model_args, kwargs, keys[:, 0], content
            ).initial_position
        inner, parameters = self._chain.ensemble_warmup(keys[:, 1], init_params, num_warmup)
        return jax.vmap(lambda i, p, k: self._initial_state(target, i, p, k))(
            inner, parameters, keys[:, 2]
        )

    def _initial_state(self, target, inner, parameters, rng_key) -> SamplerKernelState:
        nan = jnp.asarray(jnp.nan, jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        health = _health.Tally(zero, zero, jnp.zeros((), jnp.float32), *[zero] * 5)
        drift = jax.eval_shape(self._chain.step, rng_key, inner, parameters)[1].get("drift")
        if drift is not None:  # counted per replica
            zeros = jnp.zeros(drift.shape[:-1], jnp.int32)
            health = health._replace(**dict.fromkeys(_health.DRIFT_FIELDS, zeros))
        return SamplerKernelState(
            z=self._chain.position(inner),
            inner=inner,
            parameters=parameters,
            i=jnp.zeros((), jnp.int32),
            potential_energy=_potential(target, inner, self._chain),
            accept_prob=nan,
            diverging=jnp.zeros((), bool),
            rng_key=rng_key,
            health=health,
            warned=jnp.zeros(len(HEALTH_CHECKS), bool),
        )

    def sample(self, state, model_args, model_kwargs):
        def transition(state):
            rng_key, step_key = jax.random.split(state.rng_key)
            inner, stats = self._chain.step(step_key, state.inner, state.parameters)
            z = self._chain.position(inner)
            potential = stats["potential_energy"].astype(state.potential_energy.dtype)
            counts = _health.counts(
                jnp.logical_not(_same(z, state.z)),
                potential - state.potential_energy,
                _norm(z) - _norm(state.z),
                jnp.ravel(stats["acceptance_rate"])[0],  # the target replica's
                xp=jnp,
            )
            if "drift" in stats:  # every replica's inner moves, per replica
                counts = _health.with_drift(counts, stats["drift"], axis=(), xp=jnp)
            return state._replace(
                z=z,
                inner=inner,
                potential_energy=potential,
                accept_prob=stats["acceptance_rate"],
                diverging=stats["diverging"],
                rng_key=rng_key,
                health=_health.Tally(*(a + b for a, b in zip(state.health, counts, strict=True))),
            )

        def one_chain(state):
            # tuned in init: the warm-up transitions MCMC discards are free
            state = jax.lax.cond(state.i < self._num_warmup, lambda s: s, transition, state)
            return state._replace(i=state.i + 1)

        state = jax.vmap(one_chain)(state) if jnp.ndim(state.i) > 0 else one_chain(state)
        return self._check_health(state) if self._checked else state

    def _check_health(self, state):
        """Warn (from the running program, once per check) when a check of
        :mod:`numpyro_ebm._health` first fails; ``state`` holds one chain or, vectorized,
        several, whose moves the drift check pools."""
        initial = _health.initial_step_size(self.sampler)
        step = state.parameters.get("step_size") if isinstance(state.parameters, dict) else None
        step = jnp.full(jnp.shape(state.i), jnp.nan) if step is None else jnp.asarray(step)
        verdict = _health.flags(state.health, step / initial, xp=jnp)
        failed = jnp.stack([jnp.any(verdict[check]) for check in HEALTH_CHECKS])
        new = failed & ~state.warned.reshape(-1, len(HEALTH_CHECKS)).any(axis=0)

        def warn(health, step, scale, new):
            only = [check for check, fresh in zip(HEALTH_CHECKS, new, strict=True) if fresh]
            for finding in _health.findings(health, step, initial, scale, only):
                warnings.warn(finding.message, RuntimeWarning, stacklevel=1)

        scale = jnp.abs(state.potential_energy)
        jax.lax.cond(
            new.any(),
            lambda: jax.debug.callback(warn, state.health, step, scale, new),
            lambda: None,
        )
        return state._replace(warned=state.warned | failed)

    def postprocess_fn(self, model_args, model_kwargs):
        if self._postprocess is None:
            return lambda z: z
        return self._postprocess

    def get_diagnostics_str(self, state):
        return f"acc. prob={float(jnp.mean(state.accept_prob)):.2f}"


class MALA(SamplerKernel):
    """:func:`numpyro_ebm.samplers.mala` as a NumPyro kernel (``step_size`` the noise variance,
    tuned in warm-up)."""

    def __init__(self, model=None, potential_fn=None, **options):
        super().__init__(samplers.get_sampler("mala", **options), model, potential_fn)


class ParallelTempering(SamplerKernel):
    """:func:`numpyro_ebm.samplers.parallel_tempering` (replica exchange over any inner move)
    as a NumPyro kernel."""

    def __init__(self, model=None, potential_fn=None, **options):
        super().__init__(samplers.get_sampler("parallel_tempering", **options), model, potential_fn)


class AnnealedLangevin(SamplerKernel):
    """:func:`numpyro_ebm.samplers.annealed_langevin` as a NumPyro kernel: each transition one
    sweep over the noise levels of a noise-conditional energy ``energy_fn(x, sigma)`` (or
    ``score_fn(x, sigma)`` with ``parameterization="score"``); ``mcmc.run`` needs
    ``init_params``."""

    def __init__(self, energy_fn: Callable, **options):
        super().__init__(
            samplers.get_sampler("annealed_langevin", **options), potential_fn=energy_fn
        )
        self._energy_fn = energy_fn

    def _target(self, rng_key, init_params, model_args, model_kwargs) -> Target:
        if init_params is None:
            raise ValueError("AnnealedLangevin needs init_params in mcmc.run")
        return Target(None, _one_chain(init_params), "noise_conditional", self._energy_fn)


def _check_start(logdensity_fn, position, batched: bool = False) -> None:
    """Refuse a start where the log density is not finite (where the start is concrete):
    every proposal from it is compared with an undefined density, so the chain would return
    its start as every draw."""
    fn = jax.vmap(logdensity_fn) if batched else logdensity_fn
    value = fn(position)
    if isinstance(value, Tracer):
        return
    value = np.asarray(value)
    if not np.isfinite(value).all():
        where = f" of chain(s) {np.flatnonzero(~np.isfinite(value)).tolist()}" if batched else ""
        raise ValueError(
            f"the potential at the initial point{where} is not finite (log density "
            f"{value.tolist()}): a chain cannot move from a point where the density is "
            "undefined; start where potential_fn (or the model's log density) is finite"
        )


def _same(z, previous) -> jax.Array:
    """Whether two draws are equal in every entry."""
    equal = jax.tree.map(lambda a, b: jnp.all(a == b), z, previous)
    return jnp.all(jnp.stack(jax.tree.leaves(equal)))


def _norm(z) -> jax.Array:
    """The Euclidean norm of all the entries of a draw."""
    return jnp.sqrt(
        sum(jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in jax.tree.leaves(z))
    )


def _one_chain(position):
    """A target's initial positions carry a chain axis: one chain here."""
    return jax.tree.map(lambda x: jnp.asarray(x)[None], position)


def _potential(target, inner, chain) -> jax.Array:
    if target.logdensity_fn is None:
        return jnp.asarray(jnp.nan, jnp.float32)
    return -jnp.asarray(target.logdensity_fn(chain.position(inner)), jnp.float32)
