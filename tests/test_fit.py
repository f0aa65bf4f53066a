"""The training loop: determinism, kill-and-resume, non-finite losses, history, input checks."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from numpyro_ebm.nets import MLPEnergy, as_pure
from numpyro_ebm.training import objectives
from numpyro_ebm.training.fit import fit

DATA = jax.random.normal(jax.random.key(1), (200, 2))


class Killed(Exception):
    """Stands for the process dying between two chunks."""


def _pcd_run(checkpoint_dir, **kwargs):
    apply, params = as_pure(MLPEnergy((2,), hidden=(16,), rngs=nnx.Rngs(0)))
    options = dict(
        key=jax.random.key(0),
        optimizer=optax.adam(1e-2),
        num_steps=40,
        batch_size=32,
        steps_per_chunk=10,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=20,
        progress=False,
    )
    options.update(kwargs)
    return fit(objectives.pcd(apply, k=3, step_size=1e-2, capacity=100), params, DATA, **options)


def _assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_kill_and_resume_is_bitwise_identical(tmp_path):
    full = _pcd_run(tmp_path / "full")

    def kill_at_30(step, params, history):
        if step == 30:
            raise Killed

    with pytest.raises(Killed):
        _pcd_run(tmp_path / "killed", callbacks=[kill_at_30])
    # The run died after step 30; its last checkpoint is step 20. A different key on resume
    # is ignored: the checkpoint's key is the run's key.
    resumed = _pcd_run(tmp_path / "killed", resume=True, key=jax.random.key(99))
    _assert_trees_equal(resumed.params, full.params)
    _assert_trees_equal(resumed.opt_state, full.opt_state)
    _assert_trees_equal(resumed.loss_state, full.loss_state)
    np.testing.assert_array_equal(resumed.history["step"], [10, 20, 30, 40])
    for name in full.history:
        np.testing.assert_array_equal(resumed.history[name], full.history[name])


def test_monitor_mixing_reports_rhat_and_ess_of_the_buffer():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _pcd_run(None, checkpoint_every=None, steps_per_chunk=5, monitor_mixing=True)
    rhat, ess = result.history["buffer_rhat"], result.history["buffer_ess_bulk"]
    assert rhat.shape == ess.shape == (8,)
    assert np.all(np.isnan(rhat[:7])) and np.all(np.isfinite(rhat[7:]))
    # R-hat is a ratio of variances, >= ~1; a 40-step run has not mixed yet.
    # The bulk ESS is positive (it may exceed the draw count for anticorrelated draws).
    assert np.all(rhat[7:] > 0.9) and np.all(ess[7:] > 0)
    mixing_warnings = [w for w in caught if "do not mix" in str(w.message)]
    assert len(mixing_warnings) == int(rhat[-1] > 1.1)


def test_chunking_does_not_change_the_result():
    def run(steps_per_chunk):
        apply, params = as_pure(MLPEnergy((2,), hidden=(16,), rngs=nnx.Rngs(0)))
        return fit(
            objectives.dsm(apply, 0.3),
            params,
            DATA,
            key=jax.random.key(0),
            optimizer=optax.adam(1e-2),
            num_steps=30,
            batch_size=32,
            steps_per_chunk=steps_per_chunk,
            progress=False,
        )

    _assert_trees_equal(run(30).params, run(7).params)


def _climb_loss(params, batch, key):
    """Loss -w: SGD at rate 1 makes w = t at step t; the loss turns NaN from w = 25 on."""
    w = params["w"]
    return -w + jnp.where(w >= 25.0, jnp.nan, 0.0), {"w": w}


_climb = objectives.from_loss(_climb_loss, "climb")


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    options = dict(
        key=jax.random.key(0),
        optimizer=optax.sgd(1.0),
        batch_size=2,
        steps_per_chunk=5,
        checkpoint_dir=tmp_path,
        checkpoint_every=10,
        progress=False,
    )
    params = {"w": jnp.zeros(())}
    with pytest.raises(FloatingPointError, match=r"at step 25.*last good checkpoint: step 20"):
        fit(_climb, params, DATA, num_steps=40, **options)
    restored = fit(_climb, params, DATA, num_steps=20, resume=True, **options)
    assert float(restored.params["w"]) == 20.0
    np.testing.assert_array_equal(restored.history["step"], [5, 10, 15, 20])


def test_an_update_that_overflows_stops_the_run_though_loss_and_gradient_are_finite():
    # loss w * mean(batch) with batch entries 1e30: a finite loss and gradient, but one SGD
    # step at rate 1e10 sends w to -inf, which was returned (or checkpointed) without a word
    overflow = objectives.from_loss(lambda p, batch, key: (p["w"] * jnp.mean(batch), {}))
    data = np.full((8, 1), 1e30, np.float32)
    with pytest.raises(FloatingPointError, match="update at step 0"):
        fit(
            overflow, {"w": jnp.zeros(())}, data, key=jax.random.key(0),
            optimizer=optax.sgd(1e10), num_steps=1, batch_size=4, progress=False,
        )  # fmt: skip


def test_history_and_callbacks():
    seen = []
    result = fit(
        _climb,
        {"w": jnp.zeros(())},
        DATA,
        key=jax.random.key(0),
        optimizer=optax.sgd(1.0),
        num_steps=12,
        batch_size=2,
        steps_per_chunk=5,
        progress=False,
        callbacks=[lambda step, params, history: seen.append((step, float(params["w"])))],
    )
    assert seen == [(5, 5.0), (10, 10.0), (12, 12.0)]
    np.testing.assert_array_equal(result.history["step"], [5, 10, 12])
    # Chunk means of w over steps 0-4, 5-9, 10-11.
    np.testing.assert_allclose(result.history["w"], [2.0, 7.0, 10.5])
    np.testing.assert_allclose(result.history["loss"], [-2.0, -7.0, -10.5])


def _fit(**overrides):
    options = dict(
        objective=_climb,
        params={"w": jnp.zeros(())},
        data=DATA,
        key=jax.random.key(0),
        optimizer=optax.sgd(1.0),
        num_steps=10,
        batch_size=2,
        progress=False,
    )
    options.update(overrides)
    return fit(**options)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (dict(data=DATA.at[3, 1].set(jnp.nan)), ValueError, r"data holds 1 non-finite.*\(3, 1\)"),
        (dict(data=DATA.at[0, 0].set(jnp.inf)), ValueError, "data holds 1 non-finite"),
        (dict(data=jnp.zeros((0, 2))), ValueError, r"n >= 1, got \(0, 2\)"),
        (dict(batch_size=201), ValueError, r"batch_size \(201\) must not exceed .* \(200\)"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (dict(num_steps=0), ValueError, "num_steps must be an integer >= 1"),
        (dict(num_steps=1.5), TypeError, "num_steps must be an integer"),
        (dict(steps_per_chunk=10, checkpoint_every=15), ValueError, "multiple of steps_per_chunk"),
        (dict(resume=True), ValueError, "resume=True needs a checkpoint_dir"),
        (dict(optimizer=lambda g: g), TypeError, "optax.GradientTransformation"),
        (dict(key=3), TypeError, "key must be a jax.random.key"),
        (dict(monitor_mixing=True), ValueError, "monitor_mixing=True needs an objective whose"),
        (dict(objective=_climb_loss), TypeError, r"objective must be .*from_loss\(loss\)"),
    ],
)
def test_bad_inputs_raise_before_compiling(overrides, error, message):
    with pytest.raises(error, match=message):
        _fit(**overrides)


def test_existing_checkpoints_need_resume(tmp_path):
    _fit(checkpoint_dir=tmp_path, steps_per_chunk=5)
    with pytest.raises(ValueError, match=r"already holds a checkpoint \(step 10\).*resume=True"):
        _fit(checkpoint_dir=tmp_path, steps_per_chunk=5)
