r"""Health checks of Markov chains: ill-posed targets and frozen or exploding chains, in words.

:func:`numpyro_ebm.sample` runs them on the draws of a continuous target (an energy or a
model) when its chains have finished; the NumPyro kernels of :mod:`numpyro_ebm.infer` keep the
same counts (:class:`Tally`) in their state as they go and warn once a check fails;
:func:`~numpyro_ebm.mixing_report` repeats what a run recorded. Each check, its threshold and
why:

**Draws that run off** (``"improper"``). A chain that samples a proper target is stationary,
and a reversible one (Metropolis-Hastings: MALA, HMC, NUTS) is time-reversible: read
backwards, its sequence of potential energies has the same law, so a change of the energy
between draws is as likely a rise as a fall, and so is a change of the draws' norm
:math:`\|x\|`. On a target whose energy falls without bound as :math:`\|x\|` grows
(:math:`E = -\|x\|^4`), almost every move lowers the energy and raises the norm. The moves of
all chains are pooled; the run is flagged when both one-sided sign tests reject the balance at
level :data:`DRIFT_LEVEL` (the exact binomial tail :math:`P(\mathrm{Bin}(M, 1/2) \ge D)` of
:math:`D` moves one way out of :math:`M`, so at least 20 moves are needed) *and* at least a
share :data:`DRIFT_SHARE` of the moves goes that way: the test guards against chance, the share
against the mild asymmetry of moves that are not exactly reversible (a discretized Langevin
step). Parallel tempering counts the inner moves of *every* replica, per temperature (its
``drift`` statistic, :func:`drift_counts`): each is reversible for its tempered target
:math:`p^{1/T}`, whose energy :math:`E/T` falls exactly when :math:`E` does, so each
temperature's moves are balanced at equilibrium; the swaps, which are not reversible slot by
slot (they raise the target replica's energy), are left out. On an improper target the swaps
hand the states that fell furthest to the coldest replicas, whose moves all run off, while the
hot ones wander near the start both ways; so the test is made on the moves of the coldest
:math:`k` replicas pooled, for each :math:`k = 1, \dots, K`, each at level
:data:`DRIFT_LEVEL` / :math:`K` (Bonferroni over the :math:`K` pools). Chains that had not
reached their target when sampling began (no warm-up, a start far from the mass) drift the same
way for a while; the message names that cause too.

**Frozen chains** (``"frozen"``). A chain whose draws changed in fewer than a share
:data:`FROZEN_FRACTION` of its transitions, and in so few that a chain moving in even a quarter
of them (:data:`MOVING_SHARE`; a tuned chain moves in 57-80 %) would make so few moves with a
chance below :data:`FROZEN_LEVEL` (the binomial tail: no move in 49 transitions, at most 4 in
100, 9 in 200), or whose own acceptance rates (the chance of a move that its kernel computes at
each transition) average below :data:`FROZEN_FRACTION` over at least
:data:`ACCEPTANCE_TRANSITIONS` transitions: the kernel itself says it rejects what it proposes,
where a tuned chain accepts 57-80 %. Its draws repeat a few points, its acceptance is near 0
(or its moves are too small to change a float32 position). The message gives the acceptance,
the step size (collapsed when the tuning shrank it more than :data:`STEP_RANGE`-fold) and the
size of the energy at the draws: float32 resolves an energy of size :math:`|E|` only to
:math:`2^{-23} |E|`, so beyond :math:`|E| \approx 10^7` the differences of order one that
Metropolis acceptance weighs are rounded away (an energy of :math:`10^{30}`).

**A step size that exploded** (``"flat"``). Dual averaging (Hoffman & Gelman 2014) raises the
step while the acceptance exceeds its target and lowers it while below, so on a proper target
it settles where some moves are rejected. Grown more than :data:`STEP_RANGE`-fold over its
initial value with an acceptance still at least :data:`FLAT_ACCEPTANCE`, it found no scale at
which a move is rejected: the density is flat over all the space explored, an improper target
(a constant energy, an ``ImproperUniform`` prior). :math:`10^8` is :math:`10^4` in length for a
Langevin step (a noise variance): further than an initial guess is off for any proper target
whose scale float32 represents next to the starting points.

**An energy that is NaN or infinite near the draws** (``"nonfinite"``, energy targets). A
Metropolis-Hastings sampler rejects every proposal where the density is not finite (BlackJAX
maps it to acceptance 0), truncating the target there without a sign in its statistics.
:func:`probe` evaluates the energy at :data:`PROBE_POINTS` points near the draws
(draws picked at random, each moved by their standard deviation per coordinate): a
region holding a share :math:`q` of that neighbourhood is missed with probability
:math:`(1 - q)^{1024}` (0.6 % for :math:`q` = 0.5 %).

Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn sampler. JMLR 15, 1593-1623.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

__all__ = [
    "ACCEPTANCE_TRANSITIONS",
    "DRIFT_FIELDS",
    "DRIFT_LEVEL",
    "DRIFT_SHARE",
    "FLAT_ACCEPTANCE",
    "FROZEN_FRACTION",
    "FROZEN_LEVEL",
    "MOVING_SHARE",
    "PROBE_POINTS",
    "STEP_RANGE",
    "Finding",
    "Tally",
    "chain_findings",
    "counts",
    "drift_counts",
    "findings",
    "flags",
    "initial_step_size",
    "nonfinite_finding",
    "probe",
    "with_drift",
]

#: the share of transitions that move a chain, below which it may count as frozen
FROZEN_FRACTION = 0.05
#: the least share of moves of a chain that is not frozen, however badly tuned
MOVING_SHARE = 0.25
#: the largest chance that such a chain makes as few moves as a frozen one
FROZEN_LEVEL = 1e-6
#: the fewest transitions over which a mean acceptance below FROZEN_FRACTION marks a frozen chain
ACCEPTANCE_TRANSITIONS = 20
#: the factor, either way, by which tuning moved the step size beyond any proper target's need
STEP_RANGE = 1e8
#: the acceptance that a step grown by STEP_RANGE still has on a flat target
FLAT_ACCEPTANCE = 0.99
#: level of the one-sided sign tests of the drift check
DRIFT_LEVEL = 1e-6
#: least share of the moves going one way for the drift check
DRIFT_SHARE = 0.8
#: points of the non-finite energy probe
PROBE_POINTS = 1024
#: chains whose draws the post-run checks read at a time (bounds their memory)
CHAINS_PER_BLOCK = 1024
#: the counts of a ``drift`` statistic, in order: :class:`Tally` fields
DRIFT_FIELDS = ("energy_falls", "energy_rises", "norm_rises", "norm_falls")
#: float32's relative resolution (its machine epsilon, 2^-23)
FLOAT32_RESOLUTION = float(np.finfo(np.float32).eps)


class Tally(NamedTuple):
    """Counts of the transitions of each chain (arrays, the chain axis first, or scalars for
    one chain), the sufficient statistics of the checks: transitions judged, those whose draw
    changed, the sum and number of finite acceptance rates, and how often the potential
    energy fell or rose and the draws' norm rose or fell from one draw to the next."""

    transitions: Any
    moves: Any
    acceptance_sum: Any
    acceptance_count: Any
    energy_falls: Any
    energy_rises: Any
    norm_rises: Any
    norm_falls: Any


