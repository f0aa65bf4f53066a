"""``sample()``: a target and a sampler name in, ``arviz.InferenceData`` out."""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from numpyro_ebm import _arviz, diagnostics
from numpyro_ebm import sharding as _sharding
from numpyro_ebm._checks import check_finite_array, check_int, check_positive
from numpyro_ebm.model import (
    ModelDensity,
    logdensity_from_model,
    minibatch_logdensity_from_model,
)
from numpyro_ebm.samplers import Target, get_sampler

__all__ = ["Until", "sample"]


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
    ``until_ess_bulk`` and ``until_num_draws``.
    """

    rhat: float = 1.01
    ess_bulk: float = 400.0
    max_seconds: float | None = None
    block: int = 100

    def check(self) -> None:
        check_positive("until.rhat", self.rhat)
        check_positive("until.ess_bulk", self.ess_bulk)
        if self.max_seconds is not None:
            check_positive("until.max_seconds", self.max_seconds)
        check_int("until.block", self.block, minimum=4)

    def mixing(self, draws) -> tuple[float, float]:
        """Worst R-hat and bulk ESS over every coordinate of ``draws`` (chain, draw, ...)."""
        flat = jnp.concatenate(
            [leaf.reshape(*leaf.shape[:2], -1) for leaf in jax.tree.leaves(draws)], axis=-1
        )
        return float(jnp.max(diagnostics.rhat(flat))), float(jnp.min(diagnostics.ess_bulk(flat)))


def _energy_target(energy, temperature, init_position, event_shape, num_chains, key, scale):
    """The energy's log density and one initial position per chain."""
    if init_position is None:
        shape = tuple(int(d) for d in event_shape)
        init_position = scale * jax.random.normal(key, (num_chains, *shape))
    else:
        init_position = jax.tree.map(jnp.asarray, init_position)
        leaves = jax.tree.leaves(init_position)
        if event_shape is not None:
            shape = (tuple(int(d) for d in event_shape),)
            if leaves[0].shape[-len(shape[0]) :] != shape[0]:
                raise ValueError(
                    f"init_position of shape {leaves[0].shape} does not end with "
                    f"event_shape={shape[0]}"
                )
        if event_shape is None or leaves[0].shape == tuple(event_shape):
            init_position = jax.tree.map(
                lambda x: jnp.broadcast_to(x, (num_chains, *x.shape)), init_position
            )
        for leaf in jax.tree.leaves(init_position):
            if leaf.shape[0] != num_chains:
                raise ValueError(
                    f"init_position has {leaf.shape[0]} chains along its first "
                    f"axis but num_chains={num_chains}"
                )
        for leaf in jax.tree.leaves(init_position):
            if not bool(jnp.all(jnp.isfinite(leaf))):  # on the device; details only if not
                check_finite_array("init_position", leaf)

    def logdensity_fn(x):
        return -energy(x) / temperature

    return logdensity_fn, init_position


def _model_target(model, args, kwargs, num_chains, key, sampler):
    """A model's Target, postprocess function and one initial position per chain."""
    keys = jax.random.split(key, num_chains)
    try:
        # one trace for all chains: NumPyro draws a batch of keys' initial positions in a
        # compiled loop (the same positions as one call per key, without num_chains traces)
        density = logdensity_from_model(model, *args, key=keys, **kwargs)
        target = Target(density.logdensity_fn, model, "model", tuple(args), kwargs, None)
        return target, density.postprocess_fn, density.initial_position
    except ValueError as error:
        if "subsample" not in str(error):
            raise
        if sampler != "sgld":
            raise ValueError(
                f"the model subsamples its data (a plate with subsample_size), which only the "
                f"stochastic-gradient sampler 'sgld' supports; {sampler!r} needs the full data"
            ) from error
        densities = [minibatch_logdensity_from_model(model, *args, key=k, **kwargs) for k in keys]
        minibatch_fn = densities[0][0]
        fixed = keys[0]
        densities = [ModelDensity(lambda z: minibatch_fn(fixed, z), *d[1:]) for d in densities]
    positions = jax.tree.map(lambda *xs: jnp.stack(xs), *[d.initial_position for d in densities])
    target = Target(densities[0].logdensity_fn, model, "model", tuple(args), kwargs, minibatch_fn)
    return target, densities[0].postprocess_fn, positions


