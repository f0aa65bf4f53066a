"""A NumPyro model as a log density on the unconstrained space, for BlackJAX kernels.

NumPyro maps every constrained latent site to :math:`\\mathbb{R}^d` with the bijection
``biject_to(site.support)`` and adds the log-Jacobian of the inverse map to the log joint. We
reuse exactly that machinery (``numpyro.infer.util.initialize_model``), so a BlackJAX kernel on
:func:`logdensity_from_model`'s ``logdensity_fn`` targets the same distribution as NumPyro's own
NUTS, and ``postprocess_fn`` maps its draws back to constrained values (and computes the
``numpyro.deterministic`` sites).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from numpyro import handlers
from numpyro.distributions import biject_to, constraints
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import constrain_fn, initialize_model, log_density, potential_energy

from numpyro_ebm import _cache
from numpyro_ebm._precision import full_precision
from numpyro_ebm._spins import flip, spin_values
from numpyro_ebm.energy import DiscreteEnergyDistribution, EnergyDistribution

__all__ = [
    "ModelDensity",
    "SubsampledModelError",
    "logdensity_from_model",
    "minibatch_logdensity_from_model",
]


class SubsampledModelError(ValueError):
    """The model subsamples its data, so its log density is random: only stochastic-gradient
    samplers (``sgld``, through :func:`minibatch_logdensity_from_model`) can use it."""


class ModelDensity(NamedTuple):
    """What a sampler needs from a model.

    ``logdensity_fn(z)``: log joint density of the unconstrained latent values ``z`` (a dict
    keyed by site name), Jacobian included, at full float32 matmul precision
    (:func:`numpyro_ebm._precision.full_precision`). ``initial_position``: a valid ``z``.
    ``postprocess_fn(z)``: the constrained values of the latent sites and the deterministic
    sites. ``discrete``: ``((name, support), ...)`` of the model's discrete latent sites, each
    of bits (``"01"``) or spins (``"pm1"``); ``z`` then holds their values as they are (no
    transform) beside the continuous sites' unconstrained ones, for a sampler that moves
    them by Gibbs-type kernels (:func:`~numpyro_ebm.samplers.hmc_gibbs`). ``intractable``:
    ``((site, latent), ...)`` of the energy sites whose normalizer depends on a latent site
    (their log density then omits :math:`\\log Z(\\theta)`; only
    :func:`~numpyro_ebm.samplers.exchange` samples such a model).
    """

    logdensity_fn: Callable[[Any], jax.Array]
    initial_position: Any
    postprocess_fn: Callable[[Any], dict]
    discrete: tuple = ()
    intractable: tuple = ()


def logdensity_from_model(model: Callable, *args, key: jax.Array, **kwargs) -> ModelDensity:
    """Turn a NumPyro model into ``(logdensity_fn, initial_position, postprocess_fn)``.

    Parameters
    ----------
    model
        A NumPyro model (it may contain :class:`~numpyro_ebm.EnergyDistribution` sites and
        :func:`~numpyro_ebm.energy_factor` terms).
    *args, **kwargs
        The model's arguments; they are fixed into the returned functions.
    key
        PRNG key for the initial position (NumPyro's ``init_to_uniform``: uniform in
        ``(-2, 2)`` on the unconstrained space, retried until the density is finite).

    Returns
    -------
    ModelDensity
        A named tuple ``(logdensity_fn, initial_position, postprocess_fn)``.
    """
    if not callable(model):
        raise TypeError(f"model must be a callable NumPyro model, got {model!r}")
    density = density_of(model, args, kwargs, key, model_key(model, args, kwargs))
    if density.intractable:
        raise ValueError(normalizer_message(*density.intractable[0]))
    if density.discrete:
        raise ValueError(gradient_cannot_move(density.discrete))
    return density


def gradient_cannot_move(discrete: tuple) -> str:
    """Why a gradient-based sampler refuses a model with the discrete latent sites
    ``discrete`` (:attr:`ModelDensity.discrete`), and what samples it."""
    name, support = discrete[0]
    values = "spins" if support == "pm1" else "bits"
    return (
        f"the model has a discrete latent site ({name!r}) of {values}, which a "
        "gradient-based sampler cannot move: sample the model with "
        "ne.samplers.hmc_gibbs(discrete=..., continuous=...) (Gibbs-type moves of the discrete "
        "sites within HMC), or marginalize the site out"
    )


def density_of(model: Callable, args: tuple, kwargs: dict, key, content: str) -> ModelDensity:
    """:func:`logdensity_from_model` of a model whose :func:`model_key` is ``content``, its
    discrete latent sites (bits or spins) held in the positions as they are
    (:attr:`ModelDensity.discrete`): what does not depend on the key is built once per
    content."""
    logdensity_fn, postprocess_fn, initialize, discrete, intractable = _cache.cached(
        ("model", content), lambda: _model_pieces(model, args, kwargs)
    )
    z, potential, grad = initialize(key)
    if not isinstance(potential, Tracer):  # under a trace (a jitted caller) nothing to check
        valid = np.isfinite(np.asarray(potential))
        for leaf in jax.tree.leaves(grad):
            valid &= np.isfinite(np.asarray(leaf)).reshape((*valid.shape, -1)).all(-1)
        if not valid.all():
            raise ValueError(_NO_VALID_START)
    return ModelDensity(logdensity_fn, z, postprocess_fn, discrete, intractable)


def model_key(model: Callable, args: tuple, kwargs: dict) -> str:
    """A digest of what ``model`` computes with these arguments (see :mod:`numpyro_ebm._cache`).

    The model is traced once (``jax.make_jaxpr``, nothing compiled) with its latent sites at
    NumPyro's ``init_to_uniform`` values (through their supports' transforms; discrete sites
    at uniform draws of their two values, :func:`initial_value`), its log joint
    density and the values of its sample, deterministic and ``param`` sites by name: the
    digest covers its code, distributions, supports and site names, its arguments, and the
    data, globals and parameters it reads. Equal digests compute the same log density and
    constrained values, so their programs are shared.

    Raises ``ValueError`` if two traces differ (the model draws Python or NumPy random numbers
    when it runs)."""

    def run():
        seeded = handlers.seed(model, rng_seed=0)
        seeded = handlers.substitute(seeded, substitute_fn=initial_value)
        log_joint, trace = log_density(seeded, args, kwargs, {})
        valued = ("sample", "deterministic", *PARAM_SITES)
        return log_joint, {k: site["value"] for k, site in trace.items() if site["type"] in valued}

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Some algorithms will automatically enumerate")
        key, _ = _cache.trace(run)
        _cache.check_pure(run, (), key, "the model")
    return key


def discrete_support(site: dict) -> str:
    """The two values of a discrete latent site: its own (``"pm1"`` or ``"01"``) for a
    :class:`~numpyro_ebm.DiscreteEnergyDistribution`, ``"01"`` for a boolean support
    (``Bernoulli``); ``ValueError`` naming the site otherwise."""
    base = base_distribution(site["fn"])
    if isinstance(base, DiscreteEnergyDistribution):
        return base.spins
    support = site["fn"].support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.boolean:
        return "01"
    raise ValueError(
        f"the model has a discrete latent site ({site['name']!r}, {type(base).__name__} with "
        f"support {support}) that is neither bits nor spins: gradient-based samplers cannot "
        "move it, and ne.samplers.hmc_gibbs moves sites of two values (a Bernoulli site or a "
        "DiscreteEnergyDistribution); marginalize it out (numpyro's enumeration) or use "
        "NumPyro's DiscreteHMCGibbs"
    )


def initial_value(site: dict):
    """NumPyro's ``init_to_uniform`` for a continuous site; for a discrete latent site of bits
    or spins (:func:`discrete_support`), each entry one of its two values with probability
    1/2, whatever its prior (an energy prior of many sites has no exact sampler)."""
    if site["type"] == "sample" and not site["is_observed"] and site["fn"].support.is_discrete:
        return _uniform(site["kwargs"]["rng_key"], discrete_support(site), site["fn"].shape())
    return init_to_uniform(site)


def _uniform(key, support: str, shape) -> jax.Array:
    """Each entry one of the two values of ``support`` with probability 1/2, as floats."""
    low, high = spin_values(support)
    bits = jax.random.bernoulli(key, 0.5, shape)
    return jnp.where(bits, high, low).astype(jnp.result_type(float))


_NO_VALID_START = (
    "the model's log density is not finite at any of the initial points tried (100 uniform "
    "draws in (-2, 2) on the unconstrained space): check its support, its observed data and "
    "any energy in it for NaN or infinite values"
)


def _model_pieces(model: Callable, args, kwargs):
    """What does not depend on the key, built once per model content (:func:`model_key`):
    ``(logdensity_fn, postprocess_fn, initialize, discrete, intractable)``.

    ``logdensity_fn(z)`` is NumPyro's ``potential_energy`` (negated) and ``postprocess_fn`` its
    ``constrain_fn`` (deterministic sites included) of the model with its ``param`` sites fixed
    at a prototype trace's values, as ``initialize_model`` prepares it, and its discrete latent
    sites (``discrete``, :func:`discrete_support`) conditioned on their values in ``z``: the
    log joint then holds their log probabilities, and the continuous sites' Jacobians only.
    ``initialize(key)`` is ``initialize_model`` compiled (``init_to_uniform``, retried until
    the density and its gradient are finite; the discrete sites drawn first, uniformly),
    returning ``(z, potential energy, gradient)``: one compilation serves every later key,
    where calling ``initialize_model`` eagerly compiles its search loop afresh each time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Some algorithms will automatically enumerate")
        # latent values as the initializer draws them (improper priors cannot be sampled)
        seeded = handlers.substitute(handlers.seed(model, rng_seed=0), substitute_fn=initial_value)
        prototype = handlers.trace(seeded).get_trace(*args, **kwargs)
    discrete = []
    for name, site in prototype.items():
        if site["type"] == "sample" and not site["is_observed"] and site["fn"].support.is_discrete:
            discrete.append((name, discrete_support(site)))
        size, subsample_size = site["args"] if site["type"] == "plate" else (None, None)
        if subsample_size is not None and subsample_size < size:
            raise SubsampledModelError(
                f"the model subsamples its data (plate {name!r} draws subsample_size="
                f"{subsample_size} of {size}), so its log density is random; use "
                "minibatch_logdensity_from_model (stochastic-gradient samplers such as 'sgld')"
            )
    fixed = {k: site["value"] for k, site in prototype.items() if site["type"] in PARAM_SITES}
    prepared = handlers.substitute(handlers.seed(model, rng_seed=0), data=fixed)
    intractable = _dependent_normalizers(prepared, args, kwargs, prototype)
    names = [name for name, _ in discrete]
    shapes = {name: prototype[name]["fn"].shape() for name in names}

    def given(z):
        """The continuous sites' values, and the model with the discrete ones conditioned."""
        values = {name: z[name] for name in names}
        continuous = {k: v for k, v in z.items() if k not in values}
        return continuous, handlers.condition(prepared, data=values), values

    @full_precision
    def logdensity_fn(z):
        continuous, conditioned, _ = given(z)
        return -potential_energy(conditioned, args, kwargs, continuous)

    def postprocess_fn(z):
        continuous, conditioned, values = given(z)
        return (
            constrain_fn(conditioned, args, kwargs, continuous, return_deterministic=True) | values
        )

    def initialize_one(key):
        values = {}
        for i, (name, support) in enumerate(discrete):
            bit_key = jax.random.fold_in(key, i + 1)
            values[name] = _uniform(bit_key, support, shapes[name])
        conditioned = handlers.condition(prepared, data=values)
        z, potential, grad = initialize_model(
            key, conditioned, model_args=args, model_kwargs=kwargs
        ).param_info
        return z | values, potential, grad

    @jax.jit
    def initialize(key):
        typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        batched = key.ndim > (0 if typed else 1)  # a raw key is a (2,) array
        return jax.vmap(initialize_one)(key) if batched else initialize_one(key)

    return logdensity_fn, postprocess_fn, initialize, tuple(discrete), intractable


