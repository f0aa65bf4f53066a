"""A Markov-chain run of :func:`~numpyro_ebm.sample`, driven chunk by chunk.

The chains are warmed up (or continued from a ``resume=`` state), then drawn in compiled chunks
of equal length (:mod:`numpyro_ebm._programs`): between two chunks the host copies the draws
into arrays allocated once, moves the progress bar, answers Ctrl-C and, for ``until=``,
checks the chains' mixing (:mod:`numpyro_ebm._mixing`). Chunking does not change the draws.
"""

from __future__ import annotations

import math
import os
import time

import jax
import numpy as np

from numpyro_ebm import _arviz, _host_random
from numpyro_ebm import sharding as _sharding
from numpyro_ebm._mixing import mixing_so_far, nested_so_far
from numpyro_ebm._programs import cached_programs, kept_stat_names
from numpyro_ebm._resume import resume_from, state_record
from numpyro_ebm.diagnostics import nested_rhat_threshold

__all__ = ["run_chains"]


def run_chains(
    sampler,
    target,
    key,
    *,
    num_warmup: int,
    num_samples: int,
    thinning: int,
    progress: bool,
    until,
    mesh,
    keep_stats,
    resume,
    chunk_bytes: int,
):
    """Warm up (or take the state of ``resume``), then draw, all chains vmapped, in jitted
    scan chunks so that a host-side tqdm bar can follow and ``until`` can check mixing between
    chunks, without host callbacks. Each chunk's draws and statistics are copied into host
    arrays of shape (chain, draw, ...) allocated once: memory holds what is kept, plus one
    chunk of at most ``chunk_bytes`` on the device. With a ``mesh``, every per-chain array is
    split over its ``chains`` axis. A new run that one chunk holds is warmed up and drawn by one
    program (:func:`~numpyro_ebm._programs.build_programs`' third), which compiles in about 80 %
    of the time of the two. Returns draws, stats, the stop attributes and the final state's
    record (:func:`~numpyro_ebm._resume.state_record`)."""
    from tqdm.auto import tqdm

    num_chains = target.num_chains
    keep = ("kept", "stats")
    if until is not None and target.postprocess_fn is not None:
        keep += ("unconstrained",)  # until= watches the sampler's own coordinates
    stat_names = kept_stat_names(sampler, target, keep_stats)
    programs = cached_programs(
        sampler, target, key.dtype, num_warmup, thinning, mesh, keep, stat_names
    )
    _check_kept_fits(programs.out_shapes, num_chains, num_samples)
    out_shapes = programs.out_shapes
    per_draw = sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree.leaves(out_shapes))
    chunk = _chunk_length(per_draw, num_samples, progress, until, chunk_bytes)
    positions = target.initial_position
    if mesh is not None:
        positions = _sharding.place(positions, _sharding.sharded(mesh, "chains"))
    first_out = None  # the first chunk's draws, when the warm-up's program drew them
    if resume is None:
        warmup_key, sample_key = _host_random.split(key, 2)
        if mesh is not None:
            warmup_key, sample_key = _sharding.place(
                (warmup_key, sample_key), _sharding.replicated(mesh)
            )
        first = 0
        if chunk >= num_samples:  # one chunk holds the run: one program, warm-up and draws
            start, limit = np.int32(0), np.int32(num_samples)  # host scalars: no eager program
            state, parameters, first_out = programs.warmup_and_chunk(
                warmup_key, positions, sample_key, start, limit, chunk
            )
        else:
            state, parameters = programs.warmup(warmup_key, positions)
    else:
        state, parameters, sample_key, first = resume_from(
            resume, sampler, target, programs.state_treedef
        )
        if mesh is not None:
            state, parameters = _sharding.place(
                (state, parameters), _sharding.sharded(mesh, "chains")
            )
            sample_key = _sharding.place(sample_key, _sharding.replicated(mesh))
    kept = jax.tree.map(
        lambda s: np.empty((num_chains, num_samples, *s.shape[2:]), s.dtype), out_shapes
    )
    attrs, done = {}, 0
    started = time.perf_counter()
    with tqdm(total=num_samples, disable=not progress, desc="sampling") as bar:
        while done < num_samples:
            if first_out is None:
                start, limit = np.int32(first + done), np.int32(first + num_samples)
                state, out = programs.run_chunk(state, parameters, sample_key, start, limit, chunk)
            else:
                out, first_out = first_out, None
            # The data are built after the run: ArviZ is imported while the chains run, once
            # their programs are compiled and dispatched (XLA compiles on every core: an import
            # beside the compile slowed it from 1.0 to 1.5 s, MALA on a 2-layer MLP, 2 cores).
            if done == 0:
                _arviz.prefetch()
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
            worst_rhat, min_ess = (float(v) for v in mixing_so_far(so_far, np.int32(done)))
            attrs = {"until_rhat": worst_rhat, "until_ess_bulk": min_ess, "until_num_draws": done}
            bar.set_postfix(rhat=f"{worst_rhat:.3f}", ess=f"{min_ess:.0f}")
            agree = worst_rhat < until.rhat
            if until.superchains is not None:
                nested = float(nested_so_far(so_far, np.int32(done), superchains=until.superchains))
                attrs["until_nested_rhat"] = nested
                threshold = until.nested_rhat or nested_rhat_threshold(
                    num_chains // until.superchains
                )
                agree = nested < threshold
            if agree and min_ess > until.ess_bulk:
                attrs["until_reason"] = "converged"
                break
            if until.max_seconds is not None and time.perf_counter() - started > until.max_seconds:
                attrs["until_reason"] = "max_seconds"
                break
    if until is not None:
        attrs.setdefault("until_reason", "max_draws")
    kept = jax.tree.map(lambda x: x[:, :done], kept)
    record = state_record(state, parameters, sample_key, first + done, sampler, target)
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


def _chunk_length(
    per_draw_bytes: int, num_samples: int, progress: bool, until, chunk_bytes: int
) -> int:
    """Draws per compiled chunk: an ``until`` block, at most 100 with a progress bar (so that
    it moves) and 1000 without (Ctrl-C is answered between two chunks: one chunk for a whole
    run would hold it until the run's end), and at most ``chunk_bytes`` of output; the
    chunks of a run are of equal length (the last one padded by at most one draw per chunk),
    so one program serves them."""
    if until is not None:
        return min(until.block, num_samples)
    most = min(max(1, chunk_bytes // max(per_draw_bytes, 1)), 100 if progress else 1000)
    chunks = math.ceil(num_samples / most)
    return math.ceil(num_samples / chunks)