#: Bytes of kept draws (positions and statistics, all chains) that one compiled chunk of draws
#: holds on the device before they are copied to the host; bounds the device memory of a run
#: whatever ``num_samples``. Chunking does not change the draws.
CHUNK_BYTES = 64 * 2**20


def _chunk_length(out_shapes, num_samples, progress, until) -> int:
    """Draws per compiled chunk: an ``until`` block, at most 100 with a progress bar (so that
    it moves), and at most :data:`CHUNK_BYTES` of output."""
    if until is not None:
        return min(until.block, num_samples)
    per_draw = sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree.leaves(out_shapes))
    chunk = max(1, min(num_samples, CHUNK_BYTES // max(per_draw, 1)))
    return min(chunk, 100) if progress else chunk


def _over_chains(fn, mesh, spec=None):
    """``fn`` vmapped over chains; with a ``mesh``, each device vmaps its own block of chains
    (``shard_map``), so that nothing is gathered and chains never wait for another device's
    (a vmapped ``while_loop`` left to the partitioner would synchronize every iteration)."""
    if mesh is None:
        return fn
    spec = PartitionSpec("chains") if spec is None else spec
    return jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)


def _stat_names(chain_sampler, positions) -> list[str]:
    """The names of the per-draw statistics of ``chain_sampler`` (traced, not compiled)."""
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), positions)

    def probe(key, position):
        state, parameters = chain_sampler.warmup(key, position, 1)
        return chain_sampler.step(key, state, parameters)[1]

    return sorted(jax.eval_shape(probe, jax.random.key(0), one))


def _chain_programs(
    chain_sampler, num_chains, num_warmup, thinning, mesh, postprocess, keep, stat_names=None
):
    """The two compiled programs of a run: ``warmup(key, positions) -> (state, parameters)``
    and ``run_chunk(state, parameters, keys) -> (state, out)``, ``out`` holding one entry per
    key of ``keys`` (draw-major: (draw, chain, ...)) for each of ``keep`` (``"kept"``: the
    draws, through ``postprocess``; ``"stats"``: the statistics named in ``stat_names``, all
    if ``None``; ``"unconstrained"``: the draws as sampled).

    The per-chain keys are ``split(key, num_chains)`` of one key per transition, the same
    values whatever the mesh (partitionable Threefry draws each device's block in place)."""
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
    if postprocess is not None:
        postprocess = _over_chains(
            jax.vmap(jax.vmap(postprocess)), mesh, PartitionSpec(None, "chains")
        )

    def warmup(key, positions):
        return warm(per_chain(jax.random.split(key, num_chains)), positions)

    def one_draw(state, key, parameters):
        def transition(state, key):
            return step(per_chain(jax.random.split(key, num_chains)), state, parameters)

        state, stats = jax.lax.scan(transition, state, jax.random.split(key, thinning))
        stats = jax.tree.map(lambda s: s[-1], stats) | {
            "num_grad_evals": stats["num_grad_evals"].sum(0),
            "nonfinite": stats["nonfinite"].any(0),
            "diverging": stats["diverging"].any(0),
        }
        if stat_names is not None:
            stats = {name: value for name, value in stats.items() if name in stat_names}
        return state, (position(state), stats)

    def run_chunk(state, parameters, keys):
        # per-chain parameters are arguments, not constants baked into the program
        state, (unconstrained, stats) = jax.lax.scan(
            lambda state, key: one_draw(state, key, parameters), state, keys
        )
        out = {
            "kept": unconstrained if postprocess is None else postprocess(unconstrained),
            "stats": stats,
            "unconstrained": unconstrained,
        }
        return state, per_draw({name: out[name] for name in keep})

    return jax.jit(warmup), jax.jit(run_chunk)


