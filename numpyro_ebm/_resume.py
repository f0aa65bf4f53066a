"""The final state of a Markov-chain run, kept with its draws for ``sample(..., resume=...)``.

A run's ``sampler_state`` group holds the leaves of its final (state, parameters), the key of
its draws, the index of its next draw, the sampler's repr and a record of its target (what the
energy or model computes, temperature, support, the shape of one configuration). A run is
continued only with the sampler and target that made it: another is refused, naming what
differs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm import _arviz
from numpyro_ebm import sharding as _sharding
from numpyro_ebm.samplers import Sampler
from numpyro_ebm.targets import Target, event_shapes

__all__ = ["STATE_GROUP", "resume_from", "state_record"]

STATE_GROUP = "sampler_state"


def state_record(
    state, parameters, sample_key, next_draw: int, sampler: Sampler, target: Target
) -> dict:
    """The ``sampler_state`` group of a run (``arrays`` and ``attrs``) that ended in
    ``(state, parameters)`` before its draw ``next_draw``."""
    leaves = jax.tree.leaves((state, parameters))
    # gathered from every process when the chains span several (a multi-host run)
    arrays = {f"leaf_{i:03d}": _sharding.to_host(leaf) for i, leaf in enumerate(leaves)}
    attrs = {
        "sampler": repr(sampler),
        "next_draw": int(next_draw),
        "sample_key": np.asarray(jax.random.key_data(sample_key)).tolist(),
        "sample_key_impl": str(jax.random.key_impl(sample_key)),
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


def resume_from(previous, sampler: Sampler, target: Target, state_treedef):
    """``(state, parameters, sample_key, next_draw)`` of a finished run, checked against the
    run it is to continue (sampler, target, the structure ``state_treedef`` of its (state,
    parameters), chains)."""
    try:
        stored = _arviz.group(previous, STATE_GROUP)
    except (KeyError, TypeError) as error:
        raise ValueError(
            "resume= must be the result of an earlier sample() call of a Markov-chain sampler "
            f"(with its {STATE_GROUP!r} group): {error}"
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
    if len(leaves) != state_treedef.num_leaves:
        raise ValueError("resume= holds the state of another target: its structure differs")
    state = jax.tree.unflatten(state_treedef, leaves)
    if leaves and leaves[0].shape[0] != num_chains:
        raise ValueError(f"resume= holds {leaves[0].shape[0]} chains, but num_chains={num_chains}")
    key_data = np.asarray(attrs["sample_key"], np.uint32)
    # records written before the key's implementation was kept hold Threefry keys
    impl = attrs.get("sample_key_impl", "threefry2x32")
    sample_key = jax.random.wrap_key_data(key_data, impl=impl)
    return (*state, sample_key, int(attrs["next_draw"]))
