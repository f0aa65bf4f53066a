r"""Maximum likelihood with negatives that cross modes: persistent contrastive divergence
over replica exchange, and the sum of objectives that pairs it with score matching.

**Why score matching alone cannot set the weights of modes.** Score matching (Hyvärinen
2005) and its denoising forms (Vincent 2011; NCSN, Song & Ermon 2019) fit the score
:math:`\nabla_x \log p`, which is local: on a mixture of well-separated components the score
near each component is that component's own score, whatever its weight, because the weight
enters :math:`\log p` as an additive constant there. The Fisher divergence is therefore
nearly flat along the direction that moves mass between separated modes, and a trained
energy can put 97 % of the mass on one of six modes while matching every mode's shape
(Wenliang & Kanagawa 2020 on the blindness of score-based objectives to mixing proportions;
Song & Ermon 2019, Sec. 3.2). The likelihood is not blind: its gradient

.. math::

    \nabla_\theta \mathbb{E}_{data}[-\log p_\theta]
    = \mathbb{E}_{data}[\nabla_\theta E_\theta] - \mathbb{E}_{p_\theta}[\nabla_\theta E_\theta]

lowers the energy where the data put more mass than the model and raises it where they put
less, mode by mode, provided the negatives :math:`x^- \sim p_\theta` are drawn from the
*whole* model. Short Langevin chains started at the data (CD) or persistent chains that stay
in their basin (PCD) do not see the relative masses either (Tieleman 2008; Du & Mordatch
2019): the negatives must cross the barriers between modes.

:func:`replica_exchange_pcd` draws them from persistent chains of replica exchange (parallel
tempering), as Desjardins et al. (2010) and Cho, Raiko & Ilin (2010) did for restricted
Boltzmann machines: every chain is a ladder of replicas at temperatures
:math:`1 = T_0 < \dots < T_{K-1}`, hot replicas cross barriers, and swaps carry their
positions down to :math:`T = 1`, whose positions are the negatives. :func:`combine` adds such
a likelihood term to a score-matching term, whose minimizers coincide at the data density:
the score term keeps each mode's shape (and, for a noise-conditional network, every noise
level) while the likelihood term sets the masses.

References
----------
A. Hyvärinen (2005). Estimation of non-normalized statistical models by score matching. JMLR 6.
P. Vincent (2011). A connection between score matching and denoising autoencoders. Neural
Computation 23(7).
Y. Song and S. Ermon (2019). Generative modeling by estimating gradients of the data
distribution. NeurIPS.
L. K. Wenliang and H. Kanagawa (2020). Blindness of score-based methods to isolated
components and mixing proportions. arXiv:2008.10087.
T. Tieleman (2008). Training restricted Boltzmann machines using approximations to the
likelihood gradient. ICML.
G. Desjardins, A. Courville, Y. Bengio, P. Vincent and O. Delalleau (2010). Tempered Markov
chain Monte Carlo for training of restricted Boltzmann machines. AISTATS.
K. Cho, T. Raiko and A. Ilin (2010). Parallel tempering is efficient for learning restricted
Boltzmann machines. IJCNN.
Y. Du and I. Mordatch (2019). Implicit generation and modeling with energy-based models.
NeurIPS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm._checks import check_int, check_positive, check_temperatures
from numpyro_ebm.energy import BoundLogDensity
from numpyro_ebm.kernels import block_gibbs, replica_exchange
from numpyro_ebm.training.objectives import Objective, _check_non_negative

__all__ = [
    "TemperedMove",
    "TemperedNegatives",
    "combine",
    "langevin_move",
    "rbm_move",
    "replica_exchange_pcd",
]

#: Gain of the step-size adaptation (log step size per unit of acceptance error and update).
_ADAPT_GAIN = 0.05


class TemperedNegatives(NamedTuple):
    """The state of :func:`replica_exchange_pcd`: ``positions`` of every replica of every
    chain, shape ``(num_chains, K, *event_shape)`` (replica ``k`` at temperature :math:`T_k`; a
    pair of such arrays, :math:`(v, h)`, for :func:`rbm_move`); ``log_step_size``: the log of
    the inner MALA step at :math:`T = 1` (replica ``k`` moves with ``step_size * T_k``);
    ``swap_rate`` and ``acceptance``: the last update's mean swap acceptance per neighbour pair
    ``(K - 1,)`` and the cold replicas' mean MALA acceptance; ``round_trips``: round trips
    (cold -> hot -> cold) completed by all walkers since ``init``, tracked across updates by
    ``walkers``, ``direction`` (each ``(num_chains, K)``) and ``step`` (which sets the parity
    of the even- odd swaps), as in
    :class:`~numpyro_ebm.kernels.replica_exchange.ReplicaExchangeState`."""

    positions: jax.Array
    log_step_size: jax.Array
    swap_rate: jax.Array
    acceptance: jax.Array
    round_trips: jax.Array
    walkers: jax.Array
    direction: jax.Array
    step: jax.Array


class TemperedMove(NamedTuple):
    """How :func:`replica_exchange_pcd` moves its ladders at given parameters ``params``.

    ``factory(params, step_size)``: the ``kernel_factory(logdensity_fn, T)`` of
    :func:`~numpyro_ebm.kernels.replica_exchange.build_kernel`; ``logdensity(params)``: the
    untempered log density of a replica's position, which the swaps weigh;
    ``negative(positions)``: the configurations that ``energy_fn`` scores, of a batch of
    positions; ``start(params, x)``: a replica's position at configuration ``x``;
    ``noise(key, shape)``: configurations where the ladders start by default; ``tuned``: whether
    the step size is adapted towards the target acceptance rate."""

    factory: Callable
    logdensity: Callable
    negative: Callable
    start: Callable
    noise: Callable
    tuned: bool


def langevin_move(energy_fn: Callable) -> TemperedMove:
    """MALA in replica :math:`k` with step :math:`\\epsilon T_k` on
    :math:`e^{-E_\\theta(x) / T_k}`, positions the configurations themselves (the default)."""
    return TemperedMove(
        factory=lambda params, eps: lambda ld, t: blackjax.mala(ld, eps * t),
        logdensity=lambda params: BoundLogDensity(energy_fn, params),
        negative=lambda positions: positions,
        start=lambda params, x: x,
        noise=lambda key, shape: jax.random.normal(key, shape, jnp.result_type(float)),
        tuned=True,
    )


def rbm_move(model) -> TemperedMove:
    """Block Gibbs on the tempered joint :math:`p_\\theta(v, h)^{1/T_k}` of a Bernoulli RBM
    (:func:`~numpyro_ebm.kernels.block_gibbs.tempered_factory`; Desjardins et al. 2010), with
    ``(v, h)`` positions whose swaps weigh the joint energy; the negatives are the cold
    replicas' :math:`v`, scored by ``model.free_energy``. Nothing is tuned."""
    block_gibbs.joint_logdensity(model, None)  # checks the model
    return TemperedMove(
        factory=lambda params, eps: block_gibbs.tempered_factory(model, params),
        logdensity=lambda params: block_gibbs.joint_logdensity(model, params),
        negative=lambda positions: positions[0],
        start=lambda params, v: (v, jax.vmap(model.hidden_probs, (None, 0))(params, v)),
        noise=lambda key, shape: jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32),
        tuned=False,
    )


