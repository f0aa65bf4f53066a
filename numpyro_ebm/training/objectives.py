r"""Training objectives for energy-based and score models, as values with their own state.

An objective is an :class:`Objective`, a NamedTuple of two pure functions in the shape of
optax's ``GradientTransformation(init, update)``::

    init(key, params, example) -> state
    loss(params, batch, key, state) -> (value, (aux, new_state))

``example`` is one data example (an array of shape ``event_shape``, or anything with
``.shape`` and ``.dtype``); ``batch`` has shape ``(batch_size, *event_shape)``; ``key`` is a
PRNG key (every random draw is a function of it); ``value`` is the scalar to minimize and
``aux`` a dict of scalar diagnostics. The loss goes straight into
``jax.value_and_grad(objective.loss, has_aux=True)``. Stateless objectives (:func:`cd`,
:func:`score_matching`, :func:`sliced_score_matching`, :func:`dsm`, :func:`ncsn`,
:func:`nce`) have ``state = None``; :func:`pcd`'s state is its
:class:`~.buffer.ReplayBuffer`, created by its ``init``. An objective also carries its
``name`` and its ``options`` (JSON values), which :func:`~numpyro_ebm.training.fit` writes into
its checkpoints so that a resume with another objective is refused. :func:`from_loss` makes an
objective of any stateless ``loss(params, batch, key) -> (value, aux)``.

The model is a pure function of the parameters and *one* configuration (the objectives
``vmap`` over the batch), as :func:`numpyro_ebm.nets.as_pure` produces:

* an energy ``energy_fn(params, x) -> scalar``, whose score is
  :math:`s_\theta(x) = -\nabla_x E_\theta(x)` (``parameterization="energy"``), or
* a score ``score_fn(params, x) -> x``-shaped (``parameterization="score"``),
* with a trailing ``sigma`` argument for the noise-conditional models of :func:`ncsn`.

Arguments are checked when the factory is called, before anything is compiled.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm

from numpyro_ebm import sharding as _sharding
from numpyro_ebm._checks import check_int, check_positive, check_strictly_decreasing
from numpyro_ebm.energy import BoundLogDensity
from numpyro_ebm.kernels import ula
from numpyro_ebm.training import buffer as replay

__all__ = [
    "Objective",
    "cd",
    "dsm",
    "from_loss",
    "geometric_sigmas",
    "nce",
    "ncsn",
    "pcd",
    "score_matching",
    "sliced_score_matching",
]

KernelFactory = Callable[[Callable], SamplingAlgorithm]
_PARAMETERIZATIONS = ("energy", "score")
_PROJECTIONS = ("gaussian", "rademacher")


# --------------------------------------------------------------------------------------------
# the objective value


class Objective(NamedTuple):
    """A training objective: ``init(key, params, example) -> state`` and
    ``loss(params, batch, key, state) -> (value, (aux, new_state))`` (see the module's
    description), with its ``name`` and JSON-valued ``options`` (recorded in checkpoints)."""

    init: Callable
    loss: Callable
    name: str = "custom"
    options: Mapping[str, Any] = MappingProxyType({})


def _no_state(key, params, example) -> None:
    """The ``init`` of a stateless objective."""
    del key, params, example


def _label(fn) -> str | None:
    """A callable option as checkpoints record it: its qualified name (``None`` for none)."""
    if fn is None:
        return None
    return getattr(fn, "__qualname__", type(fn).__qualname__)


def _stateless(name: str, loss: Callable, **options) -> Objective:
    """The :class:`Objective` of a pure ``loss(params, batch, key) -> (value, aux)``."""

    def stateful(params, batch, key, state):
        value, aux = loss(params, batch, key)
        return value, (aux, state)

    return Objective(_no_state, stateful, name, MappingProxyType(options))


def from_loss(loss: Callable, name: str = "custom", **options) -> Objective:
    """The stateless :class:`Objective` of ``loss(params, batch, key) -> (value, aux)``.

    Parameters
    ----------
    loss
        A pure loss; ``aux`` is a dict of scalars (may be empty).
    name, options
        What checkpoints record of the objective (``options``: JSON values), so that a
        resume with another objective is refused.
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {loss!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    return _stateless(name, loss, **options)


# --------------------------------------------------------------------------------------------
# shared pieces


def _score_fn(model_fn: Callable, parameterization: str) -> Callable:
    """``score(params, x, *cond)`` for an energy (minus its x-gradient) or a score model."""
    if parameterization not in _PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {_PARAMETERIZATIONS}, got {parameterization!r}"
        )
    if not callable(model_fn):
        raise TypeError(f"model_fn must be callable, got {model_fn!r}")
    if parameterization == "score":
        return model_fn

    def score(params, x, *cond):
        return -jax.grad(lambda y: model_fn(params, y, *cond))(x)

    return score


