r"""Replica exchange (parallel tempering) over any BlackJAX kernel.

:math:`K` replicas run at temperatures :math:`1 = T_0 < T_1 < \dots < T_{K-1}`; replica
:math:`k` targets the tempered density

.. math::

    \pi_k(x) \propto p(x)^{1 / T_k},

so hot replicas cross the barriers that trap the cold one (Swendsen & Wang 1986; Geyer 1991).
Each step moves every replica with its own kernel, built by
``kernel_factory(tempered_logdensity_fn, T_k)``, then proposes swaps between neighbours
:math:`(i, i + 1)`, accepted with probability

.. math::

    \min\left(1, \exp\left[\left(\log p(x_{i+1}) - \log p(x_i)\right)
    \left(\frac{1}{T_i} - \frac{1}{T_{i+1}}\right)\right]\right),

which for :math:`p \propto e^{-E}` is :math:`\min(1, e^{(E(x_i) - E(x_{i+1}))(1/T_i -
1/T_{i+1})})`. Swaps follow the deterministic even-odd scheme (Okabe et al. 2001): even pairs
:math:`(0, 1), (2, 3), \dots` on even steps, odd pairs :math:`(1, 2), (3, 4), \dots` on odd
steps. Its non-reversible index process makes round trips along the ladder in :math:`O(K)`
rather than :math:`O(K^2)` steps (Syed et al. 2021).

A replica that received a new position is re-initialised with its kernel's ``init``, so the
log density and gradient its state caches belong to its own temperature; that costs one
``init`` (one gradient evaluation for gradient-based kernels) per replica and step. The
untempered log density of every replica is evaluated once per step for the swap test.

References
----------
Swendsen, R. H. & Wang, J.-S. (1986). Replica Monte Carlo simulation of spin-glasses.
Physical Review Letters 57(21).
Geyer, C. J. (1991). Markov chain Monte Carlo maximum likelihood. Computing Science and
Statistics: Proceedings of the 23rd Symposium on the Interface.
Okabe, T., Kawata, M., Okamoto, Y. & Mikami, M. (2001). Replica-exchange Monte Carlo method for
the isobaric-isothermal ensemble. Chemical Physics Letters 335(5-6).
Syed, S., Bouchard-Côté, A., Deligiannidis, G. & Doucet, A. (2021). Non-reversible parallel
tempering: a scalable highly parallel MCMC scheme. JRSS B 84(2).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.types import ArrayLikeTree, ArrayTree, PRNGKey
from jax.core import Tracer

from numpyro_ebm._checks import all_finite, check_positive

__all__ = [
    "ReplicaExchangeInfo",
    "ReplicaExchangeState",
    "as_top_level_api",
    "build_kernel",
    "geometric_ladder",
    "init",
]


class ReplicaExchangeState(NamedTuple):
    """``inner_states``: the replicas' kernel states stacked along a leading axis of length
    :math:`K` (replica ``k`` at temperature :math:`T_k`); ``logdensity``: the untempered
    :math:`\\log p` of each replica's position, shape ``(K,)``; ``step``: steps taken, whose
    parity picks the even or odd swap pairs. ``position`` is the cold (:math:`T = 1`) replica's
    position, the draw; it indexes the leading axis, so for states batched outside ``vmap``
    read ``states.inner_states.position[:, 0]`` (or ``jax.vmap(lambda s: s.position)``)."""

    inner_states: ArrayTree
    logdensity: jax.Array
    step: jax.Array

    @property
    def position(self) -> ArrayTree:
        return jax.tree.map(lambda x: x[0], self.inner_states.position)


class ReplicaExchangeInfo(NamedTuple):
    """``swap_acceptance``: acceptance probability of each neighbour pair :math:`(i, i + 1)`,
    shape ``(K - 1,)``, NaN for pairs not attempted this step; ``swap_attempted`` and
    ``is_swapped``: which pairs were proposed and which swapped; ``inner_info``: the cold
    replica's kernel info; ``is_finite``: whether every replica's position and log density are
    finite; ``num_grad_evals``: evaluations spent by the exchange move on top of the inner
    kernels, :math:`K` re-initialisations (one gradient evaluation each for gradient-based
    kernels; the inner kernels' own cost is :math:`K` times that of one inner step)."""

    swap_acceptance: jax.Array
    swap_attempted: jax.Array
    is_swapped: jax.Array
    inner_info: NamedTuple
    is_finite: jax.Array
    num_grad_evals: jax.Array


def _check_ladder(temperatures) -> None:
    check_positive("temperatures", temperatures)
    if isinstance(temperatures, Tracer):
        return
    ladder = np.asarray(temperatures)
    if ladder.ndim != 1 or ladder.size < 1 or ladder[0] != 1 or np.any(np.diff(ladder) <= 0):
        raise ValueError(
            "temperatures must be a 1-D strictly increasing ladder starting at exactly 1, "
            f"got {temperatures!r}"
        )


def geometric_ladder(num_replicas: int, max_temperature: float) -> jax.Array:
    """Geometric temperatures :math:`T_k = T_{\\max}^{k / (K - 1)}`, :math:`k = 0..K-1`.

    A geometric ladder gives equal swap acceptance between neighbours when the heat capacity is
    constant, e.g. for Gaussian targets (Kofke 2002, J. Chem. Phys. 117(15)).
    """
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int | np.integer):
        raise ValueError(f"num_replicas must be an integer >= 2, got {num_replicas!r}")
    if num_replicas < 2:
        raise ValueError(f"num_replicas must be an integer >= 2, got {num_replicas!r}")
    check_positive("max_temperature", max_temperature)
    if not max_temperature > 1:
        raise ValueError(f"max_temperature must be > 1, got {max_temperature!r}")
    exponents = np.arange(num_replicas) / (num_replicas - 1)
    return jnp.asarray(float(max_temperature) ** exponents)


