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

**Round trips.** Each position is a *walker* that the swaps move along the ladder; the state
tracks which walker sits at each temperature and where each was last at an end of the ladder.
A round trip is a walk cold :math:`\to` hot :math:`\to` cold (:math:`T_0 \to T_{K-1} \to
T_0`); ``info.round_trips`` counts those completed at each step, so their mean over steps is the
round-trip rate, the quantity a ladder should maximize (Katzgraber et al. 2006; Syed et al.
2021).

**An adaptive ladder.** With :math:`\beta = 1/T` and swap rejection rates :math:`r_k` between
:math:`\beta_k` and :math:`\beta_{k+1}`, the cumulative communication barrier
:math:`\Lambda(\beta) = \int_\beta^1 \lambda(b)\, db` is estimated at the ladder's points by
:math:`\Lambda(\beta_k) = \sum_{j < k} r_j` (Syed et al. 2021, Theorem 2 and Sec. 5.1:
:math:`r_k \approx \int_{\beta_{k+1}}^{\beta_k} \lambda`), interpolated linearly in
:math:`\beta` between them, and the new ladder puts :math:`\beta'_n` at its equal quantiles,
:math:`\Lambda(\beta'_n) = \frac{n}{K - 1} \Lambda(\beta_{K-1})` (their Algorithm 4, with a
piecewise-linear rather than a monotone-cubic interpolant). The tuned ladder equalizes the
rejection rates, which maximizes the round-trip rate of the non-reversible scheme for a given
:math:`K`: :func:`tune_ladder` does one update, :func:`adapt_ladder` runs the rounds.

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
Katzgraber, H. G., Trebst, S., Huse, D. A. & Troyer, M. (2006). Feedback-optimized parallel
tempering Monte Carlo. Journal of Statistical Mechanics P03018.
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

from numpyro_ebm._checks import all_finite, check_int, check_positive, check_temperatures

__all__ = [
    "ReplicaExchangeInfo",
    "ReplicaExchangeState",
    "adapt_ladder",
    "as_top_level_api",
    "build_kernel",
    "communication_barrier",
    "geometric_ladder",
    "init",
    "track_round_trips",
    "tune_ladder",
]

#: Walker directions: not yet seen at the cold end, heading hot, heading cold.
UNSEEN, UP, DOWN = 0, 1, 2


class ReplicaExchangeState(NamedTuple):
    """``inner_states``: the replicas' kernel states stacked along a leading axis of length
    :math:`K` (replica ``k`` at temperature :math:`T_k`); ``logdensity``: the untempered
    :math:`\\log p` of each replica's position, shape ``(K,)``; ``step``: steps taken, whose
    parity picks the even or odd swap pairs. ``position`` is the cold (:math:`T = 1`) replica's
    position, the draw; it indexes the leading axis, so for states batched outside ``vmap``
    read ``states.inner_states.position[:, 0]`` (or ``jax.vmap(lambda s: s.position)``).

    ``walkers``: which walker (position history) sits at each temperature, shape ``(K,)``;
    ``direction``: per walker, :data:`UNSEEN` (not yet at the cold end), :data:`UP` (last at
    the cold end, heading hot) or :data:`DOWN` (has reached the hot end since, heading cold);
    ``round_trips``: round trips completed since ``init``."""

    inner_states: ArrayTree
    logdensity: jax.Array
    step: jax.Array
    walkers: jax.Array
    direction: jax.Array
    round_trips: jax.Array

    @property
    def position(self) -> ArrayTree:
        return jax.tree.map(lambda x: x[0], self.inner_states.position)


class ReplicaExchangeInfo(NamedTuple):
    """``swap_acceptance``: acceptance probability of each neighbour pair :math:`(i, i + 1)`,
    shape ``(K - 1,)``, NaN for pairs not attempted this step; ``swap_attempted`` and
    ``is_swapped``: which pairs were proposed and which swapped; ``inner_info``: the cold
    replica's kernel info; ``round_trips``: round trips (cold -> hot -> cold) completed at this
    step, over all walkers; ``is_finite``: whether every replica's position and log density are
    finite; ``num_grad_evals``: evaluations spent by the exchange move on top of the inner
    kernels, :math:`K` re-initialisations (one gradient evaluation each for gradient-based
    kernels; the inner kernels' own cost is :math:`K` times that of one inner step);
    ``inner_logdensity_change`` and ``inner_norm_change``: each replica's change of the
    untempered :math:`\\log p` and of the Euclidean norm of its position by its inner move,
    before the swaps, shape ``(K,)`` (each inner move is reversible for its tempered target,
    so at equilibrium either change is as likely positive as negative)."""

    swap_acceptance: jax.Array
    swap_attempted: jax.Array
    is_swapped: jax.Array
    inner_info: NamedTuple
    round_trips: jax.Array
    is_finite: jax.Array
    num_grad_evals: jax.Array
    inner_logdensity_change: jax.Array
    inner_norm_change: jax.Array


