"""``sample()``: a target and a sampler in, ArviZ data out, the final state kept to continue.

The driver is thin: it builds the :class:`~numpyro_ebm.targets.Target` (or takes one), asks
the :class:`~numpyro_ebm.samplers.Sampler` whether it accepts it, and runs the sampler's
chains, ``vmap``-ed over chains and scanned over draws, in compiled chunks. The programs of a
run are cached by (sampler, target content, shapes, warmup length, thinning, devices,
statistics kept), so a repeated call compiles nothing new (:func:`clear_cache` empties the
cache). A target's content is what its energy or model computes, traced afresh on every call
(:mod:`numpyro_ebm._cache`), so a changed energy is never served another's program.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from scipy.fft import next_fast_len

from numpyro_ebm import _arviz, _cache, _health
from numpyro_ebm import sharding as _sharding
from numpyro_ebm._checks import check_int, check_positive
from numpyro_ebm.diagnostics._ranks import _from_order_keys, _order_keys, _sort_keys
from numpyro_ebm.samplers import Sampler, get_sampler
from numpyro_ebm.samplers.base import DENSITY_KINDS
from numpyro_ebm.targets import (
    DEFAULT_NUM_CHAINS,
    Target,
    _typed_key,
    energy_target,
    event_shapes,
    model_target,
    shapes_of,
    target_key,
)

__all__ = ["CHUNK_BYTES", "Until", "clear_cache", "sample"]


class Until(NamedTuple):
    r"""Stop rule of ``sample(..., until=Until(...))``: draw in blocks until mixed.

    After each block of ``block`` draws per chain, the rank-normalized split-:math:`\hat R`
    and the bulk ESS (Vehtari et al. 2021) of all draws so far are computed on the device,
    over every coordinate of the sampler's position (for models: the unconstrained space; both
    statistics are rank-based, so they do not change under the monotone maps to constrained
    space). The run stops at the first of:

    * ``"converged"``: max :math:`\hat R` < ``rhat`` and min bulk ESS > ``ess_bulk``;
    * ``"max_draws"``: ``num_samples`` draws per chain (the draw budget);
    * ``"max_seconds"``: ``max_seconds`` of wall time spent drawing (warm-up excluded).

    ``sample_stats.attrs`` of the result records ``until_reason``, ``until_rhat``,
    ``until_ess_bulk`` and ``until_num_draws``. The statistics equal
    :func:`~numpyro_ebm.diagnostics.max_rhat_min_ess` of the draws so far; the check reads
    them from the run's buffer of ``num_samples`` draws and their count, so that it is
    compiled once for every block of a run.
    """

    rhat: float = 1.01
    ess_bulk: float = 400.0
    max_seconds: float | None = None
    block: int = 100

    def check(self) -> None:
        check_positive("until.rhat", self.rhat)
        if not self.rhat > 1:
            raise ValueError(
                "until.rhat must be above 1 (R-hat falls towards 1 as chains mix, so a target "
                f"at or below 1 is never met; 1.01 is usual), got {self.rhat!r}"
            )
        check_positive("until.ess_bulk", self.ess_bulk)
        if self.max_seconds is not None:
            check_positive("until.max_seconds", self.max_seconds)
        check_int("until.block", self.block, minimum=4)


@jax.jit
def _mixing_so_far(buffers: list, count) -> tuple[jax.Array, jax.Array]:
    r"""The worst rank-normalized split-:math:`\hat R` and the least bulk ESS (as
    :func:`~numpyro_ebm.diagnostics.max_rhat_min_ess`) of the first ``count`` draws of
    ``buffers``, arrays ``(chain, capacity, ...)`` whose later draws are ignored: one program
    for every block of a run, as ``count`` is traced. ``NaN`` if a draw so far is ``NaN``.

    Per coordinate, the ``2M`` half chains of :math:`N = \lfloor count/2 \rfloor` draws
    (the middle draw dropped for an odd count) are rank-normalized, :math:`z = \Phi^{-1}((r -
    3/8) / (S + 1/4))` with :math:`S = 2MN` and :math:`r` the mean rank of ties; :math:`\hat
    R` is the larger of the split :math:`\hat R` of :math:`z` and of the :math:`z` of the
    draws folded about their median, and the bulk ESS is :math:`S / \hat\tau` of :math:`z`
    with Geyer's initial monotone sequence (Vehtari et al. 2021; ArviZ's conventions). A
    constant coordinate has no :math:`\hat R` and an ESS of :math:`S`."""
    rhats, ess, broken = [], [], []
    for buffer in buffers:
        chains, capacity = buffer.shape[:2]
        broken.append((jnp.isnan(buffer) & _draw_mask(buffer, count)).any())
        coordinates = jnp.moveaxis(buffer, (0, 1), (-2, -1)).reshape(-1, chains, capacity)
        r, e = jax.lax.map(lambda x: _split_mixing(x, count), coordinates)
        rhats.append(r)
        ess.append(e)
    rhats, ess = jnp.concatenate(rhats), jnp.concatenate(ess)
    broken = jnp.stack(broken).any()
    return (
        jnp.where(broken, jnp.nan, jnp.nanmax(rhats)),
        jnp.where(broken, jnp.nan, jnp.nanmin(ess)),
    )


def _draw_mask(buffer, count):
    """Where the draws of ``buffer`` (chain, capacity, ...) are among the first ``count``."""
    index = jnp.arange(buffer.shape[1]).reshape(1, -1, *([1] * (buffer.ndim - 2)))
    return index < count


def _split_mixing(draws, count) -> tuple[jax.Array, jax.Array]:
    r""":math:`\hat R` and bulk ESS of one coordinate's first ``count`` draws of ``draws``
    (chain, capacity) (see :func:`_mixing_so_far`)."""
    capacity = draws.shape[1]
    half = count // 2
    j = jnp.arange(capacity // 2)
    second = jnp.minimum(count - half + j, capacity - 1)  # ArviZ drops the middle draw
    split = jnp.concatenate([draws[:, j], draws[:, second]])
    valid = jnp.broadcast_to(j < half, split.shape)
    size = split.shape[0] * half
    z, ordered = _normal_scores(split, valid, size)
    median = (ordered[size // 2 - 1] + ordered[size // 2]) / 2
    folded = jnp.abs(split - median)
    bulk = _split_rhat(z, valid, half)
    tail = _split_rhat(_normal_scores(folded, valid, size)[0], valid, half)
    tail = jnp.where((jnp.isnan(folded) & valid).any(), jnp.nan, tail)
    constant = ordered[0] == ordered[size - 1]
    rhat = jnp.where(constant, jnp.nan, jnp.where(tail > bulk, tail, bulk))
    return rhat, jnp.where(constant, size, _bulk_ess(z, valid, half)).astype(z.dtype)


def _normal_scores(values, valid, size):
    """Blom's normal scores of the ``valid`` entries of ``values`` ranked among themselves
    (ties at their mean rank, as ``scipy.stats.rankdata``), and those entries sorted first.

    The sort is the diagnostics' (NumPy's on CPU, several times faster than XLA's there); a
    value's run of ties starts where a binary search finds it in the sorted values and ends
    where a reverse running minimum of the run ends says."""
    flat = jnp.where(valid, values, jnp.inf).reshape(-1)
    ordered = _from_order_keys(_sort_keys(_order_keys(flat)), flat.dtype)
    first = jnp.searchsorted(ordered, flat, side="left", method="scan_unrolled")
    position = jnp.arange(flat.size)
    ends = jnp.append(ordered[1:] != ordered[:-1], True)
    run_end = jax.lax.cummin(jnp.where(ends, position, flat.size - 1), reverse=True)
    last = jnp.minimum(run_end[first], size - 1)  # a run of infinities ends before the padding
    ranks = (first + last).astype(values.dtype) / 2 + 1
    z = jax.scipy.special.ndtri((ranks - 0.375) / (size + 0.25)).reshape(values.shape)
    return jnp.where(valid, z, 0), ordered


def _split_rhat(z, valid, n):
    """BlackJAX's ``potential_scale_reduction`` of the first ``n`` entries of each row."""
    means = z.sum(1) / n
    variances = jnp.where(valid, (z - means[:, None]) ** 2, 0).sum(1) / (n - 1)
    between = n * jnp.var(means, ddof=1)
    return jnp.sqrt((between / variances.mean() + n - 1) / n)