def _tempered_algorithm(
    logdensity_fn: Callable, kernel_factory: Callable, temperature: jax.Array
) -> SamplingAlgorithm:
    return kernel_factory(lambda x: logdensity_fn(x) / temperature, temperature)


def _init_replicas(rng_key, positions, temperatures, make_algorithm) -> ArrayTree:
    if rng_key is None:
        return jax.vmap(lambda x, t: make_algorithm(t).init(x))(positions, temperatures)
    keys = jax.random.split(rng_key, temperatures.shape[0])
    return jax.vmap(lambda k, x, t: make_algorithm(t).init(x, k))(keys, positions, temperatures)


def init(
    positions: ArrayLikeTree,
    logdensity_fn: Callable,
    temperatures: jax.Array,
    kernel_factory: Callable,
    rng_key: PRNGKey | None = None,
) -> ReplicaExchangeState:
    """Initialise the replicas at ``positions`` (leading axis of length :math:`K`, one
    position per temperature); ``rng_key`` is passed to the inner ``init`` when given."""
    _check_ladder(temperatures)
    temperatures = jnp.asarray(temperatures)
    make_algorithm = partial(_tempered_algorithm, logdensity_fn, kernel_factory)
    inner_states = _init_replicas(rng_key, positions, temperatures, make_algorithm)
    logdensity = jax.vmap(logdensity_fn)(inner_states.position)
    return ReplicaExchangeState(inner_states, logdensity, jnp.zeros((), jnp.int32))


def _even_odd_swaps(rng_key, logdensity, temperatures, parity):
    """Propose the swaps of pairs ``(i, i + 1)`` with ``i % 2 == parity``; return the
    permutation of replicas and, per pair, the acceptance probability (NaN if not attempted),
    whether it was attempted and whether it swapped."""
    num_replicas = logdensity.shape[0]
    log_ratio = (logdensity[1:] - logdensity[:-1]) * (1 / temperatures[:-1] - 1 / temperatures[1:])
    acceptance = jnp.minimum(1.0, jnp.exp(log_ratio))
    attempted = jnp.arange(num_replicas - 1) % 2 == parity
    swapped = attempted & (jax.random.uniform(rng_key, (num_replicas - 1,)) < acceptance)
    # Attempted pairs are disjoint: replica i takes i + 1 if pair (i, i + 1) swapped, i - 1 if
    # pair (i - 1, i) did.
    no = jnp.zeros((1,), bool)
    takes_next = jnp.concatenate([swapped, no])
    takes_previous = jnp.concatenate([no, swapped])
    permutation = jnp.arange(num_replicas) + takes_next - takes_previous
    return permutation, jnp.where(attempted, acceptance, jnp.nan), attempted, swapped