def replica_exchange_pcd(
    energy_fn: Callable,
    *,
    temperatures: Sequence[float] | jax.Array | None = None,
    num_chains: int = 512,
    k: int = 4,
    step_size: float = 0.01,
    target_acceptance_rate: float = 0.574,
    data_noise: float = 0.0,
    alpha: float = 0.0,
    init_positions: jax.Array | None = None,
    move: TemperedMove | None = None,
) -> Objective:
    r"""Persistent contrastive divergence whose negative chains are replica-exchange ladders
    (Desjardins et al. 2010; Cho, Raiko & Ilin 2010), for energies whose modes short chains
    cannot cross.

    The loss is that of :func:`~.objectives.cd` with the cold replicas as negatives,

    .. math::

        \mathcal{L}(\theta) = \overline{E_\theta(x^+ + \sigma z)} - \overline{E_\theta(x^-)}
        + \alpha\left(\overline{E_\theta(x^+ + \sigma z)^2} +
        \overline{E_\theta(x^-)^2}\right),

    :math:`\sigma` = ``data_noise`` (the positives of a noise-conditional energy at level
    :math:`\sigma_L` are the data smoothed by :math:`\mathcal{N}(0, \sigma_L^2 I)`, the
    density that the energy at that level models). Each update runs ``k`` replica-exchange
    steps (one MALA step per replica at the current parameters, then even-odd neighbour swaps,
    :mod:`numpyro_ebm.kernels.replica_exchange`; ``move`` for another inner move) on each of
    ``num_chains`` persistent ladders.
    MALA's step size :math:`\epsilon T_k` is adapted between updates towards
    ``target_acceptance_rate`` of the cold replicas (a Robbins-Monro step on
    :math:`\log\epsilon`, Andrieu & Thoms 2008), since the energy changes as it trains.
    The gradient averages ``num_chains`` negatives: more chains, a lower-variance gradient.

    Parameters
    ----------
    energy_fn
        ``energy_fn(params, x) -> scalar`` for one configuration.
    temperatures
        The ladder :math:`1 = T_0 < \dots < T_{K-1}`; default 8 geometric temperatures from 1
        to 40 (:func:`~numpyro_ebm.kernels.replica_exchange.geometric_ladder`).
    num_chains
        Persistent ladders, whose cold replicas are the negatives of each update.
    k
        Replica-exchange steps per update, >= 1.
    step_size
        Initial MALA step at :math:`T = 1`, > 0.
    target_acceptance_rate
        MALA acceptance the adaptation aims at, in (0, 1) (0.574, Roberts & Rosenthal 1998).
    data_noise
        Standard deviation :math:`\sigma \ge 0` of the Gaussian noise added to the positives.
    alpha
        Weight :math:`\alpha \ge 0` of the energy regularizer of IGEBM (Du & Mordatch 2019).
    init_positions
        Starts of the ladders, ``(num_chains, *event_shape)`` (every replica of a ladder
        starts there), e.g. a random subset of the data; default the move's noise (standard
        normal; bits for :func:`rbm_move`).
    move
        The replicas' move (:class:`TemperedMove`): default :func:`langevin_move`;
        :func:`rbm_move` for a Bernoulli RBM (with ``energy_fn = model.free_energy``, as
        ``fit_rbm(method="replica_exchange")`` passes).

    Returns
    -------
    ``Objective`` whose ``init(key, params, example)`` makes a :class:`TemperedNegatives` and
    whose loss gives ``(value, ({"energy_pos", "energy_neg", "acceptance",
    "swap_rate_min", "step_size"}, new_state))``.

    References
    ----------
    C. Andrieu and J. Thoms (2008). A tutorial on adaptive MCMC. Statistics and Computing 18.
    G. O. Roberts and J. S. Rosenthal (1998). Optimal scaling of discrete approximations to
    Langevin diffusions. JRSS B 60(1).
    """
    if temperatures is None:
        temperatures = replica_exchange.geometric_ladder(8, 40.0)
    check_temperatures("temperatures", temperatures)
    ladder = jnp.asarray(temperatures, jnp.float32)
    num_replicas = int(ladder.shape[0])
    num_chains = check_int("num_chains", num_chains)
    k = check_int("k", k)
    check_positive("step_size", step_size)
    if not 0.0 < float(target_acceptance_rate) < 1.0:
        raise ValueError(
            f"target_acceptance_rate must lie strictly between 0 and 1, "
            f"got {target_acceptance_rate!r}"
        )
    data_noise = _check_non_negative("data_noise", data_noise)
    alpha = _check_non_negative("alpha", alpha)
    if init_positions is not None:
        init_positions = jnp.asarray(init_positions)
        if init_positions.shape[0] != num_chains:
            raise ValueError(
                f"init_positions must have num_chains={num_chains} rows, got shape "
                f"{init_positions.shape}"
            )

    move = langevin_move(energy_fn) if move is None else move
    if not isinstance(move, TemperedMove):
        raise TypeError(f"move must be a TemperedMove (langevin_move, rbm_move), got {move!r}")

    def init(key, params, example) -> TemperedNegatives:
        shape = (num_chains, *np.shape(example))
        if init_positions is None:
            starts = move.noise(key, shape)
        elif init_positions.shape != shape:
            raise ValueError(
                f"init_positions must have shape {shape} (num_chains, *event_shape), got "
                f"{init_positions.shape}"
            )
        else:
            starts = init_positions.astype(jnp.result_type(float))
        positions = jax.tree.map(
            lambda x: jnp.broadcast_to(x[:, None], (num_chains, num_replicas, *x.shape[1:])),
            move.start(params, starts),
        )
        walkers = jnp.broadcast_to(jnp.arange(num_replicas), (num_chains, num_replicas))
        direction = jnp.where(walkers == 0, replica_exchange.UP, replica_exchange.UNSEEN)
        return TemperedNegatives(
            positions=positions,
            log_step_size=jnp.log(jnp.asarray(step_size, jnp.float32)),
            swap_rate=jnp.full((num_replicas - 1,), jnp.nan, jnp.float32),
            acceptance=jnp.asarray(jnp.nan, jnp.float32),
            round_trips=jnp.zeros((), jnp.int32),
            walkers=walkers.astype(jnp.int32),
            direction=direction.astype(jnp.int32),
            step=jnp.zeros((), jnp.int32),
        )

    def negatives(params, state: TemperedNegatives, key):
        params = jax.lax.stop_gradient(params)
        logdensity_fn = move.logdensity(params)
        factory = move.factory(params, jnp.exp(state.log_step_size))
        kernel = replica_exchange.build_kernel(factory)

        def ladder_run(positions, walkers, direction, chain_key):
            # the inner states cache log densities of the old parameters: start them afresh,
            # and carry on the walkers' history and the swap parity
            replicas = replica_exchange.init(positions, logdensity_fn, ladder, factory)
            replicas = replicas._replace(walkers=walkers, direction=direction, step=state.step)

            def step(replicas, step_key):
                replicas, info = kernel(step_key, replicas, logdensity_fn, ladder)
                return replicas, (info.inner_info.acceptance_rate, info.swap_acceptance)

            replicas, (acceptance, swaps) = jax.lax.scan(
                step, replicas, jax.random.split(chain_key, k)
            )
            return replicas, acceptance, swaps

        replicas, acceptance, swaps = jax.vmap(ladder_run)(
            state.positions, state.walkers, state.direction, jax.random.split(key, num_chains)
        )
        return replicas, jnp.mean(acceptance), jnp.nanmean(swaps, axis=(0, 1))

    def loss(params, batch, key, state: TemperedNegatives):
        noise_key, chain_key = jax.random.split(key)
        replicas, acceptance, swap_rate = negatives(params, state, chain_key)
        positions = jax.lax.stop_gradient(replicas.inner_states.position)
        cold = move.negative(jax.tree.map(lambda x: x[:, 0], positions))
        positives = batch + data_noise * jax.random.normal(noise_key, batch.shape, batch.dtype)
        energies = jax.vmap(energy_fn, (None, 0))
        e_pos, e_neg = energies(params, positives), energies(params, cold)
        value = jnp.mean(e_pos) - jnp.mean(e_neg)
        value = value + alpha * (jnp.mean(e_pos**2) + jnp.mean(e_neg**2))
        adapted = state.log_step_size + move.tuned * _ADAPT_GAIN * (
            acceptance - target_acceptance_rate
        )
        new_state = TemperedNegatives(
            positions=positions,
            log_step_size=jnp.where(jnp.isfinite(adapted), adapted, state.log_step_size),
            swap_rate=swap_rate,
            acceptance=acceptance,
            round_trips=state.round_trips + jnp.sum(replicas.round_trips),
            walkers=replicas.walkers,
            direction=replicas.direction,
            step=state.step + k,
        )
        aux = {
            "energy_pos": jnp.mean(e_pos),
            "energy_neg": jnp.mean(e_neg),
            "acceptance": acceptance,
            "swap_rate_min": jnp.nanmin(swap_rate),  # pairs of the other parity: NaN
            "step_size": jnp.exp(state.log_step_size) if move.tuned else jnp.nan,
        }
        return value, (aux, new_state)

    options = dict(
        temperatures=[float(t) for t in np.asarray(ladder)],
        num_chains=num_chains,
        k=k,
        step_size=float(step_size),
        target_acceptance_rate=float(target_acceptance_rate),
        data_noise=data_noise,
        alpha=alpha,
    )
    return Objective(init, loss, "replica_exchange_pcd", MappingProxyType(options))