def _norms(positions: ArrayTree) -> jax.Array:
    """The Euclidean norm of each replica's position (all leaves), in float32."""
    return jnp.sqrt(
        sum(
            jnp.sum(jnp.square(leaf.astype(jnp.float32)).reshape(leaf.shape[0], -1), axis=1)
            for leaf in jax.tree.leaves(positions)
        )
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


#: Rejection rates are floored here so that the cumulative barrier increases strictly.
MIN_REJECTION = 1e-3


def communication_barrier(rejection_rates: jax.Array, temperatures: jax.Array) -> jax.Array:
    r"""The cumulative communication barrier at each temperature of the ladder.

    .. math::

        \Lambda(eta_k) = \sum_{j < k} r_j, \qquad eta_k = 1 / T_k,

    an estimate of :math:`\int_{eta_k}^{1} \lambda(eta)\, deta`, the local barrier
    :math:`\lambda` integrated from the cold end (Syed et al. 2021, Sec. 5.1); each
    :math:`r_j` (``rejection_rates``, shape ``(K - 1,)``, the mean swap rejection probability
    :math:`1 - \min(1, \cdot)` of the pair :math:`(j, j + 1)`) is floored at
    :data:`MIN_REJECTION`. Returns shape ``(K,)``, zero at :math:`T_0 = 1`; the last entry is
    the total barrier :math:`\Lambda`, of which about :math:`1 / (2 + 2\Lambda)` round trips per
    step is the best a non-reversible ladder of many replicas can achieve (their Theorem 3).
    """
    rejection_rates = jnp.maximum(jnp.asarray(rejection_rates), MIN_REJECTION)
    if rejection_rates.shape != (jnp.shape(temperatures)[0] - 1,):
        raise ValueError(
            f"rejection_rates must have shape (K - 1,) = ({jnp.shape(temperatures)[0] - 1},) "
            f"for {jnp.shape(temperatures)[0]} temperatures, got {rejection_rates.shape}"
        )
    return jnp.concatenate([jnp.zeros(1, rejection_rates.dtype), jnp.cumsum(rejection_rates)])


def tune_ladder(rejection_rates: jax.Array, temperatures: jax.Array) -> jax.Array:
    r"""One update of the ladder that equalizes the swap rejection rates (Syed et al. 2021,
    Algorithm 4).

    The cumulative barrier :func:`communication_barrier` is interpolated linearly in
    :math:`eta = 1/T` between the ladder's points, and the new inverse temperatures are its
    equal quantiles,

    .. math::

        \Lambda(eta'_n) = rac{n}{K - 1}\, \Lambda(eta_{K-1}), \qquad n = 0, \dots, K - 1,

    so :math:`T'_0 = 1` and :math:`T'_{K-1} = T_{K-1}` stay. Each pair of the new ladder then
    carries about :math:`\Lambda / (K - 1)` of the barrier. Pure and jittable; iterate it over
    rounds of sampling (:func:`adapt_ladder`), since the rates are estimated on the old ladder.
    """
    temperatures = jnp.asarray(temperatures)
    barrier = communication_barrier(rejection_rates, temperatures)
    num_replicas = temperatures.shape[0]
    levels = barrier[-1] * jnp.arange(num_replicas) / max(num_replicas - 1, 1)
    betas = jnp.interp(levels, barrier, 1.0 / temperatures)
    betas = betas.at[0].set(1.0).at[-1].set(1.0 / temperatures[-1])
    return 1.0 / betas


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
    check_temperatures("temperatures", temperatures)
    temperatures = jnp.asarray(temperatures)
    make_algorithm = partial(_tempered_algorithm, logdensity_fn, kernel_factory)
    inner_states = _init_replicas(rng_key, positions, temperatures, make_algorithm)
    logdensity = jax.vmap(logdensity_fn)(inner_states.position)
    num_replicas = temperatures.shape[0]
    walkers = jnp.arange(num_replicas)
    direction = jnp.where(walkers == 0, UP, UNSEEN).astype(jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    return ReplicaExchangeState(inner_states, logdensity, zero, walkers, direction, zero)


def track_round_trips(
    walkers: jax.Array, direction: jax.Array, permutation: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Move the walkers by a swap ``permutation`` (temperature ``k`` takes the position of
    ``permutation[k]``) and update their directions.

    A walker that arrives at the cold end (``k = 0``) is heading hot (:data:`UP`); one heading
    hot that arrives at the hot end (``k = K - 1``) is heading cold (:data:`DOWN`); one heading
    cold that arrives at the cold end completes a round trip. Returns ``(walkers, direction,
    completed)``, ``completed`` the number of round trips completed by this move.
    """
    walkers = walkers[permutation]
    cold, hot = walkers[0], walkers[-1]
    completed = (direction[cold] == DOWN).astype(jnp.int32)
    direction = direction.at[hot].set(jnp.where(direction[hot] == UP, DOWN, direction[hot]))
    direction = direction.at[cold].set(UP)
    return walkers, direction, completed


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
        inner_logdensity_change = logdensity - state.logdensity
        inner_norm_change = _norms(inner_states.position) - _norms(state.inner_states.position)
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
        walkers, direction, completed = track_round_trips(
            state.walkers, state.direction, permutation
        )

        new_state = ReplicaExchangeState(
            inner_states,
            logdensity,
            state.step + 1,
            walkers,
            direction,
            state.round_trips + completed,
        )
        info = ReplicaExchangeInfo(
            swap_acceptance=acceptance,
            swap_attempted=attempted,
            is_swapped=swapped,
            inner_info=jax.tree.map(lambda x: x[0], inner_infos),
            round_trips=completed,
            is_finite=all_finite(inner_states.position) & jnp.all(jnp.isfinite(logdensity)),
            num_grad_evals=jnp.asarray(num_replicas, jnp.int32),
            inner_logdensity_change=inner_logdensity_change,
            inner_norm_change=inner_norm_change,
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
    check_temperatures("temperatures", temperatures)
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


def adapt_ladder(
    rng_key: PRNGKey,
    state: ReplicaExchangeState,
    logdensity_fn: Callable,
    kernel_factory: Callable,
    temperatures: jax.Array,
    num_rounds: int,
    steps_per_round: int,
) -> tuple[ReplicaExchangeState, jax.Array]:
    """Warm-up that tunes the ladder: ``num_rounds`` rounds of ``steps_per_round`` replica
    exchange steps, each followed by :func:`tune_ladder` on the round's mean swap rejection
    rates (Syed et al. 2021, Algorithm 4, with rounds of a fixed length).

    After each update every replica is re-initialised at its new temperature (its cached log
    density and gradient belong to the old one). Pure and jittable (one ``lax.scan`` over the
    rounds); returns the final state and the tuned ladder, which the sampling steps must use.

    Parameters
    ----------
    rng_key
        PRNG key.
    state
        A :class:`ReplicaExchangeState` from :func:`init` on ``temperatures``.
    logdensity_fn, kernel_factory
        As for :func:`build_kernel`.
    temperatures
        The initial ladder, e.g. :func:`geometric_ladder`.
    num_rounds
        Ladder updates, at least 1.
    steps_per_round
        Steps per round, at least 2 (every pair is attempted on every other step).
    """
    check_int("num_rounds", num_rounds, minimum=1)
    check_int("steps_per_round", steps_per_round, minimum=2)
    check_temperatures("temperatures", temperatures)
    kernel = build_kernel(kernel_factory)
    make_algorithm = partial(_tempered_algorithm, logdensity_fn, kernel_factory)

    def one_round(carry, key):
        state, temperatures = carry
        step_key, init_key = jax.random.split(key)

        def one_step(state, key):
            state, info = kernel(key, state, logdensity_fn, temperatures)
            return state, info.swap_acceptance

        state, acceptance = jax.lax.scan(
            one_step, state, jax.random.split(step_key, steps_per_round)
        )
        temperatures = tune_ladder(1.0 - jnp.nanmean(acceptance, axis=0), temperatures)
        inner_states = _init_replicas(
            init_key, state.inner_states.position, temperatures, make_algorithm
        )
        return (state._replace(inner_states=inner_states), temperatures), None

    (state, temperatures), _ = jax.lax.scan(
        one_round, (state, jnp.asarray(temperatures)), jax.random.split(rng_key, num_rounds)
    )
    return state, temperatures
