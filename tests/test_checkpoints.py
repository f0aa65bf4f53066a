"""Checkpoints of ``fit`` that survive damage, refuse another run's resume, and keep PCD's
mixing trace: each damaged step is named and skipped, and the resumed run still ends bitwise
equal to the uninterrupted one."""

import functools
import os
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from numpyro_ebm.nets import MLPEnergy, as_pure
from numpyro_ebm.training import from_loss, objectives
from numpyro_ebm.training.fit import fit

DATA = jax.random.normal(jax.random.key(1), (200, 2))


class Killed(Exception):
    """Stands for the process dying between two chunks."""


def _squares(params, batch, key):
    noise = 0.1 * jax.random.normal(key, params["w"].shape)
    return jnp.mean((batch - params["w"] - noise) ** 2), {}


SQUARES = from_loss(_squares, "squares", scale=0.1)


def _run(directory, num_steps=20, objective=SQUARES, params=None, data=DATA, **kwargs):
    options = dict(
        key=jax.random.key(0),
        optimizer=optax.adam(0.05),
        num_steps=num_steps,
        batch_size=16,
        steps_per_chunk=5,
        checkpoint_dir=directory,
        checkpoint_every=10,
        progress=False,
    )
    options.update(kwargs)
    params = {"w": jnp.zeros(2)} if params is None else params
    return fit(objective, params, data, **options)


@functools.cache
def _full_run():
    """The uninterrupted 30-step run (no checkpoints: they change nothing)."""
    return _run(None, num_steps=30)


def _assert_same_run(a, b):
    for x, y in zip(jax.tree.leaves(a[:3]), jax.tree.leaves(b[:3]), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.history.keys() == b.history.keys()
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name])


def _garbage_metadata(step):
    (step / "meta" / "metadata").write_text("{not json")


def _no_state(step):
    shutil.rmtree(step / "state")


def _empty(step):
    shutil.rmtree(step)
    step.mkdir()


def _damaged_arrays(step):
    files = [p for p in (step / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for path in files:
        raw = bytearray(path.read_bytes())
        for i in range(len(raw) // 2, len(raw)):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_garbage_metadata, _no_state, _empty, _damaged_arrays])
def test_a_damaged_step_is_named_and_the_run_resumes_from_the_last_good_one(tmp_path, damage):
    full = _full_run()
    _run(tmp_path / "run")  # checkpoints at steps 10 and 20
    damage(tmp_path / "run" / "20")
    with pytest.warns(RuntimeWarning, match=r"checkpoint step 20 .* is damaged"):
        resumed = _run(tmp_path / "run", num_steps=30, resume=True)
    _assert_same_run(resumed, full)
    assert (tmp_path / "run" / "20.damaged").is_dir()
    # the run went on from step 10 and wrote its own step 20 and 30
    assert {"20", "30"} <= set(os.listdir(tmp_path / "run"))


def test_garbage_in_orbax_bookkeeping_loses_nothing(tmp_path):
    # Orbax's own _CHECKPOINT_METADATA (timestamps) is not needed to read a step: the run
    # resumes from step 20 itself, silently.
    _run(tmp_path)
    (tmp_path / "20" / "_CHECKPOINT_METADATA").write_text("\x00garbage{")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = _run(tmp_path, num_steps=30, resume=True)
    _assert_same_run(resumed, _full_run())
    assert not any(name.endswith(".damaged") for name in os.listdir(tmp_path))


def _listing(directory):
    return sorted(
        (str(p.relative_to(directory)), p.stat().st_mtime_ns, p.stat().st_size)
        for p in directory.rglob("*")
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (dict(params={"w": jnp.zeros(3)}, data=jnp.zeros((200, 3))), r"params tree .*\['w'\]"),
        (dict(params={"w": jnp.zeros(2), "b": jnp.zeros(())}), r"params tree .*\['b'\]"),
        (dict(objective=from_loss(_squares, "squares", scale=0.2)), r"objective: .*scale"),
        (dict(objective=from_loss(_squares, "other")), r"objective: .*'other'"),
        (dict(data=DATA[:, :1], params={"w": jnp.zeros(1)}), r"data: .*event_shape"),
        (dict(data=DATA.astype(jnp.float16)), r"data: .*float16"),
    ],
)
def test_a_resume_with_another_run_is_refused_before_anything_is_written(tmp_path, change, named):
    _run(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(ValueError, match=r"cannot resume from the checkpoint at step 20.*" + named):
        _run(tmp_path, num_steps=30, resume=True, **change)
    assert _listing(tmp_path) == before


def _pcd(directory, **kwargs):
    apply, params = as_pure(MLPEnergy((2,), hidden=(8,), rngs=nnx.Rngs(0)))
    # Chains that barely move (tiny steps, never reinitialized) cannot mix.
    objective = objectives.pcd(apply, k=1, step_size=1e-6, reinit_fraction=0.0, capacity=64)
    return _run(directory, 60, objective, params, monitor_mixing=True, **kwargs)


@pytest.mark.slow
def test_a_resumed_pcd_run_keeps_the_mixing_trace_and_its_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="do not mix"):
        full = _pcd(tmp_path / "full")

    def kill_at_45(step, params, history):
        if step == 45:
            raise Killed

    with pytest.raises(Killed), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _pcd(tmp_path / "run", callbacks=[kill_at_45])
    # resumed at step 40 with 4 chunks to go: the trace of the 8 before comes back with it
    with pytest.warns(RuntimeWarning, match="do not mix"):
        resumed = _pcd(tmp_path / "run", resume=True)
    _assert_same_run(resumed, full)
    assert np.isfinite(full.history["buffer_rhat"][-4:]).all()