def _bulk_ess(z, valid, n):
    """ArviZ's ESS of the first ``n`` entries of each row of ``z`` (zero elsewhere): the
    chain-averaged autocovariance by FFT and Geyer's initial monotone sequence, searched up to
    ArviZ's loop bound for ``n`` draws."""
    chains, capacity = z.shape
    size = chains * n
    means = z.sum(1) / n
    centered = jnp.where(valid, z - means[:, None], 0)
    length = next_fast_len(2 * capacity, real=True)
    power = (jnp.abs(jnp.fft.rfft(centered, n=length)) ** 2).mean(0)
    autocov = jnp.fft.irfft(power, n=length)[:capacity] / n
    within = autocov[0] * n / (n - 1.0)
    var_plus = within * (n - 1.0) / n + jnp.var(means, ddof=1)
    rho = (1.0 - (within - autocov) / var_plus).at[0].set(1.0)
    num_pairs = max((capacity - 1) // 2, 1)
    pairs = rho[: 2 * num_pairs].reshape(num_pairs, 2)
    sums = pairs.sum(1)
    searched = jnp.arange(num_pairs) < jnp.maximum((n - 1) // 2, 1) - 1
    k = jnp.cumprod((sums > 0) & searched).sum()
    head = jnp.where(jnp.arange(num_pairs) < k, jax.lax.cummin(sums), 0.0).sum()
    tail = jnp.where((sums[k] >= 0) | (pairs[k, 0] > 0), pairs[k, 0], 0.0)
    tau = jnp.maximum(-1.0 + 2.0 * head + tail, 1.0 / jnp.log10(size))
    lags = jnp.arange(capacity) < n
    return jnp.where((jnp.isnan(rho) & lags).any(), jnp.nan, size / tau)


#: Bytes of kept draws (positions and statistics, all chains) that one compiled chunk of draws
#: holds on the device before they are copied to the host; bounds the device memory of a run
#: whatever ``num_samples``. Chunking does not change the draws.
CHUNK_BYTES = 64 * 2**20


def clear_cache() -> None:
    """Forget the compiled programs of earlier :func:`sample` calls (see
    :mod:`numpyro_ebm._cache`)."""
    _cache.clear()


class _Programs(NamedTuple):
    warmup: Callable  # (key, positions) -> (state, parameters)
    run_chunk: Callable  # (state, parameters, sample_key, start, limit, length) -> (state, out)
    state_treedef: Any  # of (state, parameters)
    out_shapes: Any  # of one draw's out


def _chunking(per_draw_bytes: int, num_samples: int, progress: bool, until) -> int:
    """Draws per compiled chunk: an ``until`` block, at most 100 with a progress bar (so that
    it moves) and 1000 without (Ctrl-C is answered between two chunks: one chunk for a whole
    run would hold it until the run's end), and at most :data:`CHUNK_BYTES` of output; the
    chunks of a run are of equal length (the last one padded by at most one draw per chunk),
    so one program serves them."""
    if until is not None:
        return min(until.block, num_samples)
    most = min(max(1, CHUNK_BYTES // max(per_draw_bytes, 1)), 100 if progress else 1000)
    chunks = math.ceil(num_samples / most)
    return math.ceil(num_samples / chunks)


def _over_chains(fn, mesh, spec=None):
    """``fn`` vmapped over chains; with a ``mesh``, each device vmaps its own block of chains
    (``shard_map``), so that nothing is gathered and chains never wait for another device's
    (a vmapped ``while_loop`` left to the partitioner would synchronize every iteration)."""
    if mesh is None:
        return fn
    spec = PartitionSpec("chains") if spec is None else spec
    return jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)


def _build_programs(chain_sampler, target, num_warmup, thinning, mesh, keep, stat_names):
    """The two compiled programs of a run: ``warmup(key, positions) -> (state, parameters)``
    and ``run_chunk(state, parameters, sample_key, start, limit, length) -> (state, out)``.

    ``run_chunk`` makes ``length`` draws, the draw of global index ``t`` with the key
    ``fold_in(sample_key, t)`` (so a run continued from its final state makes the draws a
    longer run would have made), and leaves the state untouched for ``t >= limit`` (the padding
    of a last, shorter chunk). ``out`` holds, draw-major (draw, chain, ...), each of ``keep``
    (``"kept"``: the draws, through the target's ``postprocess_fn``; ``"stats"``: the
    statistics named in ``stat_names``, all if ``None``; ``"unconstrained"``: the draws as
    sampled). The per-chain keys are ``split(key, num_chains)`` of one key per transition, the
    same values whatever the mesh (partitionable Threefry draws each device's block in place).
    """
    num_chains = target.num_chains
    if mesh is None:
        per_chain = per_draw = lambda tree: tree
    else:
        chains = NamedSharding(mesh, PartitionSpec("chains"))
        draws = NamedSharding(mesh, PartitionSpec(None, "chains"))
        per_chain = lambda tree: jax.lax.with_sharding_constraint(tree, chains)
        per_draw = lambda tree: jax.lax.with_sharding_constraint(tree, draws)
    warm = _over_chains(jax.vmap(lambda k, x: chain_sampler.warmup(k, x, num_warmup)), mesh)
    step = _over_chains(jax.vmap(chain_sampler.step), mesh)
    position = _over_chains(jax.vmap(chain_sampler.position), mesh)
    postprocess = target.postprocess_fn
    if postprocess is not None:
        postprocess = _over_chains(
            jax.vmap(jax.vmap(postprocess)), mesh, PartitionSpec(None, "chains")
        )

    def warmup(key, positions):
        return warm(per_chain(jax.random.split(key, num_chains)), positions)

    def transition(parameters):
        def one(state, key):
            return step(per_chain(jax.random.split(key, num_chains)), state, parameters)

        return one

    def one_draw(state, key, parameters):
        if thinning == 1:
            state, stats = transition(parameters)(state, key)
        else:
            state, stats = jax.lax.scan(
                transition(parameters), state, jax.random.split(key, thinning)
            )
            stats = jax.tree.map(lambda s: s[-1], stats) | {
                "num_grad_evals": stats["num_grad_evals"].sum(0),
                "nonfinite": stats["nonfinite"].any(0),
                "diverging": stats["diverging"].any(0),
            }
        if stat_names is not None:
            stats = {name: value for name, value in stats.items() if name in stat_names}
        return state, stats

    def run_chunk(state, parameters, sample_key, start, limit, length):
        def draw(state, t):
            state, stats = one_draw(state, jax.random.fold_in(sample_key, t), parameters)
            return state, (position(state), stats)

        shapes = jax.eval_shape(draw, state, start)[1]

        def body(state, t):
            def pad(state, t):  # past the last draw: the state stays as it is
                return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            return jax.lax.cond(t < limit, draw, pad, state, t)

        state, (unconstrained, stats) = jax.lax.scan(body, state, start + jnp.arange(length))
        out = {
            "kept": unconstrained if postprocess is None else postprocess(unconstrained),
            "stats": stats,
            "unconstrained": unconstrained,
        }
        return state, per_draw({name: out[name] for name in keep})

    return jax.jit(warmup), jax.jit(run_chunk, static_argnames="length")


def _programs(sampler, target, num_warmup, thinning, mesh, keep, stat_names) -> _Programs:
    """The cached programs of a run signature (built, not compiled, on a miss)."""
    signature = (
        sampler,
        target.cache_key,
        shapes_of(target.initial_position),
        num_warmup,
        thinning,
        mesh,
        keep,
        stat_names,
    )

    def build() -> _Programs:
        chain_sampler = sampler.chain_sampler(target)
        warmup, run_chunk = _build_programs(
            chain_sampler, target, num_warmup, thinning, mesh, keep, stat_names
        )
        key = jax.random.key(0)
        state, parameters = jax.eval_shape(warmup, key, target.initial_position)
        out_shapes = jax.eval_shape(
            lambda s, p, k: run_chunk(s, p, k, 0, 1, length=1), state, parameters, key
        )[1]
        return _Programs(warmup, run_chunk, jax.tree.structure((state, parameters)), out_shapes)

    return _cache.cached(signature, build)


def _stat_names(sampler, target, keep_stats) -> frozenset | None:
    """The statistics to keep (``nonfinite`` always), checked against those the sampler
    reports (traced once per run signature)."""
    if keep_stats is None:
        return None
    signature = ("stats", sampler, target.cache_key, shapes_of(target.initial_position))
    known = _cache.cached(signature, lambda: _reported_stats(sampler, target))
    unknown = sorted(set(keep_stats) - set(known))
    if unknown:
        raise ValueError(
            f"keep_stats={keep_stats!r} names no statistic of this sampler: {unknown}; "
            f"it reports {known}"
        )
    return frozenset({*keep_stats, "nonfinite"})


def _reported_stats(sampler, target) -> list[str]:
    chain_sampler = sampler.chain_sampler(target)
    one = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), target.initial_position
    )

    def probe(key, position):
        state, parameters = chain_sampler.warmup(key, position, 1)
        return chain_sampler.step(key, state, parameters)[1]

    return sorted(jax.eval_shape(probe, jax.random.key(0), one))


# --- the final state, kept with the draws -------------------------------------------------

_STATE_GROUP = "sampler_state"


def _state_dataset(
    state, parameters, sample_key, next_draw: int, sampler: Sampler, target: Target
) -> dict:
    leaves = jax.tree.leaves((state, parameters))
    arrays = {f"leaf_{i:03d}": np.asarray(jax.device_get(leaf)) for i, leaf in enumerate(leaves)}
    attrs = {
        "sampler": repr(sampler),
        "next_draw": int(next_draw),
        "sample_key": np.asarray(jax.random.key_data(sample_key)).tolist(),
        "num_leaves": len(leaves),
        **_target_record(target),
    }
    return {"arrays": arrays, "attrs": attrs}


def _target_record(target: Target) -> dict:
    """What a run's target computes (its :class:`~numpyro_ebm.targets.TargetKey`) and the
    shape of one configuration, as ``sampler_state`` attributes (netCDF-safe)."""
    key = target.cache_key
    return {
        "target_kind": key.kind,
        "target_content": key.content,
        "target_temperature": float(key.temperature),
        "target_support": key.support,
        "target_event_shape": event_shapes(target.initial_position),
    }


def _target_differences(stored, target: Target) -> list[str]:
    """How the target recorded by a run (``stored`` attributes) differs from ``target``, in
    words; empty if it is the same."""
    now = _target_record(target)
    if stored["target_kind"] != now["target_kind"]:
        return [f"a {stored['target_kind']} target, not a {now['target_kind']} target"]
    differences = []
    if stored["target_event_shape"] != now["target_event_shape"]:
        differences.append(
            f"event_shape {stored['target_event_shape']}, not {now['target_event_shape']}"
        )
    elif stored["target_content"] != now["target_content"]:  # traced at the same shapes
        what = "model or model arguments" if now["target_kind"] == "model" else "energy"
        differences.append(f"another {what} (what it computes differs)")
    for name in ("temperature", "support"):
        new = now[f"target_{name}"]
        old = type(new)(stored[f"target_{name}"])  # as read back from netCDF
        if old != new:
            differences.append(f"{name}={old!r}, not {name}={new!r}")
    return differences


def _resume_from(previous, sampler: Sampler, target: Target, programs: _Programs):
    """``(state, parameters, sample_key, next_draw)`` of a finished run, checked against the
    run it is to continue (sampler, target, state structure, chains)."""
    try:
        stored = _arviz.group(previous, _STATE_GROUP)
    except (KeyError, TypeError) as error:
        raise ValueError(
            "resume= must be the result of an earlier sample() call of a Markov-chain sampler "
            f"(with its {_STATE_GROUP!r} group): {error}"
        ) from None
    attrs = stored.attrs
    if attrs.get("sampler") != repr(sampler):
        raise ValueError(
            f"resume= holds a run of {attrs.get('sampler')}, not of {sampler!r}: continue a run "
            "with the sampler that made it"
        )
    if "target_content" not in attrs:
        raise ValueError(
            "resume= holds a run that does not record its target (made by an earlier "
            "numpyro-ebm), so it cannot be checked to continue this one: start a new run"
        )
    differences = _target_differences(attrs, target)
    if differences:
        raise ValueError(
            f"resume= holds a run of another target ({'; '.join(differences)}): continue a "
            "run with the target that made it"
        )
    num_chains = target.num_chains
    leaves = [jnp.asarray(stored[f"leaf_{i:03d}"].values) for i in range(attrs["num_leaves"])]
    if len(leaves) != programs.state_treedef.num_leaves:
        raise ValueError("resume= holds the state of another target: its structure differs")
    state = jax.tree.unflatten(programs.state_treedef, leaves)
    if leaves and leaves[0].shape[0] != num_chains:
        raise ValueError(f"resume= holds {leaves[0].shape[0]} chains, but num_chains={num_chains}")
    key_data = np.asarray(attrs["sample_key"], np.uint32)
    sample_key = jax.random.wrap_key_data(key_data)
    return (*state, sample_key, int(attrs["next_draw"]))


def _run_chains(
    sampler,
    target,
    key,
    num_warmup,
    num_samples,
    thinning,
    progress,
    until,
    mesh,
    keep_stats,
    resume,
):
    """Warm up (or take the state of ``resume``), then draw, all chains vmapped, in jitted
    scan chunks so that a host-side tqdm bar can follow and ``until`` can check mixing between
    chunks, without host callbacks. Each chunk's draws and statistics are copied into host
    arrays of shape (chain, draw, ...) allocated once: memory holds what is kept, plus one
    chunk on the device. With a ``mesh``, every per-chain array is split over its ``chains``
    axis. Returns draws, stats, the stop attributes and the final state's record."""
    from tqdm.auto import tqdm

    num_chains = target.num_chains
    keep = ("kept", "stats")
    if until is not None and target.postprocess_fn is not None:
        keep += ("unconstrained",)  # until= watches the sampler's own coordinates
    stat_names = _stat_names(sampler, target, keep_stats)
    programs = _programs(sampler, target, num_warmup, thinning, mesh, keep, stat_names)
    _check_kept_fits(programs.out_shapes, num_chains, num_samples)
    positions = target.initial_position
    if mesh is not None:
        positions = _sharding.place(positions, _sharding.sharded(mesh, "chains"))
    if resume is None:
        warmup_key, sample_key = jax.random.split(key)
        if mesh is not None:
            warmup_key = _sharding.place(warmup_key, _sharding.replicated(mesh))
        state, parameters = programs.warmup(warmup_key, positions)
        first = 0
    else:
        state, parameters, sample_key, first = _resume_from(resume, sampler, target, programs)
        if mesh is not None:
            state, parameters = _sharding.place(
                (state, parameters), _sharding.sharded(mesh, "chains")
            )
    if mesh is not None:
        sample_key = _sharding.place(sample_key, _sharding.replicated(mesh))
    out_shapes = programs.out_shapes
    per_draw = sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree.leaves(out_shapes))
    chunk = _chunking(per_draw, num_samples, progress, until)
    kept = jax.tree.map(
        lambda s: np.empty((num_chains, num_samples, *s.shape[2:]), s.dtype), out_shapes
    )
    attrs, done = {}, 0
    started = time.perf_counter()
    with tqdm(total=num_samples, disable=not progress, desc="sampling") as bar:
        while done < num_samples:
            start = jnp.asarray(first + done, jnp.int32)
            limit = jnp.asarray(first + num_samples, jnp.int32)
            state, out = programs.run_chunk(state, parameters, sample_key, start, limit, chunk)
            taken = min(chunk, num_samples - done)
            for host, device in zip(jax.tree.leaves(kept), jax.tree.leaves(out), strict=True):
                draws = _sharding.to_host(device)[:taken]
                host[:, done : done + taken] = np.swapaxes(draws, 0, 1)
            del out, draws
            bar.update(taken)
            done += taken
            if until is None or done < 4:
                continue
            so_far = jax.tree.leaves(kept.get("unconstrained", kept["kept"]))
            worst_rhat, min_ess = (float(v) for v in _mixing_so_far(so_far, np.int32(done)))
            attrs = {"until_rhat": worst_rhat, "until_ess_bulk": min_ess, "until_num_draws": done}
            bar.set_postfix(rhat=f"{worst_rhat:.3f}", ess=f"{min_ess:.0f}")
            if worst_rhat < until.rhat and min_ess > until.ess_bulk:
                attrs["until_reason"] = "converged"
                break
            if until.max_seconds is not None and time.perf_counter() - started > until.max_seconds:
                attrs["until_reason"] = "max_seconds"
                break
    if until is not None:
        attrs.setdefault("until_reason", "max_draws")
    kept = jax.tree.map(lambda x: x[:, :done], kept)
    record = _state_dataset(state, parameters, sample_key, first + done, sampler, target)
    return kept["kept"], kept["stats"], attrs, record