def _run_chains(
    chain_sampler,
    key,
    positions,
    num_warmup,
    num_samples,
    thinning,
    progress,
    until=None,
    mesh=None,
    postprocess=None,
    keep_stats=None,
):
    """Warm up, then draw, all chains vmapped; draws are taken in jitted scan chunks so that a
    host-side tqdm bar can follow and ``until`` can check mixing between chunks (one compiled
    chunk, reused), without host callbacks.

    Each chunk's draws (passed through ``postprocess`` on the device, for models) and
    statistics are copied into host arrays of shape (chain, draw, ...) allocated once: memory
    holds what is kept, plus one chunk on the device. With a ``mesh``, every per-chain array
    (positions, states, tuned parameters, per-chain keys, draws) is split over its ``chains``
    axis. Returns draws, stats and the stop attributes."""
    num_chains = jax.tree.leaves(positions)[0].shape[0]
    warmup_key, sample_key = jax.random.split(key)
    if mesh is not None:
        warmup_key, sample_key = _sharding.place(
            (warmup_key, sample_key), _sharding.replicated(mesh)
        )
    keep = ("kept", "stats")
    if until is not None and postprocess is not None:
        keep += ("unconstrained",)  # until= watches the sampler's own coordinates
    if keep_stats is not None:
        known = _stat_names(chain_sampler, positions)
        unknown = sorted(set(keep_stats) - set(known))
        if unknown:
            raise ValueError(
                f"keep_stats={keep_stats!r} names no statistic of this sampler: {unknown}; "
                f"it reports {known}"
            )
        keep_stats = {*keep_stats, "nonfinite"}
    warmup, run_chunk = _chain_programs(
        chain_sampler, num_chains, num_warmup, thinning, mesh, postprocess, keep, keep_stats
    )
    state, parameters = warmup(warmup_key, positions)
    draw_keys = jax.random.split(sample_key, num_samples)
    out_shapes = jax.eval_shape(run_chunk, state, parameters, draw_keys[:1])[1]
    chunk = _chunk_length(out_shapes, num_samples, progress, until)
    # the kept draws, (chain, draw, ...) on the host, filled chunk by chunk
    kept = jax.tree.map(
        lambda s: np.empty((num_chains, num_samples, *s.shape[2:]), s.dtype), out_shapes
    )
    attrs, start = {}, 0
    started = time.perf_counter()
    with tqdm(total=num_samples, disable=not progress, desc="sampling") as bar:
        while start < num_samples:
            keys = draw_keys[start : start + chunk]
            if keys.shape[0] < chunk:  # the last, shorter chunk: pad, then drop the extra
                keys = jnp.concatenate([keys, draw_keys[: chunk - keys.shape[0]]])
            state, out = run_chunk(state, parameters, keys)
            taken = min(chunk, num_samples - start)
            for host, device in zip(jax.tree.leaves(kept), jax.tree.leaves(out), strict=True):
                draws = _sharding.to_host(device)[:taken]
                host[:, start : start + taken] = np.swapaxes(draws, 0, 1)
            del out, draws
            bar.update(taken)
            start += taken
            if until is None or start < 4:
                continue
            so_far = kept.get("unconstrained", kept["kept"])
            worst_rhat, min_ess = until.mixing(jax.tree.map(lambda x, n=start: x[:, :n], so_far))
            attrs = {"until_rhat": worst_rhat, "until_ess_bulk": min_ess, "until_num_draws": start}
            bar.set_postfix(rhat=f"{worst_rhat:.3f}", ess=f"{min_ess:.0f}")
            if worst_rhat < until.rhat and min_ess > until.ess_bulk:
                attrs["until_reason"] = "converged"
                break
            if until.max_seconds is not None and time.perf_counter() - started > until.max_seconds:
                attrs["until_reason"] = "max_seconds"
                break
    if until is not None:
        attrs.setdefault("until_reason", "max_draws")
    kept = jax.tree.map(lambda x: x[:, :start], kept)
    return kept["kept"], kept["stats"], attrs


def _to_inference_data(posterior: dict, stats: dict, attrs: dict, sampler: str):
    posterior = {name: np.asarray(value) for name, value in posterior.items()}
    stats = {name: np.asarray(value) for name, value in stats.items()}
    return _arviz.from_dict(
        {"posterior": posterior, "sample_stats": stats},
        {"posterior": {"sampler": sampler}, "sample_stats": {"sampler": sampler, **attrs}},
    )