class Finding(NamedTuple):
    """One failed check: its ``flag`` (``"improper"``, ``"frozen"``, ``"flat"``,
    ``"nonfinite"``), the ``message`` that is warned, and a short ``reason`` for tables."""

    flag: str
    message: str
    reason: str


def counts(changed, energy_change, norm_change, acceptance, axis=None, xp=np) -> Tally:
    """The :class:`Tally` of transitions given by their draw having ``changed``, their change
    of potential energy and of norm (NaN: not known) and their acceptance rate (NaN: none),
    summed over ``axis`` (``xp``: ``numpy`` on the host, ``jax.numpy`` in a kernel)."""
    measured = xp.isfinite(acceptance)

    def count(condition):
        return xp.sum(condition, axis=axis, dtype=np.int32)

    return Tally(
        transitions=count(xp.ones_like(changed, bool)),
        moves=count(changed),
        acceptance_sum=xp.sum(xp.where(measured, acceptance, 0.0), axis=axis),
        acceptance_count=count(measured),
        energy_falls=count(energy_change < 0),
        energy_rises=count(energy_change > 0),
        norm_rises=count(norm_change > 0),
        norm_falls=count(norm_change < 0),
    )


def drift_counts(energy_change, norm_change) -> jax.Array:
    """The ``drift`` statistic of moves (one per replica, coldest first) given by their changes
    of potential energy and of norm (NaN: not counted): which way each move changed them, a 0
    or 1 per :data:`DRIFT_FIELDS` on a last axis (traced, int8: kept per draw)."""
    ways = (energy_change < 0, energy_change > 0, norm_change > 0, norm_change < 0)
    return jnp.stack(ways, axis=-1).astype(jnp.int8)