def _check_kept_fits(out_shapes, num_chains: int, num_samples: int) -> None:
    """Refuse, before the warm-up, a run whose kept draws and statistics (host arrays of
    shape (chain, draw, ...), allocated once) exceed this machine's physical memory."""
    per_draw = sum(
        num_chains * math.prod(s.shape[2:]) * s.dtype.itemsize for s in jax.tree.leaves(out_shapes)
    )
    needed = per_draw * num_samples
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: nothing to compare
        return
    if needed > available:
        raise MemoryError(
            f"num_samples={num_samples} x num_chains={num_chains} would keep {needed / 2**30:.3g} "
            f"GiB of draws and statistics, more than this machine's {available / 2**30:.3g} GiB; "
            "draw fewer (thinning=, or fewer statistics with keep_stats=)"
        )


def _check_model_call(target, model_args, model_kwargs) -> None:
    """A callable given without ``event_shape``/``init_position`` is read as a NumPyro model;
    refuse, in words, one that needs arguments it was not given (an energy ``E(x)`` whose
    ``event_shape`` was forgotten), rather than let NumPyro call it and fail."""
    try:
        signature = inspect.signature(target)
        signature.bind(*(model_args or ()), **(model_kwargs or {}))
    except ValueError:  # no signature to read (a builtin): let the call tell
        return
    except TypeError as error:
        raise TypeError(
            f"{getattr(target, '__name__', target)!r} was read as a NumPyro model (neither "
            f"event_shape nor init_position was given), but it cannot be called with "
            f"model_args={tuple(model_args or ())} and model_kwargs={model_kwargs or {}}: "
            f"{error}. For an energy give event_shape= (the shape of one configuration) or "
            "init_position=; for a model, its arguments in model_args/model_kwargs"
        ) from None


