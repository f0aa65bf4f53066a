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
* :class:`DiscreteEnergyDistribution` -- the same on binary configurations
  (:math:`\{-1,+1\}^d` or :math:`\{0,1\}^d`), with exact enumeration and sampling when small;
* :func:`energy_factor` -- adds :math:`-E(x)/T` to a model's log joint (``numpyro.factor``).

Every face checks its energy: a non-scalar output raises ``TypeError`` when first traced, and a
NaN or infinite value at a concrete (not traced) point raises ``ValueError``.
"""

from __future__ import annotations

import math
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
from numpyro_ebm._spins import check_spins, spin_values

__all__ = [
    "BoundEnergy",
    "BoundLogDensity",
    "DiscreteEnergyDistribution",
    "EnergyDistribution",
    "at_noise_level",
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


class BoundEnergy(NamedTuple):
    """A parametric energy with its parameters bound: ``BoundEnergy(energy_fn, params)(x) ==
    energy_fn(params, x)``. As a target of :func:`numpyro_ebm.sample`, it keeps the parameters
    in sight of samplers that exploit a model's structure: block Gibbs finds the RBM itself,
    through the bound method, in
    ``ne.sample(BoundEnergy(rbm.free_energy, params), "block_gibbs", support="01",
    event_shape=(rbm.n_visible,), key=key)``."""

    energy_fn: Callable
    params: Any

    def __call__(self, x) -> jax.Array:
        return self.energy_fn(self.params, x)


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
    if not isinstance(value, jax.Array | np.ndarray | np.generic | int | float | Tracer):
        raise TypeError(
            f"{name} must return one real number (a scalar array) for one configuration, got "
            f"a {type(value).__name__}"
        )
    dtype = getattr(value, "dtype", None)
    dtype = np.result_type(value) if dtype is None else dtype
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{name} must return a real number, got a value of dtype {dtype}")
    if jnp.shape(value) != ():
        raise TypeError(
            f"{name} must return a scalar for one configuration, got an output of shape "
            f"{jnp.shape(value)}; batch with jax.vmap instead of inside the energy"
        )
    # NumPy, not jax.numpy: a constant (a Python number) stays concrete under jit, where a
    # jax.numpy operation on it would be traced
    if not isinstance(value, Tracer) and not np.isfinite(np.asarray(value)):
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
    sigma
        For a noise-conditional energy ``E(x, sigma)`` (trained with
        :func:`~numpyro_ebm.training.objectives.ncsn`): the noise level at which the prior is
        evaluated, :math:`\log p(x) = -E(x, \sigma)/T`, usually the smallest one. A model with
        such a prior can be sampled by posterior annealed Langevin dynamics
        (``ne.samplers.annealed_langevin``), which moves ``sigma`` through its schedule
        (:func:`at_noise_level`) while the likelihood stays as it is.

    Notes
    -----
    Leading dimensions of a value passed to ``log_prob`` are batch dimensions: the energy is
    ``vmap``-ed over them. ``sample`` raises: draw from this distribution with
    :func:`numpyro_ebm.sample` or with NUTS on a model that contains it.
    """

    arg_constraints: ClassVar[dict] = {"temperature": constraints.positive}
    pytree_data_fields = ("temperature", "sigma")
    pytree_aux_fields = ("energy",)

    def __init__(
        self,
        energy: Callable,
        event_shape: Sequence[int],
        temperature: float = 1.0,
        *,
        sigma: float | None = None,
        validate_args: bool | None = None,
    ):
        if not callable(energy):
            raise TypeError(f"energy must be callable, got {energy!r}")
        if not isinstance(event_shape, Sequence) or isinstance(event_shape, str):
            raise TypeError(f"event_shape must be a tuple of ints, got {event_shape!r}")
        event_shape = tuple(check_int("event_shape", d) for d in event_shape)
        check_positive("temperature", temperature)
        if sigma is not None:
            check_positive("sigma", sigma)
        self.energy = energy
        self.temperature = temperature
        self.sigma = sigma
        self._check_event_shape(self._one, event_shape)
        super().__init__(batch_shape=(), event_shape=event_shape, validate_args=validate_args)

    def _one(self, x) -> jax.Array:
        """The energy of one configuration (at the noise level ``sigma``, if any)."""
        return self.energy(x) if self.sigma is None else self.energy(x, self.sigma)

    def at_noise_level(self, sigma) -> EnergyDistribution:
        """The same noise-conditional prior at another noise level."""
        if self.sigma is None:
            raise ValueError("at_noise_level needs a noise-conditional prior (sigma= given)")
        return EnergyDistribution(self.energy, self.event_shape, self.temperature, sigma=sigma)

    @property
    def noise_conditional(self) -> bool:
        return self.sigma is not None

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
        energies = jax.vmap(self._one)(flat)
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


class _AtNoiseLevel(numpyro.primitives.Messenger):
    def __init__(self, fn, sigma):
        self.sigma = sigma
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and is_noise_conditional(msg.get("fn")):
            msg["fn"] = _at_level(msg["fn"], self.sigma)


