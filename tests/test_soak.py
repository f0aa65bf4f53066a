"""Soak test: a PCD training run killed with SIGKILL at random moments, ten times, and resumed
each time, ends bitwise equal to the uninterrupted run (parameters, optimizer state, replay
buffer, history with its mixing statistics)."""

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
KILLS = 10

CHILD = textwrap.dedent(
    """
    import sys
    import jax, numpy as np, optax
    from flax import nnx
    from numpyro_ebm.nets import MLPEnergy, as_pure
    from numpyro_ebm.training import fit, objectives

    directory, out = sys.argv[1], sys.argv[2]
    apply, params = as_pure(MLPEnergy((2,), hidden=(16,), rngs=nnx.Rngs(0)))
    data = jax.random.normal(jax.random.key(1), (500, 2))

    def report(step, params, history):
        print(step, flush=True)

    result = fit(
        objectives.pcd(apply, k=5, step_size=1e-2, capacity=256), params, data,
        key=jax.random.key(0), optimizer=optax.adam(1e-2), num_steps=800, batch_size=32,
        steps_per_chunk=10, checkpoint_dir=directory, checkpoint_every=10, resume=True,
        progress=False, monitor_mixing=True, mixing_rhat_threshold=float("inf"),
        callbacks=[report],
    )
    leaves = jax.tree.leaves((result.params, result.opt_state, result.loss_state))
    arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays.update({f"history_{k}": v for k, v in result.history.items()})
    np.savez(out, **arrays)
    """
)


def _start(directory: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one device, as a user's run
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _end(process: subprocess.Popen, timeout: float | None = None) -> int:
    """Wait for the child and close its pipe; its exit status."""
    try:
        return process.wait(timeout=timeout)
    finally:
        process.stdout.close()


def _first_chunk(process: subprocess.Popen, timeout: float) -> bool:
    """Wait until the child reports its first chunk of this start (``False``: it ended)."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return bool(ready) and bool(process.stdout.readline())


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        return dict(arrays)


@pytest.mark.slow
def test_a_pcd_run_killed_ten_times_ends_bitwise_equal_to_the_uninterrupted_run(tmp_path):
    reference = _start(tmp_path / "reference", tmp_path / "reference.npz")
    assert _end(reference, timeout=600) == 0
    rng = np.random.default_rng(20261201)
    kills = 0
    while kills < KILLS:
        process = _start(tmp_path / "killed", tmp_path / "killed.npz")
        if not _first_chunk(process, timeout=300):
            _end(process)
            break  # the run was already complete
        time.sleep(rng.uniform(0.0, 1.5))  # a random moment: in a chunk or in a checkpoint
        if process.poll() is not None:
            _end(process)
            break
        process.send_signal(signal.SIGKILL)
        _end(process)
        kills += 1
    assert kills == KILLS, "the run ended before ten kills: make it longer"
    final = _start(tmp_path / "killed", tmp_path / "killed.npz")
    assert _end(final, timeout=600) == 0
    expected, got = _load(tmp_path / "reference.npz"), _load(tmp_path / "killed.npz")
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
