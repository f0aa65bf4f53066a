"""The compiled programs of a Markov-chain run, cached by run signature.

A run of :func:`~numpyro_ebm.sample` with a chain-by-chain sampler is two programs: the
warm-up of every chain, and a chunk of draws, ``vmap``-ed over chains and scanned over draws
(each device its own block of chains under a mesh); or, when one chunk holds the whole run,
one program doing both (XLA compiles it in about 80 % of the time of the two: 1.15 s against
1.42 s for MALA on a 2-layer MLP energy, 1024 chains, 2 CPU cores). They are cached by
(sampler, target content, shapes, warmup length, thinning, devices, statistics kept), so that
a repeated call compiles nothing new (:mod:`numpyro_ebm._cache`).

The warm-up and one draw are jitted functions of their own, which the chunk programs call:
JAX keeps the trace of a jitted function by argument types, so the sampler's warm-up and
transition are traced once per signature, for the output shapes that the host arrays are
allocated from, and that trace is reused by every program that calls them (the warm-up with a
chunk, chunks of any length, the padding's shapes, a run continued by ``resume=``, whose
restored values have the strong types the warm-up returns); XLA inlines the calls. They are
traced on the arguments the programs take (the run key's type, the chains split over a mesh),
so that an energy is traced 6 times by a first run (its cache key and purity check, the start
check, the warm-up's init and moves, a draw) instead of 11.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from numpyro_ebm import _cache
from numpyro_ebm.sharding import replicated, sharded
from numpyro_ebm.targets import shapes_of

__all__ = ["Programs", "build_programs", "cached_programs", "kept_stat_names"]


class Programs(NamedTuple):
    """The programs of a run signature, built (compiled on their first call)."""

    warmup: Callable  # (key, positions) -> (state, parameters)
    run_chunk: Callable  # (state, parameters, sample_key, start, limit, length) -> (state, out)
    # (key, positions, sample_key, start, limit, length) -> (state, parameters, out)
    warmup_and_chunk: Callable
    state_treedef: Any  # of (state, parameters)
    out_shapes: Any  # of one draw's out


def _over_chains(fn, mesh, spec=None):
    """``fn`` vmapped over chains; with a ``mesh``, each device vmaps its own block of chains
    (``shard_map``), so that nothing is gathered and chains never wait for another device's
    (a vmapped ``while_loop`` left to the partitioner would synchronize every iteration)."""
    if mesh is None:
        return fn
    spec = PartitionSpec("chains") if spec is None else spec
    return jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)


def _strong(x):
    """``x`` with a strong type (a PRNG key as it is: its type is never weak)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return x
    return jax.lax.convert_element_type(x, x.dtype)