def with_drift(tally: Tally, drift, axis=None, xp=np) -> Tally:
    """``tally`` with its counts of :data:`DRIFT_FIELDS` taken from ``drift`` statistics,
    summed over ``axis``: per chain and replica (a replica axis last)."""
    return tally._replace(
        **{
            name: xp.sum(drift[..., i], axis=axis, dtype=np.int32)
            for i, name in enumerate(DRIFT_FIELDS)
        }
    )


def _cold_pools(tally: Tally, xp) -> dict:
    """The counts of :data:`DRIFT_FIELDS` pooled over chains and over the coldest 1, 2, ..., K
    replicas (one pool where the counts have no replica axis, no more axes than
    ``transitions``)."""
    chain_ndim = xp.ndim(tally.transitions)

    def pools(count):
        if xp.ndim(count) == chain_ndim:
            return xp.reshape(xp.sum(count), (1,))
        return xp.cumsum(xp.sum(xp.reshape(count, (-1, count.shape[-1])), axis=0))

    return {name: pools(getattr(tally, name)) for name in DRIFT_FIELDS}


def _mean_acceptance(tally: Tally, xp):
    return tally.acceptance_sum / xp.maximum(tally.acceptance_count, 1)


def _binomial_cdf(k, n, p, xp):
    r""":math:`P(\mathrm{Bin}(n, p) \le k) = I_{1-p}(n - k, k + 1)` (the regularized incomplete
    beta function), 1 for :math:`k \ge n`."""
    betainc = jax.scipy.special.betainc if xp is jnp else scipy.special.betainc
    k, n = xp.asarray(k, np.float32), xp.asarray(n, np.float32)
    return xp.where(k >= n, 1.0, betainc(xp.maximum(n - k, 1.0), k + 1.0, 1.0 - p))


def _one_way(way, back, xp):
    r"""Whether ``way`` moves out of ``way + back`` (arrays of :math:`K` pools) reject the
    balance of a reversible chain: at least :data:`DRIFT_SHARE` of them, and
    :math:`P(\mathrm{Bin}(M, 1/2) \ge D) \le` :data:`DRIFT_LEVEL` / :math:`K`."""
    moves = way + back
    tail = _binomial_cdf(back, moves, 0.5, xp)  # P(Bin(M, 1/2) >= D), by symmetry
    level = DRIFT_LEVEL / way.shape[-1]
    return (way > 0) & (way >= DRIFT_SHARE * moves) & (tail <= level)


def _improper_pools(tally: Tally, xp):
    """Per pool of :func:`_cold_pools`, whether its moves run off (energy and norm)."""
    pools = _cold_pools(tally, xp)
    return _one_way(pools["energy_falls"], pools["energy_rises"], xp) & _one_way(
        pools["norm_rises"], pools["norm_falls"], xp
    )


def flags(tally: Tally, step_ratio, xp=np) -> dict:
    """The checks' verdicts: ``"frozen"`` and ``"flat"`` per chain, ``"improper"`` for the
    moves of all chains pooled. ``step_ratio``: each chain's step size over its initial value
    (NaN when unknown)."""
    acceptance = _mean_acceptance(tally, xp)
    measured = tally.acceptance_count > 0
    rare = _binomial_cdf(tally.moves, tally.transitions, MOVING_SHARE, xp) <= FROZEN_LEVEL
    rejecting = (
        measured & (acceptance < FROZEN_FRACTION) & (tally.transitions >= ACCEPTANCE_TRANSITIONS)
    )
    return {
        "frozen": (tally.moves < FROZEN_FRACTION * tally.transitions) & (rare | rejecting),
        "flat": (step_ratio > STEP_RANGE) & measured & (acceptance >= FLAT_ACCEPTANCE),
        "improper": xp.any(_improper_pools(tally, xp)),
    }


