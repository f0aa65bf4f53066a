r"""Block Gibbs sampling of bipartite models (restricted Boltzmann machines), in BlackJAX's
form.

In an RBM the units of one layer are conditionally independent given the other layer, so a
sweep draws the whole hidden layer, then the whole visible layer:

.. math::

    h \sim p(h \mid v) = \prod_j p(h_j \mid v), \qquad
    v' \sim p(v \mid h) = \prod_i p(v_i \mid h).

The sweep leaves the joint :math:`p(v, h)` invariant, hence the visible marginal
:math:`p(v) \propto e^{-F(v)}` too; every proposal is accepted (``acceptance_rate`` is 1) and no
gradient is evaluated. The chain lives on the visible layer: the state's ``position`` is
:math:`v` (what contrastive divergence and :func:`numpyro_ebm.sample` read), ``hidden`` the
last hidden draw and ``logdensity`` :math:`-F(v)`.

The kernel needs the model's conditionals, not only its log density, so it takes the model
(:class:`~numpyro_ebm.models.rbm.BernoulliRBM`,
:class:`~numpyro_ebm.models.rbm.GaussianBernoulliRBM` or any object with ``free_energy``,
``hidden_probs``, ``sample_hidden`` and ``sample_visible``) and its parameters. As the
negative-phase kernel of :func:`numpyro_ebm.training.cd` and
:func:`~numpyro_ebm.training.pcd` it reads them from the
:class:`~numpyro_ebm.energy.BoundLogDensity` the objective hands over::

    loss = training.cd(rbm.free_energy, k=1, kernel=block_gibbs.kernel_factory(rbm))

References
----------
**Tempered, on the joint.** Replica exchange cannot temper the visible marginal of an RBM by
:math:`F(v) / T` and keep block Gibbs: :math:`e^{-F(v)/T}` is no RBM's marginal. It tempers the
joint instead, :math:`p_T(v, h) \propto e^{-E(v, h) / T}`, the RBM of parameters
:math:`\theta / T` (the energy is linear in them), whose replicas are :math:`(v, h)` pairs and
whose swaps weigh the joint energy (Desjardins, Courville, Bengio, Vincent & Delalleau 2010):
:func:`tempered_factory` and :func:`joint_logdensity` are the two halves that
:func:`numpyro_ebm.kernels.replica_exchange.build_kernel` takes. The cold replica's :math:`v`
is a draw of :math:`p(v)`.

S. Geman and D. Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
restoration of images. IEEE TPAMI 6(6).

G. E. Hinton (2002). Training products of experts by minimizing contrastive divergence.
Neural Computation 14(8).

G. Desjardins, A. Courville, Y. Bengio, P. Vincent and O. Delalleau (2010). Tempered Markov
chain Monte Carlo for training of restricted Boltzmann machines. AISTATS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.types import PRNGKey
from jax.core import Tracer

from numpyro_ebm._checks import all_finite, structure_checks_skipped
from numpyro_ebm.energy import BoundLogDensity

__all__ = [
    "BlockGibbsInfo",
    "BlockGibbsState",
    "JointState",
    "as_top_level_api",
    "build_kernel",
    "init",
    "joint_logdensity",
    "kernel_factory",
    "tempered_factory",
    "with_visible_terms",
]

_MODEL_METHODS = ("free_energy", "hidden_probs", "sample_hidden", "sample_visible")


class BlockGibbsState(NamedTuple):
    """``position``: the visible configuration :math:`v`; ``hidden``: the last hidden draw
    (at :func:`init` without a key, :math:`p(h = 1 \\mid v)` instead); ``logdensity``:
    :math:`-F(v)`."""

    position: jax.Array
    hidden: jax.Array
    logdensity: jax.Array


class BlockGibbsInfo(NamedTuple):
    """``acceptance_rate``: 1 (Gibbs moves are always accepted); ``is_finite``: whether the new
    state and its log density are finite; ``num_grad_evals``: 0."""

    acceptance_rate: jax.Array
    is_finite: jax.Array
    num_grad_evals: jax.Array


def _check_model(model) -> None:
    missing = [name for name in _MODEL_METHODS if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(
            f"model must be a bipartite model (an RBM) with methods {_MODEL_METHODS}; "
            f"{model!r} lacks {missing}"
        )


def init(position: jax.Array, model, params, rng_key: PRNGKey | None = None) -> BlockGibbsState:
    """The state at the visible configuration ``position``; with ``rng_key`` the hidden layer
    is drawn from :math:`p(h \\mid v)`, else it holds those probabilities (the first step
    draws it afresh either way)."""
    position = jnp.asarray(position)
    if rng_key is None:
        hidden = model.hidden_probs(params, position)
    else:
        hidden = model.sample_hidden(rng_key, params, position)
    return BlockGibbsState(position, hidden, -model.free_energy(params, position))


def build_kernel(model) -> Callable:
    """The sweep ``kernel(rng_key, state, params) -> (state, info)`` of ``model``."""
    _check_model(model)

    def kernel(
        rng_key: PRNGKey, state: BlockGibbsState, params
    ) -> tuple[BlockGibbsState, BlockGibbsInfo]:
        key_hidden, key_visible = jax.random.split(rng_key)
        hidden = model.sample_hidden(key_hidden, params, state.position)
        visible = model.sample_visible(key_visible, params, hidden)
        logdensity = -model.free_energy(params, visible)
        is_finite = all_finite(visible) & jnp.isfinite(logdensity)
        info = BlockGibbsInfo(
            jnp.asarray(1.0, logdensity.dtype), is_finite, jnp.asarray(0, jnp.int32)
        )
        return BlockGibbsState(visible, hidden, logdensity), info

    return kernel


def as_top_level_api(
    logdensity_fn: BoundLogDensity | None = None, *, model, params: Any = None
) -> SamplingAlgorithm:
    """Block Gibbs on ``model`` as a ``blackjax.SamplingAlgorithm``.

    Parameters
    ----------
    logdensity_fn
        A :class:`~numpyro_ebm.energy.BoundLogDensity` of ``model.free_energy`` (what
        :func:`~numpyro_ebm.training.cd` and :func:`~numpyro_ebm.training.pcd` pass to their
        kernel): the parameters are read from it. Give it or ``params``, not both.
    model
        The bipartite model, e.g. a :class:`~numpyro_ebm.models.rbm.BernoulliRBM`.
    params
        The model's parameters, to sample a given (trained) RBM directly.

    Returns
    -------
    ``SamplingAlgorithm(init, step)``: ``init(position, rng_key=None)`` and
    ``step(rng_key, state) -> (state, info)``, for one chain (``vmap`` for several).

    Raises
    ------
    TypeError
        If ``model`` lacks the conditionals, or ``logdensity_fn`` is not a ``BoundLogDensity``.
    ValueError
        If both or neither of ``logdensity_fn`` and ``params`` are given, or
        ``logdensity_fn`` binds another energy than ``model.free_energy`` (block Gibbs would
        then sample a different distribution from the one the objective assumes).
    """
    _check_model(model)
    if (logdensity_fn is None) == (params is None):
        raise ValueError(
            "pass exactly one of logdensity_fn (a BoundLogDensity, as the training objectives "
            f"do) and params, got logdensity_fn={logdensity_fn!r}, params given: "
            f"{params is not None}"
        )
    if logdensity_fn is not None:
        if not isinstance(logdensity_fn, BoundLogDensity):
            raise TypeError(
                "block Gibbs needs the model's parameters: logdensity_fn must be a "
                f"numpyro_ebm.energy.BoundLogDensity, got {logdensity_fn!r}; or pass params="
            )
        if logdensity_fn.energy_fn != model.free_energy:
            raise ValueError(
                "block Gibbs samples the model's own distribution, so logdensity_fn must bind "
                f"model.free_energy, got energy_fn={logdensity_fn.energy_fn!r}"
            )
        params = logdensity_fn.params
    kernel = build_kernel(model)

    def init_fn(position, rng_key: PRNGKey | None = None) -> BlockGibbsState:
        return init(position, model, params, rng_key)

    def step_fn(rng_key: PRNGKey, state: BlockGibbsState):
        return kernel(rng_key, state, params)

    return SamplingAlgorithm(init_fn, step_fn)


def kernel_factory(model) -> Callable[[BoundLogDensity], SamplingAlgorithm]:
    """``logdensity_fn -> SamplingAlgorithm``: the ``kernel=`` argument of
    :func:`~numpyro_ebm.training.cd` and :func:`~numpyro_ebm.training.pcd` for ``model``
    (``functools.partial(as_top_level_api, model=model)``, checked now)."""
    _check_model(model)
    return functools.partial(as_top_level_api, model=model)


class JointState(NamedTuple):
    """A replica of the tempered joint: ``position``, the pair ``(v, h)``."""

    position: tuple[jax.Array, jax.Array]


def _check_tempered(model) -> None:
    _check_model(model)
    if not callable(getattr(model, "tempered", None)) or not callable(
        getattr(model, "energy", None)
    ):
        raise TypeError(
            "replica exchange over block Gibbs tempers the joint p(v, h) through the model's "
            f"tempered(params, T) and energy(params, v, h), which {model!r} lacks (a "
            "BernoulliRBM has them)"
        )


def joint_logdensity(model, params) -> Callable:
    """:math:`\\log p(v, h) = -E(v, h)` up to a constant, of a ``(v, h)`` pair: the untempered
    log density of replica exchange over :func:`tempered_factory`'s moves."""
    _check_tempered(model)
    return lambda position: -model.energy(params, *position)