#: Random configurations at which an energy site's log density is compared (plus its own value).
NORMALIZER_PROBES = 4


def _dependent_normalizers(model, args, kwargs, prototype) -> tuple:
    r"""The energy sites (:class:`~numpyro_ebm.EnergyDistribution`) whose normalizer depends on a
    latent site, as ``((site, latent), ...)``: an observed configuration whose energy or
    temperature depends on a latent, or an energy prior whose temperature (or energy) does.
    Such a density :math:`e^{-E_\theta(x)/T_\theta} / Z(\theta)` enters the model without
    :math:`Z(\theta)`, so a density-based sampler would target the wrong posterior (doubly
    intractable: Murray, Ghahramani & MacKay 2006).

    Each energy site's log density is evaluated at its own value and at
    :data:`NORMALIZER_PROBES` random configurations of its support, with the model's other
    latent sites at their initial values and then each of them moved (on its unconstrained
    scale): any change means :math:`E_\theta` varies with that latent, hence :math:`Z(\theta)`."""
    sites = {
        name: site
        for name, site in prototype.items()
        if site["type"] == "sample"
        and isinstance(base_distribution(site["fn"]), EnergyDistribution)
    }
    latents = {
        name: site["value"]
        for name, site in prototype.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    if not sites or not latents:
        return ()
    found = {}
    rng = np.random.default_rng(0)

    def probes(site):
        value = np.asarray(site["value"])
        support = site["fn"].support
        if support.is_discrete:  # a DiscreteEnergyDistribution: its two spin values
            spins = spin_values(base_distribution(site["fn"]).spins)
            random = rng.choice(spins, size=(NORMALIZER_PROBES, *value.shape))
        else:
            random = value + rng.normal(size=(NORMALIZER_PROBES, *value.shape))
        return np.concatenate([value[None], random]).astype(value.dtype)

    points = {name: probes(site) for name, site in sites.items()}

    def log_probs(values):
        trace = handlers.trace(handlers.substitute(model, data=values)).get_trace(*args, **kwargs)
        return {
            name: np.asarray(jax.vmap(trace[name]["fn"].log_prob)(points[name])) for name in sites
        }

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Some algorithms will automatically enumerate")
        base = log_probs(latents)
        for latent, value in latents.items():
            support = prototype[latent]["fn"].support
            if support.is_discrete:  # bits or spins: every entry to its other value
                moved = flip(jnp.asarray(value), discrete_support(prototype[latent]))
            else:
                transform = biject_to(support)
                unconstrained = transform.inv(value)
                moved = transform(unconstrained + 0.5 + rng.normal(size=np.shape(unconstrained)))
            changed = log_probs({**latents, latent: moved})
            for name in sites:
                if name == latent or name in found:
                    continue
                if not np.allclose(changed[name], base[name], rtol=1e-5, atol=1e-6):
                    found[name] = latent
    return tuple(found.items())


def normalizer_message(site: str, latent: str) -> str:
    """Why a density-based sampler refuses a model whose energy site ``site`` has a
    normalizer that depends on the latent site ``latent``, and what samples it."""
    return (
        f"the energy site {site!r} has a normalizer that depends on the latent site "
        f"{latent!r}: its energy or temperature changes with {latent!r}, so log Z({latent}) "
        "belongs in the posterior and no density-based sampler (nuts, hmc, mala, "
        "parallel_tempering, ...) can include it. This posterior is doubly intractable "
        f"(Murray, Ghahramani & MacKay 2006): sample it with ne.samplers.exchange() (the "
        "exchange algorithm) or ne.samplers.pseudo_likelihood() (calibrated pseudo-likelihood, "
        f"faster), for an observed {site!r}, or fix {latent!r}"
    )


def trace_at(target, position) -> dict:
    """The trace of a model target's model (``target.fn``, with its arguments) at the latent
    values of ``position`` (unconstrained; discrete sites as they are)."""
    values = target.postprocess_fn(position)
    model = handlers.substitute(handlers.seed(target.fn, rng_seed=0), data=values)
    return handlers.trace(model).get_trace(*target.model_args, **(target.model_kwargs or {}))


def base_distribution(fn):
    """The distribution under NumPyro's wrappers (a plate's ``ExpandedDistribution``,
    ``to_event``'s ``Independent``, a mask)."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


#: Site types whose values are fixed, not sampled (``numpyro.param``, ``numpyro.module``).
PARAM_SITES = ("param", "mutable")


def minibatch_logdensity_from_model(
    model: Callable, *args, key: jax.Array, **kwargs
) -> tuple[Callable, Any, Callable]:
    """Like :func:`logdensity_from_model` for a model that subsamples its data with
    ``numpyro.plate(name, N, subsample_size=b)`` (and ``numpyro.subsample``).

    Returns ``(logdensity_fn, initial_position, postprocess_fn)`` where
    ``logdensity_fn(rng_key, z)`` draws a fresh minibatch from ``rng_key`` for every call: the
    likelihood of the ``b`` drawn points is scaled by ``N / b`` (NumPyro's plate scaling), an
    unbiased estimate of the full log density, as stochastic-gradient MCMC needs (Welling &
    Teh 2011). Exact samplers (NUTS, MALA) must not use it.
    """
    info = initialize_model(
        key, handlers.seed(model, rng_seed=key), model_args=args, model_kwargs=kwargs
    )

    @full_precision
    def logdensity_fn(rng_key, z):
        return -potential_energy(handlers.seed(model, rng_seed=rng_key), args, kwargs, z)

    # deterministic sites are computed on the one minibatch drawn from `key`
    return logdensity_fn, info.param_info.z, info.postprocess_fn