def _target(
    target,
    sampler,
    *,
    key,
    num_chains,
    init_position,
    event_shape,
    init_scale,
    temperature,
    model_args,
    model_kwargs,
    var_name,
    support,
) -> Target:
    """The target of a ``sample`` call: given, or built from a callable (one rule each)."""
    if isinstance(target, Target):
        given = {
            "init_position": init_position,
            "event_shape": event_shape,
            "model_args": model_args or None,
            "model_kwargs": model_kwargs,
        }
        extra = sorted(name for name, value in given.items() if value is not None)
        if extra:
            raise TypeError(
                f"{extra} were given beside a ready Target; they belong to energy_target or "
                "model_target"
            )
        if num_chains is not None and num_chains != target.num_chains:
            raise ValueError(
                f"num_chains={num_chains} but the target holds {target.num_chains} initial "
                "positions"
            )
        return target._replace(cache_key=target_key(target))  # its energy may have changed
    if not callable(target):
        raise TypeError(f"target must be an energy, a NumPyro model or a Target, got {target!r}")
    noise_conditional = "noise_conditional" in sampler.accepts and "energy" not in sampler.accepts
    if event_shape is not None or init_position is not None:
        if model_args or model_kwargs:
            raise TypeError(
                "model_args/model_kwargs were given with event_shape/init_position: a target "
                "is either an energy (event_shape or init_position) or a NumPyro model"
            )
        return energy_target(
            target,
            key=key,
            num_chains=num_chains,
            init_position=init_position,
            event_shape=event_shape,
            init_scale=init_scale,
            temperature=temperature,
            var_name=var_name,
            noise_conditional=noise_conditional,
            support=support,
        )
    _check_model_call(target, model_args, model_kwargs)
    return model_target(
        target,
        *model_args,
        key=key,
        num_chains=DEFAULT_NUM_CHAINS if num_chains is None else num_chains,
        subsample=sampler.minibatch,
        **(model_kwargs or {}),
    )