def sample(
    target: Callable,
    sampler: str = "nuts",
    *,
    key: jax.Array,
    num_chains: int = 4,
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
    progress: bool = False,
    until: Until | None = None,
    devices=None,
    keep_stats: Sequence[str] | None = None,
    **sampler_options,
):
    r"""Draw from an energy or a NumPyro model with a named sampler.

    Parameters
    ----------
    target
        An **energy** ``E(x) -> scalar`` (give ``event_shape`` or ``init_position``), a
        noise-conditional energy or score for ``"annealed_langevin"``, or else a **NumPyro
        model** (with ``model_args``/``model_kwargs``), sampled on NumPyro's unconstrained space
        through :func:`~numpyro_ebm.logdensity_from_model` and reported in constrained space.
    sampler
        A registered name: ``"nuts"``, ``"hmc"``, ``"mala"``, ``"sgld"``,
        ``"annealed_langevin"``, ``"parallel_tempering"``, ``"tempered_smc"``,
        ``"numpyro_nuts"`` (see :mod:`numpyro_ebm.samplers`).
    key
        PRNG key; the result is a deterministic function of it.
    num_chains, num_samples, num_warmup, thinning
        Chains run in parallel (``vmap``) inside one compiled program; each keeps
        ``num_samples`` draws, one every ``thinning`` transitions, after ``num_warmup`` tuning
        transitions. For ``"tempered_smc"`` a chain is an independent SMC run and
        ``num_samples`` its number of particles. Memory holds the kept draws (positions and
        statistics, ``num_chains * num_samples`` of each) plus one compiled chunk of draws
        (at most :data:`CHUNK_BYTES`) on the device, whatever the number of transitions:
        ``num_samples=1, thinning=T`` keeps only each chain's state after ``T`` transitions.
    init_position
        Energy targets: one configuration (shared by all chains) or one per chain (leading
        axis ``num_chains``). Default: :math:`\mathcal{N}(0, \text{init\_scale}^2)` draws.
    event_shape
        Shape of one configuration of an energy target.
    temperature
        Sample :math:`p_T \propto e^{-E/T}` (energy targets).
    var_name
        Name of an energy target's variable in ``posterior``.
    progress
        Show a tqdm progress bar.
    until
        An :class:`Until` stop rule: draw in blocks until the chains have mixed, with
        ``num_samples`` as the budget of draws per chain (samplers that draw by chain only,
        not ``"tempered_smc"`` or ``"numpyro_nuts"``).
    devices
        Split the chains over devices: ``None`` (default: the default device), ``"all"``
        (every device of ``jax.devices()``, all processes' after
        ``jax.distributed.initialize``), a sequence of devices, or a ``jax.sharding.Mesh``
        with a ``"chains"`` axis (replicated over its other axes). ``num_chains`` must be a
        multiple of the number of devices. Each device runs its block of chains
        (``shard_map`` of the vmapped chain; initial positions, states, tuned parameters and
        per-chain keys live on their chain's device, and no step communicates); each chunk of
        draws is then gathered to the host (to every process). The per-chain keys are
        ``split(key, num_chains)`` of the same keys whatever the devices, so a key gives the
        same chains on 1 or 4 devices up to floating-point rounding (XLA may round a few
        operations differently for another per-device batch shape). A Markov chain can
        amplify such a difference over many transitions (HMC/NUTS trajectories, a
        Metropolis test within rounding of its threshold); the draws then differ but have the
        same distribution. Not for ``"tempered_smc"`` or ``"numpyro_nuts"``, which run their
        own programs. See ``docs/scaling.md``.
    keep_stats
        Names of the per-draw ``sample_stats`` to keep (``None``: all); ``nonfinite`` is
        always kept. ``keep_stats=()`` keeps 1 byte per chain and draw instead of 18 (the
        statistics outweigh a 2-D position); not for ``"tempered_smc"`` or
        ``"numpyro_nuts"``.
    **sampler_options
        Passed to the sampler (step sizes, noise schedules, ladders; see each sampler).

    Returns
    -------
    arviz.InferenceData (ArviZ 0.x) or xarray.DataTree (ArviZ >= 1)
        ``posterior`` with dims (chain, draw, ...), site names for models; ``sample_stats`` with
        ``acceptance_rate``, ``diverging``, ``step_size``, ``potential_energy``,
        ``num_grad_evals`` (per draw, thinning included) and ``nonfinite`` (a chain whose
        position or density stopped being finite; also reported by a ``RuntimeWarning``).
    """
    factory, is_runner = get_sampler(sampler)
    num_chains = check_int("num_chains", num_chains)
    num_samples = check_int("num_samples", num_samples)
    num_warmup = check_int("num_warmup", num_warmup, minimum=0)
    thinning = check_int("thinning", thinning)
    check_positive("temperature", temperature)
    check_positive("init_scale", init_scale)
    if until is not None:
        if not isinstance(until, Until):
            raise TypeError(f"until must be a numpyro_ebm.Until, got {until!r}")
        until.check()
        if is_runner:
            raise ValueError(
                f"until= needs a sampler that draws chain by chain; {sampler!r} does not"
            )
        if num_chains < 2:
            raise ValueError(f"until= compares chains: num_chains must be >= 2, got {num_chains}")
    if not callable(target):
        raise TypeError(f"target must be an energy or a NumPyro model, got {target!r}")
    if keep_stats is not None:
        if isinstance(keep_stats, str) or not all(isinstance(n, str) for n in keep_stats):
            raise TypeError(f"keep_stats must be a sequence of statistic names, got {keep_stats!r}")
        if is_runner:
            raise ValueError(
                f"keep_stats= needs a sampler that draws chain by chain; {sampler!r} does not"
            )
    mesh = _sharding.device_mesh(devices, "chains")
    if mesh is not None:
        if is_runner:
            raise ValueError(
                f"devices= shards chains that sample() steps itself; {sampler!r} runs its own "
                "program: leave devices=None"
            )
        shards = _sharding.axis_size(mesh, "chains")
        if num_chains % shards:
            raise ValueError(
                f"num_chains={num_chains} must be a multiple of the {shards} devices of the "
                f"'chains' axis (devices={devices!r})"
            )
    init_key, run_key = jax.random.split(key)

    if event_shape is not None or init_position is not None:
        logdensity_fn, positions = _energy_target(
            target, temperature, init_position, event_shape, num_chains, init_key, init_scale
        )
        if sampler != "annealed_langevin":
            from numpyro_ebm.energy import evaluate_energy

            energies = jax.vmap(lambda x: evaluate_energy(target, x, name="target"))(positions)
            check_finite_array("energy at init_position (one per chain)", energies)
        spec, postprocess = Target(logdensity_fn, target, "energy"), None
    else:
        spec, postprocess, positions = _model_target(
            target, model_args, model_kwargs or {}, num_chains, init_key, sampler
        )

    if is_runner:
        draws, stats, attrs = factory(
            run_key,
            spec,
            positions,
            num_warmup=num_warmup,
            num_samples=num_samples,
            progress=progress,
            **sampler_options,
        )
        if postprocess is not None:
            draws = jax.jit(jax.vmap(jax.vmap(postprocess)))(draws)
    else:
        accepted = inspect.signature(factory).parameters
        unknown = set(sampler_options) - set(accepted) if "options" not in accepted else set()
        if unknown:
            raise TypeError(f"sampler {sampler!r} takes no option(s) {sorted(unknown)}")
        chain_sampler = factory(spec, **sampler_options)
        if mesh is not None:
            positions = _sharding.place(positions, _sharding.sharded(mesh, "chains"))
        draws, stats, attrs = _run_chains(
            chain_sampler,
            run_key,
            positions,
            num_warmup,
            num_samples,
            thinning,
            progress,
            until,
            mesh,
            postprocess,
            keep_stats,
        )

    posterior = draws if spec.kind == "model" else {var_name: draws}
    bad = np.asarray(stats["nonfinite"]).any(axis=1)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {num_chains} chain(s) reached a non-finite position or "
            f"density (chains {np.flatnonzero(bad).tolist()}); see sample_stats.nonfinite and "
            "do not use their draws",
            RuntimeWarning,
            stacklevel=2,
        )
    return _to_inference_data(posterior, stats, attrs, sampler)