def combine(**terms: tuple[Objective, float]) -> Objective:
    r"""The weighted sum of objectives, :math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i`, each
    with its own state and key; its state is the dict of theirs, its aux the union of theirs
    with each entry prefixed by the term's name (``"ncsn/loss"``, ``"ml/energy_pos"``...).

    ``combine(ncsn=(training.ncsn(apply, sigmas), 1.0), ml=(replica_exchange_pcd(...), 1.0))``
    keeps every noise level's score right while the likelihood term sets the modes' masses.
    """
    if not terms:
        raise ValueError("combine needs at least one term, e.g. combine(ncsn=(objective, 1.0))")
    for name, term in terms.items():
        if not (isinstance(term, tuple) and len(term) == 2 and isinstance(term[0], Objective)):
            raise TypeError(f"term {name!r} must be an (Objective, weight) pair, got {term!r}")
        _check_non_negative(f"the weight of {name!r}", term[1])
    names = sorted(terms)

    def init(key, params, example):
        keys = jax.random.split(key, len(names))
        return {n: terms[n][0].init(kk, params, example) for n, kk in zip(names, keys, strict=True)}

    def loss(params, batch, key, state):
        keys = jax.random.split(key, len(names))
        total, aux, new_state = 0.0, {}, {}
        for name, term_key in zip(names, keys, strict=True):
            objective, weight = terms[name]
            value, (term_aux, new_state[name]) = objective.loss(
                params, batch, term_key, state[name]
            )
            total = total + float(weight) * value
            aux[f"{name}/loss"] = value
            aux.update({f"{name}/{entry}": v for entry, v in term_aux.items()})
        return total, (aux, new_state)

    options = {
        name: {
            "objective": terms[name][0].name,
            "weight": float(terms[name][1]),
            "options": dict(terms[name][0].options),
        }
        for name in names
    }
    return Objective(init, loss, "combine", MappingProxyType(options))
