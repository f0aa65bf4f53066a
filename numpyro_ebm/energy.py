r"""The energy contract and its three NumPyro faces.

An **energy** is a pure JAX function of one configuration, :math:`E(x) \in \mathbb{R}`, with
``x`` an array or a pytree. It defines the unnormalized density

.. math::

    p_T(x) = \frac{1}{Z_T} \exp\!\left(-\frac{E(x)}{T}\right),
    \qquad Z_T = \int \exp(-E(x)/T)\, dx,

at temperature :math:`T > 0`, with :math:`Z_T` intractable. Batching is ``jax.vmap``'s job, never
the energy's. Noise-conditional energies are :math:`E(x, \sigma)` and score models
:math:`s(x, \sigma)` (see :mod:`numpyro_ebm.nets`).

NumPyro speaks *potentials* (:math:`U = -\log p` up to a constant) and BlackJAX *log densities*;
this module keeps one sign per name and converts at the border:

* :func:`potential_fn` -- :math:`U(x) = E(x)/T`, for ``numpyro.infer.NUTS(potential_fn=...)``;
* :class:`EnergyDistribution` -- a NumPyro distribution with unnormalized
  :math:`\log p(x) = -E(x)/T`, usable as a prior or a likelihood;
* :func:`energy_factor` -- adds :math:`-E(x)/T` to a model's log joint (``numpyro.factor``).

Every face checks its energy: a non-scalar output raises ``TypeError`` when first traced, and a
NaN or infinite value at a concrete (not traced) point raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.core import Tracer
from numpyro.distributions import constraints

from numpyro_ebm._checks import check_int, check_positive, check_real_array
from numpyro_ebm._precision import full_precision

__all__ = [
    "BoundLogDensity",
    "EnergyDistribution",
    "energy_factor",
    "evaluate_energy",
    "potential_fn",
]


class BoundLogDensity(NamedTuple):
    r"""The log density :math:`\log p_\theta(x) = -E_\theta(x)` of a parametric energy, with
    :math:`\theta` bound: ``BoundLogDensity(energy_fn, params)(x) == -energy_fn(params, x)``.

    Training objectives hand their negative-phase kernel factories this value rather than an
    anonymous closure, so that a kernel which exploits a model's structure (block Gibbs in a
    restricted Boltzmann machine needs its weights, not only its free energy) can read
    ``params``; every other kernel just calls it.
    """

    energy_fn: Callable
    params: Any

    def __call__(self, x) -> jax.Array:
        return -self.energy_fn(self.params, x)


@full_precision
def evaluate_energy(energy: Callable, x, *args, name: str = "energy") -> jax.Array:
    """Evaluate ``energy(x, *args)`` and check that it honours the energy contract.

    The energy is evaluated at full float32 matmul precision
    (:func:`numpyro_ebm._precision.full_precision`), as are :func:`potential_fn`,
    :func:`energy_factor` and :meth:`EnergyDistribution.log_prob`, which call it or share it.

    The output must be a scalar (checked from the traced shape, so also under ``jit``) and,
    where the value is concrete, finite.

    Raises
    ------
    TypeError
        If the energy does not return a real scalar.
    ValueError
        If the energy returns NaN or an infinity at a concrete ``x``.
    """
    value = energy(x, *args)
    dtype = getattr(value, "dtype", None)
    dtype = np.result_type(value) if dtype is None else dtype
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{name} must return a real number, got a value of dtype {dtype}")
    if jnp.shape(value) != ():
        raise TypeError(
            f"{name} must return a scalar for one configuration, got an output of shape "
            f"{jnp.shape(value)}; batch with jax.vmap instead of inside the energy"
        )
    if not isinstance(value, Tracer) and not jnp.isfinite(value):
        raise ValueError(f"{name} is not finite at the given point: {name}(x) = {value}")
    return value


def potential_fn(
    energy: Callable, temperature: float = 1.0, *, example=None
) -> Callable[..., jax.Array]:
    r"""The potential :math:`U(x) = E(x) / T` of an energy, in NumPyro's convention.

    The result plugs into ``numpyro.infer.NUTS(potential_fn=...)`` or ``HMC(potential_fn=...)``
    (pass ``init_params`` of the energy's input structure to ``MCMC.run``).

    Parameters
    ----------
    energy
        ``E(x) -> scalar``.
    temperature
        :math:`T > 0`.
    example
        Optional configuration (typically the initial point) at which the energy is evaluated
        right away, so that a non-scalar, NaN or infinite energy is reported before sampling.
    """
    check_positive("temperature", temperature)
    if example is not None:
        evaluate_energy(energy, example)

    def potential(x):
        return evaluate_energy(energy, x) / temperature

    return potential


class EnergyDistribution(dist.Distribution):
    r"""An unnormalized distribution :math:`\log p(x) = -E(x)/T` on :math:`\mathbb{R}^{d}`.

    ``log_prob`` omits :math:`\log Z_T`: the distribution is exact for inference over ``x``
    (MCMC on a latent site, a learned prior) and for terms whose normalizer does not depend on
    the other parameters; it is *not* a normalized likelihood when the energy's parameters are
    themselves inferred.

    Parameters
    ----------
    energy
        ``E(x) -> scalar`` for one configuration of shape ``event_shape``.
    event_shape
        Shape of one configuration. Checked at construction by tracing ``energy`` abstractly
        (``jax.eval_shape``, no computation).
    temperature
        :math:`T > 0`.

    Notes
    -----
    Leading dimensions of a value passed to ``log_prob`` are batch dimensions: the energy is
    ``vmap``-ed over them. ``sample`` raises: draw from this distribution with
    :func:`numpyro_ebm.sample` or with NUTS on a model that contains it.
    """

    arg_constraints: ClassVar[dict] = {"temperature": constraints.positive}
    pytree_data_fields = ("temperature",)
    pytree_aux_fields = ("energy",)

    def __init__(
        self,
        energy: Callable,
        event_shape: Sequence[int],
        temperature: float = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        if not callable(energy):
            raise TypeError(f"energy must be callable, got {energy!r}")
        if not isinstance(event_shape, Sequence) or isinstance(event_shape, str):
            raise TypeError(f"event_shape must be a tuple of ints, got {event_shape!r}")
        event_shape = tuple(check_int("event_shape", d) for d in event_shape)
        check_positive("temperature", temperature)
        self.energy = energy
        self.temperature = temperature
        self._check_event_shape(energy, event_shape)
        super().__init__(batch_shape=(), event_shape=event_shape, validate_args=validate_args)

    @staticmethod
    def _check_event_shape(energy: Callable, event_shape: tuple[int, ...]) -> None:
        probe = jax.ShapeDtypeStruct(event_shape, jnp.float32)
        try:
            out = jax.eval_shape(energy, probe)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"event_shape={event_shape} does not fit the energy: calling it on an array "
                f"of that shape fails with {type(error).__name__}: {error}"
            ) from error
        if jnp.shape(out) != ():
            raise TypeError(
                f"energy must return a scalar for one configuration of event_shape="
                f"{event_shape}, got an output of shape {jnp.shape(out)}"
            )

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    @full_precision
    def log_prob(self, value):
        value = check_real_array("value", value)
        event_ndim = len(self.event_shape)
        if value.shape[value.ndim - event_ndim :] != self.event_shape or value.ndim < event_ndim:
            raise ValueError(
                f"value of shape {value.shape} does not end with event_shape={self.event_shape}"
            )
        batch_shape = value.shape[: value.ndim - event_ndim]
        flat = value.reshape((-1, *self.event_shape))
        energies = jax.vmap(self.energy)(flat)
        if not isinstance(energies, Tracer) and not jnp.all(jnp.isfinite(energies)):
            raise ValueError(
                f"energy is not finite at {int(jnp.sum(~jnp.isfinite(energies)))} "
                f"of the {flat.shape[0]} given points"
            )
        return -energies.reshape(batch_shape) / self.temperature

    _no_sample_message = (
        "EnergyDistribution cannot be sampled directly (its normalizing constant is unknown): "
        "draw from it with numpyro_ebm.sample(energy, sampler='nuts' | 'mala' | "
        "'annealed_langevin' | 'parallel_tempering' | 'tempered_smc', ...) or with NUTS on a "
        "model that contains it"
    )

    def sample(self, key, sample_shape=()):
        raise NotImplementedError(self._no_sample_message)


def energy_factor(name: str, energy: Callable, x, temperature: float = 1.0) -> jax.Array:
    r"""Add :math:`-E(x)/T` to the log density of the NumPyro model being run.

    Use it inside any model for a learned prior or likelihood term::

        def model(y):
            x = numpyro.sample("x", dist.Normal(0, 10).expand([64]).to_event(1))
            energy_factor("prior", learned_energy, x)      # p(x) ∝ exp(-E(x))
            numpyro.sample("y", dist.Normal(x, 0.1).to_event(1), obs=y)

    Parameters
    ----------
    name
        Name of the factor site.
    energy
        ``E(x) -> scalar``.
    x
        One configuration (any value of the model: a latent site, a transform of several).
    temperature
        :math:`T > 0`.

    Returns
    -------
    The log-density term :math:`-E(x)/T` that was added.
    """
    check_positive("temperature", temperature)
    log_factor = -evaluate_energy(energy, x) / temperature
    numpyro.factor(name, log_factor)
    return log_factor