def sample(
    target,
    sampler="nuts",
    *,
    key: jax.Array | None = None,
    num_chains: int | None = None,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    thinning: int = 1,
    init_position=None,
    event_shape: Sequence[int] | None = None,
    init_scale: float = 1.0,
    temperature: float = 1.0,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    var_name: str = "x",
    support: str = "real",
    progress: bool = False,
    until: Until | None = None,
    devices=None,
    keep_stats: Sequence[str] | None = None,
    resume=None,
    **sampler_options,
):
    r"""Draw from an energy, a NumPyro model or a ready target with a sampler.

    Parameters
    ----------
    target
        A :class:`~numpyro_ebm.targets.Target` (:func:`~numpyro_ebm.energy_target`,
        :func:`~numpyro_ebm.model_target`), or a callable: an **energy** ``E(x) -> scalar``
        (give ``event_shape`` or ``init_position``), a noise-conditional energy or score for
        ``annealed_langevin``, or else a **NumPyro model** (with ``model_args``/
        ``model_kwargs``), sampled on NumPyro's unconstrained space and reported in
        constrained space.
    sampler
        A sampler value (``ne.samplers.mala(step_size=0.05)``, see
        :mod:`numpyro_ebm.samplers`) or a registered name (``"nuts"``, ``"hmc"``, ``"mala"``,
        ``"ula"``, ``"sgld"``, ``"annealed_langevin"``, ``"parallel_tempering"``,
        ``"tempered_smc"``, ``"numpyro_nuts"``) with its options as ``**sampler_options``. A
        sampler that cannot take the target says so before anything compiles.
    key
        PRNG key; the result is a deterministic function of it. Not with ``resume``.
    num_chains, num_samples, num_warmup, thinning
        Chains run in parallel (``vmap``) inside one compiled program (default 4, or the
        target's); each keeps ``num_samples`` draws, one every ``thinning`` transitions,
        after ``num_warmup`` tuning transitions. For ``tempered_smc`` a chain is an
        independent SMC run and ``num_samples`` its number of particles. Memory holds the kept
        draws plus one compiled chunk of draws (at most :data:`CHUNK_BYTES`) on the device.
    init_position
        Energy targets: one configuration per chain, every leaf with a leading
        ``num_chains`` axis (as NumPyro's ``init_params``). Default:
        :math:`\mathcal{N}(0, \text{init\_scale}^2)` draws. A 1-D ``init_position`` of
        length 4 needs ``num_chains`` or ``event_shape`` (4 chains of scalars, or one start?).
        Not with ``resume``.
    event_shape
        Shape of one configuration of an energy target.
    temperature
        Sample :math:`p_T \propto e^{-E/T}` (energy targets).
    var_name
        Name of an energy target's variable in ``posterior``.
    support
        ``"real"``, or ``"01"``/``"pm1"`` for a discrete energy (see
        :func:`~numpyro_ebm.energy_target`).
    progress
        Show a tqdm progress bar.
    until
        An :class:`Until` stop rule: draw in blocks until the chains have mixed, with
        ``num_samples`` as the budget of draws per chain (Markov-chain samplers only).
    devices
        Split the chains over devices: ``None`` (the default device), ``"all"``, a sequence of
        devices, or a ``jax.sharding.Mesh`` with a ``"chains"`` axis. ``num_chains`` must be a
        multiple of the number of devices; a key gives the same chains on 1 or 4 devices up to
        floating-point rounding (see ``docs/scaling.md``). Markov-chain samplers only.
    keep_stats
        Names of the per-draw ``sample_stats`` to keep (``None``: all); ``nonfinite`` is
        always kept. Markov-chain samplers only.
    resume
        The result of an earlier call with the same target and sampler: continue its chains
        from their final state (tuned step size, mass matrix, ladder kept; no warm-up) for
        ``num_samples`` more draws. The draws equal those a single longer run with the first
        call's key would have made after its first draws. The run records its target (what
        the energy or model computes, ``temperature``, ``support``, the shape of one
        configuration); another target is refused, naming what differs. Describe an energy
        target with ``event_shape`` (or a ready target), not ``init_position``.
    **sampler_options
        Options of a sampler given by name.

    Returns
    -------
    arviz.InferenceData (ArviZ 0.x) or xarray.DataTree (ArviZ >= 1)
        ``posterior`` with dims (chain, draw, ...), site names for models; ``sample_stats`` with
        ``acceptance_rate``, ``diverging``, ``step_size``, ``potential_energy``,
        ``num_grad_evals`` (per draw, thinning included) and ``nonfinite`` (a chain whose
        position or density stopped being finite; also reported by a ``RuntimeWarning``);
        ``sampler_state`` with the final state of Markov-chain samplers, for ``resume=``.

    Warns
    -----
    RuntimeWarning
        When the chains of an energy or a model fail a health check
        (:mod:`numpyro_ebm._health`, its thresholds and why): chains frozen (acceptance near 0,
        a collapsed step, an energy too large for float32 to resolve), a step size that
        exploded while every move was accepted (a flat, improper target), draws that run off
        (the energy falls and the norm grows move after move: an improper target), an energy
        that is NaN or infinite near the draws (the target silently truncated). The findings
        are recorded in ``sample_stats`` attributes, ``health`` (short reasons) and
        ``health_warnings`` (the messages), which :func:`~numpyro_ebm.mixing_report` repeats.
    """
    sampler = get_sampler(sampler, **sampler_options)
    num_samples = check_int("num_samples", num_samples)
    num_warmup = check_int("num_warmup", num_warmup, minimum=0)
    thinning = check_int("thinning", thinning)
    if num_chains is not None:
        num_chains = check_int("num_chains", num_chains)
    if resume is None:
        if key is None:
            raise TypeError("sample() needs key=, a jax.random.key (e.g. jax.random.key(0))")
        key = _typed_key(key)
    elif key is not None:
        raise TypeError(
            "resume= continues the earlier run with its own key; do not pass key= as well"
        )
    elif init_position is not None:
        raise ValueError(
            "resume= continues the chains from their final state, so init_position would be "
            "ignored: drop it (give event_shape=, or a ready ne.energy_target(...) for a pytree "
            "configuration, to say what the energy takes)"
        )
    else:
        key = jax.random.key(0)  # the initial positions it draws are replaced by the state
    if until is not None:
        if not isinstance(until, Until):
            raise TypeError(f"until must be a numpyro_ebm.Until, got {until!r}")
        until.check()
    if keep_stats is not None and (
        isinstance(keep_stats, str) or not all(isinstance(n, str) for n in keep_stats)
    ):
        raise TypeError(f"keep_stats must be a sequence of statistic names, got {keep_stats!r}")
    whole = {"until": until, "devices": devices, "keep_stats": keep_stats, "resume": resume}
    if sampler.is_runner:
        used = sorted(name for name, value in whole.items() if value is not None)
        if used:
            raise ValueError(
                f"{used} need a sampler that draws chain by chain; {sampler.name!r} runs as a whole"
            )
    mesh = _sharding.device_mesh(devices, "chains")
    init_key, run_key = jax.random.split(key)
    target = _target(
        target,
        sampler,
        key=init_key,
        num_chains=num_chains,
        init_position=init_position,
        event_shape=event_shape,
        init_scale=init_scale,
        temperature=temperature,
        model_args=model_args,
        model_kwargs=model_kwargs,
        var_name=var_name,
        support=support,
    )
    sampler.check(target)
    num_chains = target.num_chains
    if until is not None and num_chains < 2:
        raise ValueError(f"until= compares chains: num_chains must be >= 2, got {num_chains}")
    if mesh is not None:
        shards = _sharding.axis_size(mesh, "chains")
        if num_chains % shards:
            raise ValueError(
                f"num_chains={num_chains} must be a multiple of the {shards} devices of the "
                f"'chains' axis (devices={devices!r})"
            )

    groups = {}
    if sampler.is_runner:
        draws, stats, attrs = sampler.run(
            run_key,
            target,
            num_warmup=num_warmup,
            num_samples=num_samples,
            progress=progress,
            **sampler.options,
        )
        if target.postprocess_fn is not None:
            draws = jax.jit(jax.vmap(jax.vmap(target.postprocess_fn)))(draws)
    else:
        draws, stats, attrs, groups[_STATE_GROUP] = _run_chains(
            sampler,
            target,
            run_key,
            num_warmup,
            num_samples,
            thinning,
            progress,
            until,
            mesh,
            keep_stats,
            resume,
        )

    posterior = draws if target.kind == "model" else _named(target.var_name, draws)
    bad = np.asarray(stats["nonfinite"]).any(axis=1)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {num_chains} chain(s) reached a non-finite position or "
            f"density (chains {np.flatnonzero(bad).tolist()}); see sample_stats.nonfinite and "
            "do not use their draws",
            RuntimeWarning,
            stacklevel=2,
        )
    found = _health_findings(sampler, target, draws, posterior, stats, run_key)
    for finding in found:
        warnings.warn(finding.message, RuntimeWarning, stacklevel=2)
    if found:
        attrs |= {
            "health": [finding.reason for finding in found],
            "health_warnings": [finding.message for finding in found],
        }
    return _to_data(posterior, stats, attrs, sampler, groups)