def tempered_factory(model, params) -> Callable[[Callable, jax.Array], SamplingAlgorithm]:
    """``factory(logdensity_fn, T)`` for :func:`numpyro_ebm.kernels.replica_exchange.build_kernel`:
    a block Gibbs sweep of the joint of the RBM ``model.tempered(params, T)``, :math:`h \\sim
    p_T(h \\mid v)` then :math:`v \\sim p_T(v \\mid h)`, on ``(v, h)`` positions (the pair
    after a sweep is a draw of :math:`p_T(v, h)` when :math:`v` was one of :math:`p_T(v)`).
    ``logdensity_fn`` (the tempered :func:`joint_logdensity`) is not read: the conditionals
    are the model's. Every move is accepted; no gradient is evaluated."""
    _check_tempered(model)

    def factory(logdensity_fn, temperature) -> SamplingAlgorithm:
        del logdensity_fn
        scaled = model.tempered(params, temperature)

        def init_fn(position, rng_key: PRNGKey | None = None) -> JointState:
            return JointState(tuple(position))

        def step_fn(rng_key: PRNGKey, state: JointState):
            key_hidden, key_visible = jax.random.split(rng_key)
            hidden = model.sample_hidden(key_hidden, scaled, state.position[0])
            visible = model.sample_visible(key_visible, scaled, hidden)
            one = jnp.ones((), visible.dtype)
            info = BlockGibbsInfo(one, all_finite(visible), jnp.asarray(0, jnp.int32))
            return JointState((visible, hidden)), info

        return SamplingAlgorithm(init_fn, step_fn)

    return factory