def _sum_event(values: jax.Array, batch_ndim: int = 1) -> jax.Array:
    """Sum over the event axes, keeping the leading ``batch_ndim`` axes."""
    return jnp.sum(values, axis=tuple(range(batch_ndim, values.ndim)))


def _check_non_negative(name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return value


def _kernel_factory(step_size, kernel) -> KernelFactory:
    if (step_size is None) == (kernel is None):
        raise ValueError(
            "pass exactly one of step_size (for the default Langevin kernel) and kernel, "
            f"got step_size={step_size!r}, kernel={kernel!r}"
        )
    if kernel is not None:
        if not callable(kernel):
            raise TypeError(
                f"kernel must be a logdensity_fn -> SamplingAlgorithm factory, got {kernel!r}"
            )
        return kernel
    check_positive("step_size", step_size)
    return functools.partial(ula.as_top_level_api, step_size=step_size)


def _negatives(energy_fn, make_kernel, k, params, starts, key) -> jax.Array:
    """Run ``k`` kernel steps from each start on :math:`\\log p = -E_\\theta`; the ends carry
    no gradient (neither through the chain nor through the parameters)."""
    params = jax.lax.stop_gradient(params)
    algorithm = make_kernel(BoundLogDensity(energy_fn, params))

    def chain(start, chain_key):
        def step(state, step_key):
            state, _ = algorithm.step(step_key, state)
            return state, None

        keys = jax.random.split(chain_key, k)
        state, _ = jax.lax.scan(step, algorithm.init(start), keys[:-1])
        # The last step outside the loop: what it prepares for a next step (for ULA the
        # gradient at the end) is unused and compiled away, so k ULA steps cost k gradients.
        state, _ = algorithm.step(keys[-1], state)
        return state.position

    # Under fit's mesh the chains run split over the devices of its "data" axis.
    starts = _sharding.constrain(starts, "data")
    ends = jax.vmap(chain)(starts, jax.random.split(key, starts.shape[0]))
    return jax.lax.stop_gradient(ends)


def _contrastive(energy_fn, alpha, params, positives, negatives):
    energies = jax.vmap(energy_fn, (None, 0))
    e_pos = energies(params, positives)
    e_neg = energies(params, negatives)
    value = jnp.mean(e_pos) - jnp.mean(e_neg)
    value = value + alpha * (jnp.mean(e_pos**2) + jnp.mean(e_neg**2))
    return value, {"energy_pos": jnp.mean(e_pos), "energy_neg": jnp.mean(e_neg)}


# --------------------------------------------------------------------------------------------
# contrastive divergence


def cd(
    energy_fn: Callable,
    k: int = 10,
    step_size: float | None = None,
    alpha: float = 0.0,
    kernel: KernelFactory | None = None,
) -> Objective:
    r"""Contrastive divergence CD-k (Hinton 2002), with the energy regularizer of IGEBM.

    Negatives :math:`x^-` come from ``k`` steps of an MCMC kernel targeting
    :math:`p_\theta \propto e^{-E_\theta}` started at the data batch :math:`x^+`, and are held
    constant (stop-gradient):

    .. math::

        \mathcal{L}(\theta) = \overline{E_\theta(x^+)} - \overline{E_\theta(x^-)}
        + \alpha \left(\overline{E_\theta(x^+)^2} + \overline{E_\theta(x^-)^2}\right),

    bars denoting batch means. Its gradient estimates the maximum-likelihood gradient
    :math:`\mathbb{E}_{data}[\nabla_\theta E] - \mathbb{E}_{p_\theta}[\nabla_\theta E]`, biased
    by the short chains; the :math:`\alpha` term keeps energies near zero (Du & Mordatch 2019).

    Parameters
    ----------
    energy_fn
        ``energy_fn(params, x) -> scalar`` for one configuration.
    k
        Kernel steps per update, >= 1.
    step_size
        Step size :math:`\epsilon > 0` of the default kernel, the unadjusted Langevin algorithm
        of :mod:`numpyro_ebm.kernels.ula`. Give exactly one of ``step_size`` and
        ``kernel``.
    alpha
        Weight :math:`\alpha \ge 0` of the energy regularizer.
    kernel
        A factory ``logdensity_fn -> blackjax.SamplingAlgorithm``, e.g.
        ``lambda ld: blackjax.mala(ld, 1e-2)``; ``logdensity_fn`` is a
        :class:`~numpyro_ebm.energy.BoundLogDensity` (its ``params`` are the current ones).

    Returns
    -------
    ``Objective`` (stateless) whose loss gives ``(value, ({"energy_pos", "energy_neg"}, None))``.

    References
    ----------
    G. E. Hinton (2002). Training products of experts by minimizing contrastive divergence.
    Neural Computation 14(8).

    Y. Du and I. Mordatch (2019). Implicit generation and modeling with energy-based models.
    NeurIPS.
    """
    k = check_int("k", k)
    alpha = _check_non_negative("alpha", alpha)
    make_kernel = _kernel_factory(step_size, kernel)

    def loss(params, batch, key):
        negatives = _negatives(energy_fn, make_kernel, k, params, batch, key)
        return _contrastive(energy_fn, alpha, params, batch, negatives)

    return _stateless(
        "cd",
        loss,
        k=k,
        step_size=None if step_size is None else float(step_size),
        alpha=alpha,
        kernel=_label(kernel),
    )


def pcd(
    energy_fn: Callable,
    k: int = 10,
    step_size: float | None = None,
    alpha: float = 0.0,
    kernel: KernelFactory | None = None,
    reinit_fraction: float = 0.05,
    noise: replay.NoiseFn | None = None,
    capacity: int = 10_000,
) -> Objective:
    r"""Persistent contrastive divergence with a replay buffer (Tieleman 2008; Du & Mordatch
    2019).

    The loss is that of :func:`cd`, but the ``k`` kernel steps start from a batch drawn from a
    :class:`~.buffer.ReplayBuffer` (a fraction ``reinit_fraction`` of them restarted from
    ``noise``) and their ends are written back, so that the negative chains persist across
    updates:

    .. math::

        x^-_0 \sim \text{buffer} \cup q_{\text{noise}}, \qquad
        x^- = K_\theta^k(x^-_0), \qquad \text{buffer} \leftarrow x^-.

    The objective's ``init`` creates the buffer: ``capacity`` samples of ``noise`` shaped like
    one data example. The number of negatives equals the batch size (at most ``capacity``).

    Parameters
    ----------
    energy_fn, k, step_size, alpha, kernel
        As in :func:`cd`.
    reinit_fraction
        Probability that a chain restarts from noise, in :math:`[0, 1]` (5 % in IGEBM).
    noise
        ``noise(key, shape) -> array``; default :func:`~.buffer.uniform_noise` on
        :math:`[-1, 1]`.
    capacity
        Chains kept in the buffer (10,000 in IGEBM).

    Returns
    -------
    ``Objective`` whose ``init(key, params, example)`` fills a buffer of ``capacity`` noise
    samples of the example's shape and whose loss gives ``(value, (aux, new_buffer))``.

    References
    ----------
    T. Tieleman (2008). Training restricted Boltzmann machines using approximations to the
    likelihood gradient. ICML.

    Y. Du and I. Mordatch (2019). Implicit generation and modeling with energy-based models.
    NeurIPS.
    """
    k = check_int("k", k)
    alpha = _check_non_negative("alpha", alpha)
    make_kernel = _kernel_factory(step_size, kernel)
    if not 0.0 <= float(reinit_fraction) <= 1.0:
        raise ValueError(f"reinit_fraction must lie in [0, 1], got {reinit_fraction!r}")
    capacity = check_int("capacity", capacity)

    def loss(params, batch, key, state: replay.ReplayBuffer):
        key_start, key_chain = jax.random.split(key)
        starts, indices = replay.sample(key_start, state, batch.shape[0], noise, reinit_fraction)
        negatives = _negatives(energy_fn, make_kernel, k, params, starts, key_chain)
        value, aux = _contrastive(energy_fn, alpha, params, batch, negatives)
        return value, (aux, replay.update(state, indices, negatives))

    def init(key, params, example) -> replay.ReplayBuffer:
        del params
        return replay.init(key, capacity, np.shape(example), noise)

    options = dict(k=k, step_size=None if step_size is None else float(step_size), alpha=alpha)
    options.update(kernel=_label(kernel), reinit_fraction=float(reinit_fraction))
    options.update(noise=_label(noise), capacity=capacity)
    return Objective(init, loss, "pcd", MappingProxyType(options))


# --------------------------------------------------------------------------------------------
# score matching


def score_matching(model_fn: Callable, parameterization: str = "energy") -> Objective:
    r"""Exact (implicit) score matching (Hyvärinen 2005).

    .. math::

        \mathcal{L}(\theta) = \mathbb{E}_{data}\left[\tfrac12 \|s_\theta(x)\|^2
        + \operatorname{tr} \nabla_x s_\theta(x)\right],

    equal up to a constant to the Fisher divergence
    :math:`\tfrac12 \mathbb{E}\|s_\theta - \nabla_x \log p_{data}\|^2`. The Jacobian trace is
    exact (``jax.jacfwd``, the Hessian diagonal of :math:`-E_\theta` for an energy), at a cost of
    one forward-mode pass per dimension: for high dimensions use
    :func:`sliced_score_matching`.

    Parameters
    ----------
    model_fn
        ``energy_fn(params, x) -> scalar`` or ``score_fn(params, x) -> x``-shaped.
    parameterization
        ``"energy"`` (:math:`s_\theta = -\nabla_x E_\theta`) or ``"score"``.

    Returns
    -------
    ``Objective`` (stateless) whose loss gives ``(value, ({"score_sq_norm", "jacobian_trace"},
    None))``; ``key`` is
    unused (the objective is deterministic).

    References
    ----------
    A. Hyvärinen (2005). Estimation of non-normalized statistical models by score matching.
    JMLR 6.
    """
    score = _score_fn(model_fn, parameterization)

    def per_example(params, x):
        def flat_score(v):
            return score(params, v.reshape(x.shape)).reshape(-1)

        flat = x.reshape(-1)
        s = flat_score(flat)
        return 0.5 * jnp.sum(s**2), jnp.trace(jax.jacfwd(flat_score)(flat))

    def loss(params, batch, key):
        del key
        sq_norm, trace = jax.vmap(per_example, (None, 0))(params, batch)
        aux = {"score_sq_norm": jnp.mean(sq_norm), "jacobian_trace": jnp.mean(trace)}
        return jnp.mean(sq_norm + trace), aux

    return _stateless("score_matching", loss, parameterization=parameterization)


def sliced_score_matching(
    model_fn: Callable,
    num_projections: int = 1,
    distribution: str = "gaussian",
    variance_reduced: bool = False,
    parameterization: str = "energy",
) -> Objective:
    r"""Sliced score matching, SSM and SSM-VR (Song, Garg, Shi & Ermon 2019).

    The Jacobian trace of :func:`score_matching` is replaced by random projections
    :math:`v` with :math:`\mathbb{E}[v v^\top] = I`, each costing one Jacobian-vector product:

    .. math::

        \mathcal{L}_{SSM} = \mathbb{E}_{data}\mathbb{E}_v\left[v^\top \nabla_x s_\theta(x)\, v
        + \tfrac12 \left(v^\top s_\theta(x)\right)^2\right], \qquad
        \mathcal{L}_{SSM\text{-}VR} = \mathbb{E}_{data}\left[\tfrac12 \|s_\theta(x)\|^2
        + \mathbb{E}_v\, v^\top \nabla_x s_\theta(x)\, v\right],

    the second integrating the quadratic term analytically (lower variance, valid for Gaussian
    and Rademacher projections alike).

    Parameters
    ----------
    model_fn, parameterization
        As in :func:`score_matching`.
    num_projections
        Projections :math:`v` per example, >= 1.
    distribution
        ``"gaussian"`` (:math:`v \sim \mathcal{N}(0, I)`) or ``"rademacher"`` (entries
        :math:`\pm 1`).
    variance_reduced
        Use SSM-VR.

    Returns
    -------
    ``Objective`` (stateless) whose loss gives ``(value, ({"score_sq_norm", "jacobian_trace"},
    None))``, the aux
    entries being the (projected) estimates of the two terms.

    References
    ----------
    Y. Song, S. Garg, J. Shi and S. Ermon (2019). Sliced score matching: a scalable approach to
    density and score estimation. UAI.
    """
    num_projections = check_int("num_projections", num_projections)
    if distribution not in _PROJECTIONS:
        raise ValueError(f"distribution must be one of {_PROJECTIONS}, got {distribution!r}")
    draw = jax.random.normal if distribution == "gaussian" else jax.random.rademacher
    score = _score_fn(model_fn, parameterization)

    def per_example(params, x, key):
        projections = draw(key, (num_projections, *x.shape), x.dtype)
        s, jvp = jax.linearize(lambda y: score(params, y), x)
        trace = jnp.mean(_sum_event(projections * jax.vmap(jvp)(projections)))
        if variance_reduced:
            sq_norm = 0.5 * jnp.sum(s**2)
        else:
            sq_norm = 0.5 * jnp.mean(_sum_event(projections * s) ** 2)
        return sq_norm, trace

    def loss(params, batch, key):
        keys = jax.random.split(key, batch.shape[0])
        sq_norm, trace = jax.vmap(per_example, (None, 0, 0))(params, batch, keys)
        aux = {"score_sq_norm": jnp.mean(sq_norm), "jacobian_trace": jnp.mean(trace)}
        return jnp.mean(sq_norm + trace), aux

    return _stateless(
        "sliced_score_matching",
        loss,
        num_projections=num_projections,
        distribution=distribution,
        variance_reduced=bool(variance_reduced),
        parameterization=parameterization,
    )


def dsm(model_fn: Callable, sigma: float, parameterization: str = "energy") -> Objective:
    r"""Denoising score matching at one noise level (Vincent 2011).

    With :math:`\tilde x = x + \sigma z`, :math:`z \sim \mathcal{N}(0, I)`, the score is
    regressed on that of the Gaussian perturbation kernel:

    .. math::

        \mathcal{L}(\theta) = \mathbb{E}_{x, z}\left[\tfrac12 \left\| s_\theta(\tilde x)
        + \frac{\tilde x - x}{\sigma^2} \right\|^2\right],

    minimized by the score of the perturbed density
    :math:`p_\sigma = p_{data} * \mathcal{N}(0, \sigma^2 I)`.

    Parameters
    ----------
    model_fn, parameterization
        As in :func:`score_matching`.
    sigma
        Noise standard deviation :math:`\sigma > 0`.

    Returns
    -------
    ``Objective`` (stateless) whose loss gives ``(value, ({}, None))``.

    References
    ----------
    P. Vincent (2011). A connection between score matching and denoising autoencoders.
    Neural Computation 23(7).
    """
    check_positive("sigma", sigma)
    if np.ndim(sigma) != 0:
        raise ValueError(f"sigma must be a scalar, got {sigma!r}; for several levels use ncsn")
    score = jax.vmap(_score_fn(model_fn, parameterization), (None, 0))

    def loss(params, batch, key):
        z = jax.random.normal(key, batch.shape, batch.dtype)
        residual = score(params, batch + sigma * z) + z / sigma
        return jnp.mean(0.5 * _sum_event(residual**2)), {}

    return _stateless("dsm", loss, sigma=float(sigma), parameterization=parameterization)


def geometric_sigmas(sigma_max: float, sigma_min: float, num: int) -> jax.Array:
    r"""The noise ladder of NCSN: ``num`` levels from ``sigma_max`` down to ``sigma_min`` with
    a constant ratio, :math:`\sigma_i = \sigma_{max} (\sigma_{min}/\sigma_{max})^{i/(L-1)}`
    (Song & Ermon 2019)."""
    check_positive("sigma_max", sigma_max)
    check_positive("sigma_min", sigma_min)
    if not float(sigma_max) > float(sigma_min):
        raise ValueError(
            f"sigma_max must exceed sigma_min, got sigma_max={sigma_max!r}, sigma_min={sigma_min!r}"
        )
    num = check_int("num", num)
    if num < 2:
        raise ValueError(f"num must be >= 2 for a ladder from sigma_max to sigma_min, got {num}")
    return jnp.geomspace(sigma_max, sigma_min, num)


def ncsn(model_fn: Callable, sigmas, parameterization: str = "energy") -> Objective:
    r"""Multi-scale denoising score matching for a noise-conditional model (NCSN, Song &
    Ermon 2019).

    Each example gets a level :math:`\sigma` drawn uniformly from the ladder ``sigmas``
    (see :func:`geometric_sigmas`), and the DSM losses are weighted by
    :math:`\lambda(\sigma) = \sigma^2`, which makes every level contribute on the same scale:

    .. math::

        \mathcal{L}(\theta) = \mathbb{E}_{\sigma}\mathbb{E}_{x, z}\left[\tfrac12 \sigma^2
        \left\| s_\theta(x + \sigma z, \sigma) + \frac{z}{\sigma} \right\|^2\right]
        = \mathbb{E}\left[\tfrac12 \left\| \sigma s_\theta(x + \sigma z, \sigma) + z
        \right\|^2\right].

    Parameters
    ----------
    model_fn
        A noise-conditional ``energy_fn(params, x, sigma) -> scalar`` or
        ``score_fn(params, x, sigma) -> x``-shaped, e.g. from
        :class:`~numpyro_ebm.nets.NoiseConditionalMLP`.
    sigmas
        Strictly decreasing positive noise levels.
    parameterization
        ``"energy"`` or ``"score"``.

    Returns
    -------
    ``Objective`` (stateless) whose loss gives ``(value, ({}, None))``. A ``model_fn`` that does
    not take ``sigma``
    raises ``TypeError`` at the loss's first call (its tracing), before compilation.

    References
    ----------
    Y. Song and S. Ermon (2019). Generative modeling by estimating gradients of the data
    distribution. NeurIPS.
    """
    check_strictly_decreasing("sigmas", sigmas)
    sigmas = jnp.asarray(sigmas)
    score = jax.vmap(_score_fn(model_fn, parameterization), (None, 0, 0))

    def loss(params, batch, key):
        key_level, key_noise = jax.random.split(key)
        levels = jax.random.randint(key_level, (batch.shape[0],), 0, sigmas.shape[0])
        sigma = sigmas[levels].astype(batch.dtype)
        z = jax.random.normal(key_noise, batch.shape, batch.dtype)
        sigma_b = sigma.reshape((-1,) + (1,) * (batch.ndim - 1))
        try:
            s = score(params, batch + sigma_b * z, sigma)
        except TypeError as err:
            raise TypeError(
                "ncsn needs a noise-conditional model_fn(params, x, sigma); calling "
                f"{model_fn!r} with a sigma argument raised TypeError: {err}"
            ) from err
        return jnp.mean(0.5 * _sum_event((sigma_b * s + z) ** 2)), {}

    return _stateless(
        "ncsn",
        loss,
        sigmas=[float(x) for x in np.asarray(sigmas)],
        parameterization=parameterization,
    )


# --------------------------------------------------------------------------------------------
# noise-contrastive estimation


def nce(
    energy_fn: Callable, noise_log_prob: Callable, noise_sample: Callable, nu: int = 1
) -> Objective:
    r"""Noise-contrastive estimation with a learned log-normalizer (Gutmann & Hyvärinen 2010).

    The model's log density is :math:`\log p_\theta(x) = -E_\theta(x) - c` with a trainable
    scalar :math:`c` (an estimate of :math:`\log Z_\theta`). Data are told apart from
    :math:`\nu` times as many noise samples :math:`y \sim p_n` by logistic regression on
    :math:`G(u) = \log p_\theta(u) - \log p_n(u) - \log\nu`:

    .. math::

        \mathcal{L}(\theta, c) = -\frac1b\left[\sum_{i=1}^{b} \log\sigma(G(x_i))
        + \sum_{j=1}^{\nu b} \log\left(1 - \sigma(G(y_j))\right)\right],

    whose minimizer is consistent for :math:`\theta` *and* :math:`c` (no separate
    normalization) when :math:`p_n` is positive wherever the data are.

    ``params`` must be the dict ``{"net": net_params, "log_z": c}``: ``energy_fn`` receives
    ``params["net"]``; start ``log_z`` at a float array such as ``jnp.zeros(())``.

    Parameters
    ----------
    energy_fn
        ``energy_fn(net_params, x) -> scalar``.
    noise_log_prob
        ``noise_log_prob(x) -> scalar``, the noise log density of one configuration.
    noise_sample
        ``noise_sample(key, shape) -> array`` with ``shape = (n, *event_shape)``.
    nu
        Noise samples per data sample, an integer >= 1.

    Returns
    -------
    ``Objective`` (stateless) whose loss gives ``(value, ({"log_z", "accuracy"}, None))``,
    ``accuracy`` being the
    fraction of data and noise samples the classifier :math:`G > 0` labels correctly.

    References
    ----------
    M. Gutmann and A. Hyvärinen (2010). Noise-contrastive estimation: a new estimation
    principle for unnormalized statistical models. AISTATS.
    """
    nu = check_int("nu", nu)
    for name, fn in (("energy_fn", energy_fn), ("noise_log_prob", noise_log_prob)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {fn!r}")
    if not callable(noise_sample):
        raise TypeError(f"noise_sample must be callable, got {noise_sample!r}")
    log_nu = math.log(nu)

    def loss(params, batch, key):
        if not (isinstance(params, dict) and set(params) == {"net", "log_z"}):
            raise TypeError(
                "nce needs params = {'net': net_params, 'log_z': scalar}, got a "
                f"{type(params).__name__}"
                + (f" with keys {sorted(params)}" if isinstance(params, dict) else "")
            )
        net, log_z = params["net"], params["log_z"]

        def logit(x):
            return -energy_fn(net, x) - log_z - noise_log_prob(x) - log_nu

        shape = (nu * batch.shape[0], *batch.shape[1:])
        noise = noise_sample(key, shape)
        if jnp.shape(noise) != shape:  # static: raised when the loss is traced
            raise ValueError(
                f"noise_sample(key, shape) must return an array of that shape, {shape}, got "
                f"{jnp.shape(noise)}"
            )
        g_data = jax.vmap(logit)(batch)
        g_noise = jax.vmap(logit)(noise)
        value = -(
            jnp.mean(jax.nn.log_sigmoid(g_data)) + nu * jnp.mean(jax.nn.log_sigmoid(-g_noise))
        )
        correct = jnp.sum(g_data > 0) + jnp.sum(g_noise <= 0)
        accuracy = correct / (g_data.shape[0] + g_noise.shape[0])
        return value, {"log_z": jnp.asarray(log_z), "accuracy": accuracy}

    return _stateless(
        "nce", loss, nu=nu, noise_log_prob=_label(noise_log_prob), noise_sample=_label(noise_sample)
    )
