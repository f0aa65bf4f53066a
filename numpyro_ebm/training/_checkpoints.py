"""Checkpoints of :func:`~numpyro_ebm.training.fit`: Orbax steps that survive damage and
refuse a resume that does not match.

Each step holds three items: ``state`` (the leaves of the training state, as a list of arrays,
so that any pytree round-trips exactly), ``history`` (JSON) and ``meta`` (JSON: the run's
fingerprint and a SHA-256 digest of the state's bytes), with ``sha256.json`` beside them
(a digest of each file of ``state``). Orbax writes a step into a temporary
directory and renames it when complete, so a killed run leaves whole steps only; a step
damaged later (a truncated or edited file, a missing item, an empty folder) is found when it
is read, named in a warning, moved aside to ``<step>.damaged`` and the next older one is
used. The fingerprint (parameter and optimizer-state tree shapes, the objective's name and
options, the data's event shape) is compared before anything is written: a resume with
another architecture, objective or data width is refused with the difference named.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

__all__ = []


def tree_fingerprint(tree) -> list[list]:
    """``[path, shape, dtype]`` of every leaf of ``tree`` (JSON values)."""
    return [
        [jax.tree_util.keystr(path), list(np.shape(leaf)), str(jnp.result_type(leaf))]
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _json(value):
    """``value`` as it reads back from JSON (tuples become lists...), for comparisons."""
    return json.loads(json.dumps(value, default=repr))


def _digest(leaves) -> str:
    digest = hashlib.sha256()
    for leaf in leaves:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# Per-file SHA-256 digests of a step's ``state`` item, written next to it once it is whole.
_FILES = "sha256.json"


def _file_digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _addressable(leaf) -> bool:
    return getattr(leaf, "is_fully_addressable", True)


def _difference(name: str, saved, now) -> str:
    """One sentence naming how ``saved`` and ``now`` (entry ``name`` of the fingerprint)
    differ."""
    if name in ("params", "opt_state", "state"):
        saved_map = {path: (shape, dtype) for path, shape, dtype in saved}
        now_map = {path: (shape, dtype) for path, shape, dtype in now}
        changed = [
            f"{path or '<root>'}: {saved_map.get(path, 'absent')} -> {now_map.get(path, 'absent')}"
            for path in list(saved_map) + [p for p in now_map if p not in saved_map]
            if saved_map.get(path) != now_map.get(path)
        ]
        shown = "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "")
        return f"{name} tree (path: checkpoint (shape, dtype) -> this run's): {shown}"
    return f"{name}: checkpoint {saved!r}, this run {now!r}"


class Checkpoints:
    """Orbax ``CheckpointManager`` over the training state, tolerant of damaged steps."""

    def __init__(self, directory, max_to_keep: int, fingerprint: dict):
        self.directory = Path(os.path.abspath(directory))
        self.fingerprint = _json(fingerprint)
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=1,
            max_to_keep=max_to_keep,
            enable_async_checkpointing=False,
        )
        # Orbax logs every unreadable step at ERROR level; fit warns about each instead.
        logging.getLogger("absl").setLevel(logging.CRITICAL)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """The step folders present (whole or damaged), newest first."""
        names = (p.name for p in self.directory.iterdir()) if self.directory.is_dir() else ()
        return sorted((int(name) for name in names if name.isdigit()), reverse=True)

    def save(self, step: int, state, history: dict[str, list[float]]) -> None:
        leaves = jax.tree.leaves(state)
        # Sharded arrays are written by Orbax shard by shard (each process its own).
        leaves = [
            x
            if isinstance(getattr(x, "sharding", None), jax.sharding.NamedSharding)
            else np.asarray(x)
            for x in leaves
        ]
        meta = {"fingerprint": self.fingerprint}
        if all(_addressable(x) for x in leaves):
            meta["sha256"] = _digest(leaves)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(leaves),
                history=ocp.args.JsonSave(history),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        # Damaged array files are then found before Orbax reads them (a failed read leaves
        # tensorstore callbacks posting to a closed event loop: "Event loop is closed").
        if jax.process_index() == 0:
            step_dir = self.directory / str(step)
            digests = json.dumps(_file_digests(step_dir / "state"))
            (step_dir / f"{_FILES}.tmp").write_text(digests)
            os.replace(step_dir / f"{_FILES}.tmp", step_dir / _FILES)

    def _read(self, step: int, like, shardings):
        """The state, history and metadata of ``step``; raises whatever damage causes."""
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = meta["meta"]
        if not isinstance(meta, dict) or "fingerprint" not in meta:
            raise ValueError(f"its metadata is not a checkpoint's: {meta!r:.80}")
        self.check(meta["fingerprint"], step)
        files = self.directory / str(step) / _FILES
        if files.is_file():  # absent when the run died between the save and this record
            wanted = json.loads(files.read_text())
            found = _file_digests(self.directory / str(step) / "state")
            bad = sorted(
                name for name in wanted.keys() | found.keys() if wanted.get(name) != found.get(name)
            )
            if bad:
                raise ValueError(f"files of its arrays are missing or changed: {bad[:3]}")
        leaves, treedef = jax.tree.flatten(like)
        placed = [None] * len(leaves) if shardings is None else treedef.flatten_up_to(shardings)
        abstract = [
            jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x), sharding=sharding)
            for x, sharding in zip(leaves, placed, strict=True)
        ]
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()
            ),
        )
        values = list(restored["state"])
        if "sha256" in meta and _digest(values) != meta["sha256"]:
            raise ValueError("its arrays do not match their SHA-256 digest")
        history = restored["history"]
        if not isinstance(history, dict):
            raise ValueError(f"its history is not a dict: {history!r:.80}")
        if shardings is None:
            values = [jnp.asarray(x) for x in values]
        state = jax.tree.unflatten(treedef, values)
        return state, {name: list(column) for name, column in history.items()}

    def check(self, saved: dict, step: int) -> None:
        """Refuse a checkpoint whose fingerprint differs from this run's."""
        if saved == self.fingerprint:
            return
        names = sorted(set(saved) | set(self.fingerprint))
        differences = [
            _difference(name, saved.get(name), self.fingerprint.get(name))
            for name in names
            if saved.get(name) != self.fingerprint.get(name)
        ]
        raise _Mismatch(
            f"cannot resume from the checkpoint at step {step} in {str(self.directory)!r}: it was "
            "written by another run (architecture, objective or data); "
            + "; ".join(differences)
            + ". Use another checkpoint_dir for a different run"
        )

    def restore_latest(self, like, shardings=None, max_step: int | None = None):
        """``(step, state, history)`` of the newest readable step (``None`` if there is none).

        Damaged steps are named in a ``RuntimeWarning`` and moved aside to ``<step>.damaged``
        (only once a readable step matching this run has been found, or none at all)."""
        damaged = []
        found = None
        for step in self.steps():
            if max_step is not None and step > max_step:
                raise ValueError(
                    f"the latest checkpoint (step {step}) is beyond num_steps ({max_step})"
                )
            try:
                found = (step, *self._read(step, like, shardings))
                break
            except _Mismatch:
                raise
            except Exception as err:  # any damage: try the next older step
                damaged.append(step)
                warnings.warn(
                    f"checkpoint step {step} in {str(self.directory)!r} is damaged "
                    f"({type(err).__name__}: {str(err)[:200]}); it is moved to "
                    f"'{step}.damaged' and the run resumes from an older step",
                    RuntimeWarning,
                    stacklevel=3,
                )
        for step in damaged:
            target = self.directory / f"{step}.damaged"
            while target.exists():
                target = target.with_name(target.name + "_")
            os.replace(self.directory / str(step), target)
        if damaged:
            self.manager.reload()
        return found

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class _Mismatch(ValueError):
    """A checkpoint from another run: refused, never skipped."""