def _health_findings(sampler, target, draws, posterior, stats, key) -> list:
    """The failed health checks (:mod:`numpyro_ebm._health`) of the chains of a continuous
    target: frozen chains, an exploded step size, draws that run off, and, for an energy, a
    probe of the energy near the draws for NaN or infinite values. Samplers whose draws are
    independent sweeps (those with a ``refine``) are not chains and are not checked."""
    if target.kind not in DENSITY_KINDS or sampler.refine is not None:
        return []
    found = _health.chain_findings(posterior, stats, _health.initial_step_size(sampler))
    kept = np.flatnonzero(~np.asarray(stats["nonfinite"]).any(axis=1))
    if target.kind != "energy" or not kept.size:
        return found
    probe = _cache.cached(
        ("probe", target.cache_key, shapes_of(target.initial_position)),
        lambda: _health.probe_program(target.logdensity_fn),
    )
    pick_key, move_key = jax.random.split(jax.random.fold_in(key, 1))
    count = int(probe(move_key, _health.probe_points(draws, kept, pick_key)))
    return found + ([_health.nonfinite_finding(count, _health.PROBE_POINTS)] if count else [])


def _named(var_name: str, draws) -> dict:
    """An energy's draws as posterior variables: ``var_name`` for an array, ``var_name.key``
    for each leaf of a pytree (``x.a``, ``x.b.0``)."""
    if isinstance(draws, np.ndarray | jax.Array):
        return {var_name: draws}
    return {
        var_name + "".join(f".{_path_name(k)}" for k in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(draws)
    }


def _path_name(entry) -> str:
    for field in ("key", "name", "idx"):
        if hasattr(entry, field):
            return str(getattr(entry, field))
    return str(entry)


def _to_data(posterior: dict, stats: dict, attrs: dict, sampler: Sampler, extra: dict):
    posterior = {name: np.asarray(value) for name, value in posterior.items()}
    stats = {name: np.asarray(value) for name, value in stats.items()}
    data = _arviz.from_dict(
        {"posterior": posterior, "sample_stats": stats},
        {
            "posterior": {"sampler": sampler.name},
            "sample_stats": {"sampler": sampler.name, "sampler_options": repr(sampler), **attrs},
        },
    )
    for name, record in extra.items():
        data = _arviz.add_group(data, name, record["arrays"], record["attrs"])
    return data