def _unit_terms_check(rest: Callable, n: int) -> None:
    """Raise ``ValueError`` if ``rest`` couples two visible units: its Hessian times random
    directions must equal the Hessian's diagonal (its product with ones, when there is no
    coupling) times them, at an all-ones and two random configurations (a fixed key). Returns at
    once inside :func:`~numpyro_ebm._checks.structure_checked`."""
    if structure_checks_skipped():
        return
    grad = jax.grad(rest)
    with jax.ensure_compile_time_eval():
        key_x, key_u = jax.random.split(jax.random.key(0))
        xs = jnp.concatenate([jnp.ones((1, n)), jax.random.bernoulli(key_x, 0.5, (2, n)) * 1.0])
        us = jax.random.normal(key_u, xs.shape)

        def miss(x, u):
            hvp = jax.jvp(grad, (x,), (u,))[1]
            diagonal = jax.jvp(grad, (x,), (jnp.ones_like(x),))[1]
            return jnp.abs(hvp - diagonal * u), jnp.abs(hvp)

        gaps, scale = jax.jit(jax.vmap(miss))(xs, us)
    if isinstance(gaps, Tracer):
        return
    gaps, scale = np.asarray(gaps), np.asarray(scale)
    if np.any(gaps > 1e-4 * (1.0 + scale.max())):
        unit = int(np.unravel_index(int(np.argmax(gaps)), gaps.shape)[1])
        raise ValueError(
            "block_gibbs draws all visible units at once given the hidden ones, exact only when "
            "the rest of the conditional (beyond the RBM's free energy) is a sum of terms of "
            f"single units, but it couples visible unit {unit} with others; sample the site "
            "with gibbs, which assumes no structure"
        )