def build_kernel(kernel_factory: Callable) -> Callable:
    """Build ``kernel(rng_key, state, logdensity_fn, temperatures)``.

    Parameters
    ----------
    kernel_factory
        ``kernel_factory(tempered_logdensity_fn, temperature) -> SamplingAlgorithm``, e.g.
        ``lambda ld, t: blackjax.mala(ld, step_size * t)``. It is called inside ``vmap`` with
        a traced temperature, so it must not branch on its value in Python.
    """

    def kernel(
        rng_key: PRNGKey,
        state: ReplicaExchangeState,
        logdensity_fn: Callable,
        temperatures: jax.Array,
    ) -> tuple[ReplicaExchangeState, ReplicaExchangeInfo]:
        temperatures = jnp.asarray(temperatures)
        num_replicas = temperatures.shape[0]
        make_algorithm = partial(_tempered_algorithm, logdensity_fn, kernel_factory)
        step_key, swap_key, init_key = jax.random.split(rng_key, 3)

        inner_states, inner_infos = jax.vmap(lambda k, s, t: make_algorithm(t).step(k, s))(
            jax.random.split(step_key, num_replicas), state.inner_states, temperatures
        )
        logdensity = jax.vmap(logdensity_fn)(inner_states.position)
        permutation, acceptance, attempted, swapped = _even_odd_swaps(
            swap_key, logdensity, temperatures, state.step % 2
        )

        positions = jax.tree.map(lambda x: x[permutation], inner_states.position)
        reinitialised = _init_replicas(init_key, positions, temperatures, make_algorithm)
        moved = permutation != jnp.arange(num_replicas)
        inner_states = jax.tree.map(
            lambda new, old: jnp.where(moved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
            reinitialised,
            inner_states,
        )
        logdensity = logdensity[permutation]

        new_state = ReplicaExchangeState(inner_states, logdensity, state.step + 1)
        info = ReplicaExchangeInfo(
            swap_acceptance=acceptance,
            swap_attempted=attempted,
            is_swapped=swapped,
            inner_info=jax.tree.map(lambda x: x[0], inner_infos),
            is_finite=all_finite(inner_states.position) & jnp.all(jnp.isfinite(logdensity)),
            num_grad_evals=jnp.asarray(num_replicas, jnp.int32),
        )
        return new_state, info

    return kernel


def as_top_level_api(
    logdensity_fn: Callable, temperatures: jax.Array, kernel_factory: Callable
) -> SamplingAlgorithm:
    """Replica exchange as a ``blackjax.SamplingAlgorithm``; ``state.position`` is the cold
    chain.

    Parameters
    ----------
    logdensity_fn
        :math:`\\log p` of the target, up to a constant (``-E`` for an energy).
    temperatures
        1-D ladder :math:`1 = T_0 < T_1 < \\dots < T_{K-1}`, e.g. :func:`geometric_ladder`.
    kernel_factory
        ``kernel_factory(tempered_logdensity_fn, temperature) -> SamplingAlgorithm``; see
        :func:`build_kernel`.

    Examples
    --------
    .. code::

        sampler = as_top_level_api(
            logdensity, geometric_ladder(8, 50.0), lambda ld, t: blackjax.mala(ld, 0.1 * t)
        )
        state = sampler.init(x0)  # every replica starts at x0
        state, info = jax.jit(sampler.step)(key, state)
        draw = state.position
    """
    _check_ladder(temperatures)
    temperatures = jnp.asarray(temperatures)
    num_replicas = temperatures.shape[0]
    kernel = build_kernel(kernel_factory)

    def init_fn(position: ArrayLikeTree, rng_key: PRNGKey | None = None) -> ReplicaExchangeState:
        """Start every replica at ``position``."""
        positions = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (num_replicas, *jnp.shape(x))), position
        )
        return init(positions, logdensity_fn, temperatures, kernel_factory, rng_key)

    def step_fn(
        rng_key: PRNGKey, state: ReplicaExchangeState
    ) -> tuple[ReplicaExchangeState, ReplicaExchangeInfo]:
        return kernel(rng_key, state, logdensity_fn, temperatures)

    return SamplingAlgorithm(init_fn, step_fn)