def findings(
    tally: Tally, step_size, initial: float, energy_scale, only=("frozen", "flat", "improper")
) -> list[Finding]:
    """The failed checks of a :class:`Tally` in words, of those named in ``only``.

    ``step_size`` and ``energy_scale`` (the size of the potential energy at the draws) are per
    chain; ``initial`` is the step size the tuning started from (NaN when unknown)."""
    one_chain = np.ndim(tally.transitions) == 0  # a chain axis first, keeping a replica axis
    tally = Tally(*(np.asarray(count)[None] if one_chain else np.asarray(count) for count in tally))
    shape = tally.transitions.shape
    step_size = np.broadcast_to(np.asarray(step_size, np.float64), shape)
    energy_scale = np.broadcast_to(np.asarray(energy_scale, np.float64), shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = step_size / initial
    verdict = flags(tally, ratio)
    words = {
        "frozen": lambda chains: _frozen(tally, chains, step_size, initial, energy_scale),
        "flat": lambda chains: _flat(tally, chains, step_size, initial),
        "improper": lambda chains: _improper(tally),
    }
    found = []
    for flag in only:
        chains = np.flatnonzero(np.broadcast_to(verdict[flag], shape))
        if chains.size:
            found.append(words[flag](chains))
    return found


def _chains(chains, total: int) -> str:
    listed = ", ".join(str(c) for c in chains[:8]) + (", ..." if len(chains) > 8 else "")
    return f"{len(chains)} of {total} chain(s) ({listed})"


def _frozen(tally, chains, step_size, initial, energy_scale) -> Finding:
    moves, transitions = tally.moves[chains], tally.transitions[chains]
    why = f"the draws changed in at most {moves.max()} of {transitions.min()} transitions"
    if (tally.acceptance_count[chains] > 0).all():
        why += f", mean acceptance at most {_mean_acceptance(tally, np)[chains].max():.2g}"
    step = np.min(step_size[chains])
    if step < initial / STEP_RANGE:
        why += (
            f"; the step size collapsed to {step:.2g} ({step / initial:.2g} times its initial "
            f"{initial:.2g})"
        )
    elif np.isfinite(step):
        why += f"; step size {step:.2g}"
    falls, rises = tally.energy_falls[chains].sum(), tally.energy_rises[chains].sum()
    if falls >= 2 and rises == 0 and tally.norm_falls[chains].sum() == 0:
        why += (
            f"; each of its {falls} moves lowered the energy and raised the norm: the target "
            "may be improper (an energy unbounded below)"
        )
    scale = np.nanmax(energy_scale[chains]) if np.isfinite(energy_scale[chains]).any() else 0.0
    if scale * FLOAT32_RESOLUTION > 1:
        why += (
            f"; the energy is about {scale:.2g} at the draws, where float32 resolves only "
            f"differences above {scale * FLOAT32_RESOLUTION:.2g}: rescale or shift the energy"
        )
    return Finding(
        "frozen",
        f"{_chains(chains, tally.transitions.size)} are frozen, acceptance near 0 ({why}): "
        "their draws repeat a few points, do not use them. A chain freezes where its steps "
        "overshoot or cannot move it: an energy too steep or too large there for the step "
        "size, as far out on an energy that falls without bound (a possibly improper target); "
        "warm up longer, lower the step size, or check the energy",
        "chains frozen (acceptance near 0)",
    )


def _flat(tally, chains, step_size, initial) -> Finding:
    step = np.max(step_size[chains])
    acceptance = _mean_acceptance(tally, np)[chains].min()
    return Finding(
        "flat",
        f"the step size exploded to {step:.2g} ({step / initial:.2g} times its initial "
        f"{initial:.2g}) in {_chains(chains, tally.transitions.size)} while every move was "
        f"accepted (acceptance {acceptance:.2f}): the density is flat over all the space "
        "explored, so the target looks improper (a constant energy, an improper prior such "
        "as ImproperUniform); the draws mean nothing",
        "step size exploded: the target looks flat (improper)",
    )


def _improper(tally) -> Finding:
    pools = _cold_pools(tally, np)
    k = int(np.argmax(_improper_pools(tally, np)))  # the first pool that ran off
    falls, rises, grew, shrank = (int(pools[name][k]) for name in DRIFT_FIELDS)
    which = "" if pools["energy_falls"].size == 1 else f" of the {k + 1} coldest replica(s)"
    return Finding(
        "improper",
        f"the draws run off: the energy fell in {falls} of {falls + rises} moves{which} and "
        f"the norm of the draws grew in {grew} of {grew + shrank} (a "
        "chain at its target rises as often as it falls): the target looks improper (an energy "
        "unbounded below, falling without end as |x| grows), or the chains had not reached "
        "it when sampling began (warm up longer)",
        "draws run off: the target looks improper",
    )


def nonfinite_finding(count: int, total: int) -> Finding:
    """The finding of :func:`probe`'s count of non-finite energies."""
    return Finding(
        "nonfinite",
        f"the energy is NaN or infinite on part of the space: at {count} of {total} points "
        "near the draws (draws moved by their own spread); the sampler rejects every "
        "proposal there, so the target is truncated there (make the energy finite, or give "
        "the region its intended value)",
        "energy NaN or infinite near the draws",
    )


def initial_step_size(sampler) -> float:
    """The step size a sampler's tuning starts from (``initial_step_size`` or ``step_size``,
    an inner sampler's for replica exchange, the continuous move's for Gibbs within HMC); NaN
    where it has none."""
    options = sampler.options
    for name in ("initial_step_size", "step_size"):
        if options.get(name) is not None:
            return float(options[name])
    inner = options.get("inner", options.get("continuous"))
    return math.nan if inner is None else initial_step_size(inner)


def chain_findings(draws: dict, stats: dict, initial: float) -> list[Finding]:
    """The failed checks of a finished run: ``draws`` and ``stats`` hold arrays of shape
    (chain, draw, ...) (``potential_energy``, ``acceptance_rate``, ``step_size`` where kept;
    of one value per replica, the first, the target's, is read; ``drift`` where kept, for the
    drift check). Chains that reached a
    non-finite position (``nonfinite``) are reported as such and left out. Memory: the draws
    of :data:`CHAINS_PER_BLOCK` chains in float64 at a time, whatever the run's size."""
    kept = np.flatnonzero(~np.asarray(stats["nonfinite"]).any(axis=1))
    num_draws = np.shape(stats["nonfinite"])[1]
    if kept.size == 0 or num_draws < 2:
        return []
    leaves = [np.asarray(x) for x in draws.values()]

    def per_draw(name, block):
        if name not in stats:
            return np.full((block.size, num_draws), np.nan)
        values = np.asarray(np.asarray(stats[name])[block], np.float64)
        return values.reshape(block.size, num_draws, -1)[..., 0]

    def one_block(block):
        changed = np.any(
            [(x[block, 1:] != x[block, :-1]).reshape(block.size, num_draws - 1, -1).any(2)
             for x in leaves],
            axis=0,
        )  # fmt: skip
        # in float64: the draws of a flat target reach 1e20, whose square float32 lacks
        squares = sum(
            np.square(x[block].reshape(block.size, num_draws, -1), dtype=np.float64).sum(2)
            for x in leaves
        )
        energy = per_draw("potential_energy", block)
        tally = counts(
            changed,
            np.diff(energy, axis=1),
            np.diff(np.sqrt(squares), axis=1),
            per_draw("acceptance_rate", block)[:, 1:],
            axis=1,
        )
        if "drift" in stats:
            tally = with_drift(tally, np.asarray(stats["drift"])[block, 1:], axis=1)
        scale = np.full(block.size, np.nan)
        finite = np.isfinite(energy)
        if finite.all():  # one partition of every row (nanmedian sorts row by row)
            scale = np.median(np.abs(energy), axis=1)
        elif finite.any():  # else nanmedian warns of all-NaN rows
            with np.errstate(all="ignore"):
                scale = np.nanmedian(np.abs(energy), axis=1)
        return tally, per_draw("step_size", block)[:, -1], scale

    blocks = [
        one_block(kept[start : start + CHAINS_PER_BLOCK])
        for start in range(0, kept.size, CHAINS_PER_BLOCK)
    ]
    tally = Tally(*(np.concatenate(field) for field in zip(*(b[0] for b in blocks), strict=True)))
    step = np.concatenate([b[1] for b in blocks])
    scale = np.concatenate([b[2] for b in blocks])
    return findings(tally, step, initial, scale if np.isfinite(scale).any() else np.nan)


def probe(draws, chains: np.ndarray, rng: np.random.Generator, energies, like) -> tuple[int, int]:
    """``(count, total)``: of ``total`` >= :data:`PROBE_POINTS` points near the draws, how many
    have an energy that is not finite. The points are draws picked at random (with replacement)
    from ``chains`` of ``draws`` (a pytree of host arrays of shape (chain, draw, ...)), each
    moved by a normal step with the picked draws' standard deviation per coordinate, all by
    NumPy's ``rng``; ``energies`` evaluates them in batches shaped like ``like`` (the chains'
    starts), whose program is compiled already: the probe compiles nothing."""
    batch = jax.tree.leaves(like)[0].shape[0]
    total = batch * math.ceil(PROBE_POINTS / batch)
    num_draws = jax.tree.leaves(draws)[0].shape[1]
    pick = rng.integers(0, len(chains) * num_draws, total)

    def moved(x, start):
        points = np.asarray(x)[chains[pick // num_draws], pick % num_draws]
        points = points + points.std(axis=0) * rng.standard_normal(points.shape)
        return points.astype(start.dtype)

    points = jax.tree.map(moved, draws, like)
    count = sum(
        int(np.sum(~np.isfinite(energies(jax.tree.map(lambda p, i=i: p[i : i + batch], points)))))
        for i in range(0, total, batch)
    )
    return count, total