def with_visible_terms(model, params, logdensity_fn: Callable) -> SamplingAlgorithm:
    r"""Block Gibbs for :math:`p(v) \propto e^{-F(v) + R(v)}`: an RBM's visible marginal times
    terms :math:`R(v) = \sum_i r_i(v_i)` of single visible units (the conditional of an RBM prior
    on the binary latents of a model, given its other sites: a likelihood of each unit), with
    ``logdensity_fn`` :math:`= -F + R` and ``model``/``params`` the RBM (binary visible units).

    The joint :math:`q(v, h) \propto e^{-E(v, h) + R(v)}` has :math:`p(v)` as its visible
    marginal, and both its conditionals factorize: :math:`h \sim p(h \mid v)` is the RBM's, and
    each :math:`v_i` given :math:`h` is a bit of logit :math:`-\partial E / \partial v_i +
    r_i(1) - r_i(0)` (the energy is affine in each :math:`v_i`). A sweep draws :math:`h`
    afresh, then :math:`v` (data augmentation, Tanner & Wong 1987): a Gibbs sampler of
    :math:`q` whose :math:`v` alone is a Markov chain leaving :math:`p` invariant. The
    differences :math:`r_i(1) - r_i(0)` are evaluated directly (``logdensity_fn`` at each unit
    set to 1 and to 0, :math:`2n` evaluations); ``init`` checks on concrete values that
    :math:`R` couples no two units.

    References
    ----------
    M. A. Tanner and W. H. Wong (1987). The calculation of posterior distributions by data
    augmentation. JASA 82(398).
    """
    _check_model(model)
    if not getattr(model, "binary_visible", True):
        raise ValueError(f"with_visible_terms needs binary visible units, {model!r} has real ones")

    def rest(v):
        return logdensity_fn(v) + model.free_energy(params, v)

    def init_fn(position, rng_key: PRNGKey | None = None) -> BlockGibbsState:
        position = jnp.asarray(position, jnp.result_type(float))
        _unit_terms_check(rest, position.shape[-1])
        state = init(position, model, params, rng_key)
        return state._replace(logdensity=logdensity_fn(position))

    def step_fn(rng_key: PRNGKey, state: BlockGibbsState):
        key_hidden, key_visible = jax.random.split(rng_key)
        v = state.position
        hidden = model.sample_hidden(key_hidden, params, v)
        logits = jax.grad(lambda x: -model.energy(params, x, hidden))(v)
        eye = jnp.eye(v.shape[-1], dtype=bool)
        up = jax.vmap(rest)(jnp.where(eye, 1.0, v))
        down = jax.vmap(rest)(jnp.where(eye, 0.0, v))
        visible = jax.random.bernoulli(key_visible, jax.nn.sigmoid(logits + up - down))
        visible = visible.astype(v.dtype)
        logdensity = logdensity_fn(visible)
        is_finite = all_finite(visible) & jnp.isfinite(logdensity)
        info = BlockGibbsInfo(
            jnp.asarray(1.0, logdensity.dtype), is_finite, jnp.asarray(0, jnp.int32)
        )
        return BlockGibbsState(visible, hidden, logdensity), info

    return SamplingAlgorithm(init_fn, step_fn)