def build_programs(chain_sampler, target, num_warmup, thinning, mesh, keep, stat_names):
    """The compiled programs of a run: ``warmup(key, positions) -> (state, parameters)``,
    ``run_chunk(state, parameters, sample_key, start, limit, length) -> (state, out)`` and the
    two as one, ``warmup_and_chunk(key, positions, sample_key, start, limit, length) ->
    (state, parameters, out)``.

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
        chains, draws = sharded(mesh, "chains"), sharded(mesh, "chains", leading=1)
        per_chain = lambda tree: jax.lax.with_sharding_constraint(tree, chains)
        per_draw = lambda tree: jax.lax.with_sharding_constraint(tree, draws)
    if chain_sampler.ensemble_warmup is None:
        warm = _over_chains(jax.vmap(lambda k, x: chain_sampler.warmup(k, x, num_warmup)), mesh)
    else:  # tuned across chains: one program over all of them (partitioned under a mesh)
        warm = lambda keys, positions: chain_sampler.ensemble_warmup(keys, positions, num_warmup)
    step = _over_chains(jax.vmap(chain_sampler.step), mesh)
    position = _over_chains(jax.vmap(chain_sampler.position), mesh)
    postprocess = target.postprocess_fn
    if postprocess is not None:
        postprocess = _over_chains(
            jax.vmap(jax.vmap(postprocess)), mesh, PartitionSpec(None, "chains")
        )

    @jax.jit
    def warmup(key, positions):
        state, parameters = warm(per_chain(jax.random.split(key, num_chains)), positions)
        # no weak types: a state and parameters restored by resume= (host arrays, whose types
        # are strong) then take the programs these traced
        return per_chain(jax.tree.map(_strong, (state, parameters)))

    def transition(parameters):
        def one(state, key):
            return step(per_chain(jax.random.split(key, num_chains)), state, parameters)

        return one

    @jax.jit
    def draw(state, parameters, sample_key, t):
        key = jax.random.fold_in(sample_key, t)
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
        return state, (position(state), stats)

    def run_chunk(state, parameters, sample_key, start, limit, length):
        shapes = jax.eval_shape(draw, state, parameters, sample_key, start)[1]

        def body(state, t):
            def pad(state, t):  # past the last draw: the state stays as it is
                return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

            return jax.lax.cond(
                t < limit, lambda s, t: draw(s, parameters, sample_key, t), pad, state, t
            )

        steps = start + jnp.arange(length, dtype=jnp.int32)
        state, (unconstrained, stats) = jax.lax.scan(body, state, steps)
        out = {
            "kept": unconstrained if postprocess is None else postprocess(unconstrained),
            "stats": stats,
            "unconstrained": unconstrained,
        }
        return state, per_draw({name: out[name] for name in keep})

    def warmup_and_chunk(key, positions, sample_key, start, limit, length):
        state, parameters = warmup(key, positions)
        state, out = run_chunk(state, parameters, sample_key, start, limit, length)
        return state, parameters, out

    return (
        warmup,
        jax.jit(run_chunk, static_argnames="length"),
        jax.jit(warmup_and_chunk, static_argnames="length"),
    )


def cached_programs(
    sampler, target, key_type, num_warmup, thinning, mesh, keep, stat_names
) -> Programs:
    """The cached programs of a run signature (built and traced, not compiled, on a miss: the
    shapes of the state and of one draw's output come from the traces that the programs reuse
    when they compile, traced on the arguments they will take: keys of ``key_type``, the
    positions split over the mesh's chains, the keys replicated)."""
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

    def build() -> Programs:
        chain_sampler = sampler.chain_sampler(target)
        warmup, run_chunk, warmup_and_chunk = build_programs(
            chain_sampler, target, num_warmup, thinning, mesh, keep, stat_names
        )
        chains = key_sharding = None
        if mesh is not None:
            chains, key_sharding = sharded(mesh, "chains"), replicated(mesh)

        def split_shapes(tree):  # the shapes of per-chain arrays, split over the mesh's chains
            return jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=chains), tree
            )

        key = jax.ShapeDtypeStruct((), key_type, sharding=key_sharding)
        state, parameters = split_shapes(
            jax.eval_shape(warmup, key, split_shapes(target.initial_position))
        )
        out_shapes = jax.eval_shape(
            lambda s, p, k, t: run_chunk(s, p, k, t, t, length=1),
            state,
            parameters,
            key,
            jax.ShapeDtypeStruct((), jnp.int32),
        )[1]
        treedef = jax.tree.structure((state, parameters))
        return Programs(warmup, run_chunk, warmup_and_chunk, treedef, out_shapes)

    return _cache.cached(signature, build)


def kept_stat_names(sampler, target, keep_stats) -> frozenset | None:
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
    # the statistics whose findings sample() always warns about
    return frozenset(
        {*keep_stats, "nonfinite", *({"auxiliary_failed", "calibration_failed"} & set(known))}
    )


def _reported_stats(sampler, target) -> list[str]:
    chain_sampler = sampler.chain_sampler(target)
    one = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), target.initial_position
    )

    def probe(key, position):
        state, parameters = chain_sampler.warmup(key, position, 1)
        return chain_sampler.step(key, state, parameters)[1]

    return sorted(jax.eval_shape(probe, jax.random.key(0), one))
