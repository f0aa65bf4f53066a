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
from numpyro import handlers
from numpyro.infer.util import initialize_model, potential_energy

from numpyro_ebm._precision import full_precision

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
    sites.
    """

    logdensity_fn: Callable[[Any], jax.Array]
    initial_position: Any
    postprocess_fn: Callable[[Any], dict]


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
    try:
        with warnings.catch_warnings():
            # about enumerating discrete latent sites, which we refuse just below
            warnings.filterwarnings("ignore", "Some algorithms will automatically enumerate")
            info = initialize_model(key, model, model_args=args, model_kwargs=kwargs)
    except ImportError as error:  # NumPyro asks for funsor to enumerate discrete latent sites
        raise ValueError(
            "the model has a discrete latent site, which a gradient-based sampler cannot move: "
            "marginalize it out, or give it as an energy of bits or spins to a discrete sampler "
            f"(sample(energy, 'gibbs', support='01' | 'pm1')); NumPyro said: {error}"
        ) from None
    except RuntimeError as error:
        if "Cannot find valid initial parameters" not in str(error):
            raise
        raise ValueError(
            "the model's log density is not finite at any of the initial points tried (100 "
            "uniform draws in (-2, 2) on the unconstrained space): check its support, its "
            "observed data and any energy in it for NaN or infinite values"
        ) from None
    for name, site in info.model_trace.items():
        size, subsample_size = site["args"] if site["type"] == "plate" else (None, None)
        if subsample_size is not None and subsample_size < size:
            raise SubsampledModelError(
                f"the model subsamples its data (plate {name!r} draws subsample_size="
                f"{site['args'][1]} of {site['args'][0]}), so its log density is random; use "
                "minibatch_logdensity_from_model (stochastic-gradient samplers such as 'sgld')"
            )

    @full_precision
    def logdensity_fn(z):
        return -info.potential_fn(z)

    return ModelDensity(logdensity_fn, info.param_info.z, info.postprocess_fn)


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
