"""``sample()``: a target and a sampler in, ArviZ data out, the final state kept to continue.

The driver is thin: it builds the :class:`~numpyro_ebm.targets.Target` (or takes one,
:func:`~numpyro_ebm.targets.build_target`), asks the :class:`~numpyro_ebm.samplers.Sampler`
whether it accepts it, and runs the sampler: as a whole, or chain by chain,
``vmap``-ed over chains and scanned over draws, in compiled chunks
(:mod:`numpyro_ebm._chain_run`). The programs of a run are cached by (sampler, target content,
shapes, warmup length, thinning, devices, statistics kept), so a repeated call compiles nothing
new (:mod:`numpyro_ebm._programs`; :func:`clear_cache` empties the cache). A target's content
is what its energy or model computes, traced afresh on every call (:mod:`numpyro_ebm._cache`),
so a changed energy is never served another's program. The final state is kept with the draws
for ``resume=`` (:mod:`numpyro_ebm._resume`); ``until=`` checks the chains' mixing between
blocks of draws (:mod:`numpyro_ebm._mixing`). The run is then checked for health
(:mod:`numpyro_ebm._health`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from numpyro_ebm import _arviz, _cache, _health, _host_random
from numpyro_ebm import sharding as _sharding
from numpyro_ebm._chain_run import run_chains
from numpyro_ebm._checks import check_int, check_key, check_positive
from numpyro_ebm._resume import STATE_GROUP
from numpyro_ebm.samplers import Sampler, get_sampler
from numpyro_ebm.samplers.base import HEALTH_KINDS
from numpyro_ebm.targets import MODEL_KINDS, TargetOptions, build_target, energies_like_starts

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

    With ``superchains=K`` (many short chains started in :math:`K` consecutive equal groups,
    one point per group), convergence asks for nested :math:`\hat R` (Margossian et al. 2024,
    :func:`~numpyro_ebm.diagnostics.nested_rhat`) below ``nested_rhat`` (default: the paper's
    threshold for the chains per superchain, :func:`~numpyro_ebm.diagnostics.nested_rhat_threshold`)
    in place of ``rhat``, with the ESS rule unchanged; ``until_nested_rhat`` is recorded too.

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
    superchains: int | None = None
    nested_rhat: float | None = None

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
        if self.superchains is not None:
            check_int("until.superchains", self.superchains, minimum=2)
        elif self.nested_rhat is not None:
            raise ValueError("until.nested_rhat needs until.superchains (the chains' groups)")
        if self.nested_rhat is not None and not self.nested_rhat > 1:
            raise ValueError(f"until.nested_rhat must be above 1, got {self.nested_rhat!r}")


#: Bytes of kept draws (positions and statistics, all chains) that one compiled chunk of draws
#: holds on the device before they are copied to the host; bounds the device memory of a run
#: whatever ``num_samples``. Chunking does not change the draws.
CHUNK_BYTES = 64 * 2**20


def clear_cache() -> None:
    """Forget the compiled programs of earlier :func:`sample` calls (see
    :mod:`numpyro_ebm._cache`)."""
    _cache.clear()


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
        key = check_key(key)
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
    init_key, run_key = _host_random.split(key, 2)
    options = TargetOptions(
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
    target = build_target(target, sampler, options)
    sampler.check(target)
    num_chains = target.num_chains
    if until is not None and num_chains < 2:
        raise ValueError(f"until= compares chains: num_chains must be >= 2, got {num_chains}")
    if until is not None and until.superchains is not None and num_chains % until.superchains:
        raise ValueError(
            f"until.superchains={until.superchains} must divide the {num_chains} chains into "
            "equal consecutive groups"
        )
    if mesh is not None:
        shards = _sharding.axis_size(mesh, "chains")
        if num_chains % shards:
            raise ValueError(
                f"num_chains={num_chains} must be a multiple of the {shards} devices of the "
                f"'chains' axis (devices={devices!r})"
            )

    groups = {}
    if sampler.is_runner:
        _arviz.prefetch()  # the data are built after the run: import ArviZ meanwhile
        draws, stats, attrs = sampler.run(
            run_key,
            target,
            num_warmup=num_warmup,
            num_samples=num_samples,
            progress=progress,
        )
        if target.postprocess_fn is not None:
            draws = jax.jit(jax.vmap(jax.vmap(target.postprocess_fn)))(draws)
    else:
        draws, stats, attrs, groups[STATE_GROUP] = run_chains(
            sampler,
            target,
            run_key,
            num_warmup=num_warmup,
            num_samples=num_samples,
            thinning=thinning,
            progress=progress,
            until=until,
            mesh=mesh,
            keep_stats=keep_stats,
            resume=resume,
            chunk_bytes=CHUNK_BYTES,
        )

    posterior = draws if target.kind in MODEL_KINDS else _named(target.var_name, draws)
    bad = np.asarray(stats["nonfinite"]).any(axis=1)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {num_chains} chain(s) reached a non-finite position or "
            f"density (chains {np.flatnonzero(bad).tolist()}); see sample_stats.nonfinite and "
            "do not use their draws",
            RuntimeWarning,
            stacklevel=2,
        )
    failed = np.asarray(stats.get("auxiliary_failed", False))
    if failed.any():
        warnings.warn(
            f"{int(failed.sum())} of {failed.size} exchange proposals were rejected because "
            "their exact auxiliary draw (coupling from the past) did not coalesce: the chains "
            "reach parameters where exact draws are too slow (an Ising model near or below its "
            "critical temperature), and rejecting them weights the posterior away from there; see "
            "sample_stats.auxiliary_failed, and narrow the prior or use an approximate "
            "auxiliary sampler",
            RuntimeWarning,
            stacklevel=2,
        )
    uncalibrated = np.asarray(stats.get("calibration_failed", False)).any(axis=-1)
    if uncalibrated.any():
        warnings.warn(
            f"the pseudo-likelihood calibration failed in {int(uncalibrated.sum())} of "
            f"{num_chains} chain(s) (chains {np.flatnonzero(uncalibrated).tolist()}): no proper "
            "pseudo-posterior mode, a curvature estimate that is not positive definite, or an "
            "exact auxiliary draw that did not coalesce; their draws are the uncalibrated "
            "pseudo-posterior's, too narrow: see sample_stats.calibration_failed, and give more "
            "num_calibration_draws, a proper prior, or the exchange algorithm",
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
    if target.kind not in HEALTH_KINDS or sampler.refine is not None:
        return []
    found = _health.chain_findings(posterior, stats, _health.initial_step_size(sampler))
    kept = np.flatnonzero(~np.asarray(stats["nonfinite"]).any(axis=1))
    if target.kind != "energy" or not kept.size:
        return found
    count, total = _health.probe(
        draws,
        kept,
        _host_random.generator(key, 1),
        functools.partial(energies_like_starts, target),
        target.initial_position,
    )
    return found + ([_health.nonfinite_finding(count, total)] if count else [])


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