def is_noise_conditional(fn) -> bool:
    """Whether a site's distribution is a noise-conditional :class:`EnergyDistribution`, also
    when a plate has expanded it (NumPyro's ``ExpandedDistribution``)."""
    if isinstance(fn, dist.ExpandedDistribution):
        fn = fn.base_dist
    return getattr(fn, "noise_conditional", False)


def _at_level(fn, sigma):
    if isinstance(fn, dist.ExpandedDistribution):
        return fn.base_dist.at_noise_level(sigma).expand(fn.batch_shape)
    return fn.at_noise_level(sigma)


def at_noise_level(model: Callable, sigma) -> Callable:
    """``model`` with every noise-conditional :class:`EnergyDistribution` site evaluated at the
    noise level ``sigma`` (a NumPyro effect handler); the rest of the model is unchanged."""
    return _AtNoiseLevel(model, sigma)


class _PlusMinusOne(constraints.Constraint):
    r"""Values in :math:`\{-1, +1\}`."""

    is_discrete = True

    def __call__(self, x):
        return (x == -1) | (x == 1)

    def feasible_like(self, prototype):
        return jnp.ones_like(prototype)


_SUPPORTS = {"pm1": _PlusMinusOne(), "01": constraints.boolean}


class DiscreteEnergyDistribution(EnergyDistribution):
    r"""An unnormalized distribution :math:`\log p(x) = -E(x)/T` on binary configurations,
    :math:`x \in \{-1, +1\}^{d}` (``support="pm1"``) or :math:`\{0, 1\}^{d}` (``"01"``).

    ``log_prob`` omits :math:`\log Z_T`, as :class:`EnergyDistribution` does. When the event has
    at most 16 sites (:math:`2^{16}` states), :meth:`enumerate_support` lists every state, so the
    site can be enumerated or marginalized in a NumPyro model, and :meth:`sample` draws exactly
    from the normalized law (a categorical over the enumerated log probabilities); larger
    events are sampled with the discrete kernels (:mod:`numpyro_ebm.kernels.gibbs`,
    ``checkerboard``, ``gibbs_with_gradients``, ``swendsen_wang``).

    Parameters
    ----------
    energy
        ``E(x) -> scalar`` for one configuration of shape ``event_shape`` (e.g.
        ``Ising(L).energy`` with ``temperature=1 / beta``).
    event_shape
        Shape of one configuration.
    support
        ``"pm1"`` or ``"01"``, the values of a site.
    temperature
        :math:`T > 0`.

    Notes
    -----
    With ``validate_args=True``, ``log_prob`` raises ``ValueError`` for a concrete value holding
    anything but the two values of ``support`` (NumPyro's own check would only warn).
    """

    pytree_aux_fields = ("energy", "spins")
    max_enumerated_sites: ClassVar[int] = 16

    def __init__(
        self,
        energy: Callable,
        event_shape: Sequence[int],
        support: str = "pm1",
        temperature: float = 1.0,
        *,
        validate_args: bool | None = None,
    ):
        spin_values(support)
        self.spins = support
        super().__init__(energy, event_shape, temperature, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.independent(_SUPPORTS[self.spins], len(self.event_shape))

    has_enumerate_support = True

    def _all_states(self) -> jax.Array:
        num_sites = math.prod(self.event_shape)
        if num_sites > self.max_enumerated_sites:
            raise NotImplementedError(
                f"event_shape={self.event_shape} has 2^{num_sites} states, more than the "
                f"2^{self.max_enumerated_sites} this distribution enumerates or samples exactly: "
                "draw from it with the discrete kernels of numpyro_ebm.kernels (gibbs, "
                "checkerboard, gibbs_with_gradients, swendsen_wang)"
            )
        low, high = spin_values(self.spins)
        bits = (jnp.arange(2**num_sites)[:, None] >> jnp.arange(num_sites)) & 1
        states = low + (high - low) * bits.astype(jnp.result_type(float))
        return states.reshape((-1, *self.event_shape))

    def enumerate_support(self, expand: bool = True) -> jax.Array:
        """Every configuration, shape ``(2^d, *event_shape)``, state :math:`k` having site
        :math:`i` (row-major) high iff bit :math:`i` of :math:`k` is set."""
        return self._all_states()

    def log_prob(self, value):
        if self._validate_args:
            check_spins("value", value, self.spins)
        return super().log_prob(value)

    def sample(self, key, sample_shape=()):
        """Exact draws, by enumeration, when the event has at most 16 sites: a block of states
        by the Gumbel-max trick on the blocks' log masses, then a state within it, which draws
        :math:`2 \\cdot 2^{d/2}` Gumbel variables per configuration instead of :math:`2^d`."""
        states = self._all_states()
        logits = -jax.vmap(self.energy)(states) / self.temperature
        num_sites = math.prod(self.event_shape)
        blocks = logits.reshape((2 ** (num_sites // 2), -1))
        block_key, state_key = jax.random.split(key)
        shape = tuple(sample_shape)
        block = jax.random.categorical(block_key, jax.nn.logsumexp(blocks, axis=1), shape=shape)
        within = jax.random.categorical(state_key, blocks[block])
        return states[block * blocks.shape[1] + within]


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
