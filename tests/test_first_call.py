"""What a process's first ``sample()`` does before its two programs: the chains' starts and the
run's keys drawn on the host (no eager device program), the warm-up and a draw traced once,
ArviZ imported while the chains run, the post-run probe evaluated by the program of the start
check. Statistics of the host draws
against their closed forms, within 4 standard errors."""

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_ebm as ne
from numpyro_ebm import _arviz, _health, _host_random
from numpyro_ebm.targets import energy_target


def test_host_splits_are_reproducible_distinct_typed_keys():
    key = jax.random.key(7)
    a, b, c = _host_random.split(key, 3)
    again = _host_random.split(key, 3)
    data = [tuple(np.asarray(jax.random.key_data(k))) for k in (a, b, c)]
    assert data == [tuple(np.asarray(jax.random.key_data(k))) for k in again]
    assert len(set(data)) == 3 and tuple(np.asarray(jax.random.key_data(key))) not in data
    assert jax.random.key_impl(a) == jax.random.key_impl(key)
    assert jax.random.normal(a, (2,)).shape == (2,)  # a usable key


def test_starts_are_normal_with_the_init_scale_and_a_function_of_the_key():
    """4000 chains x 3 coordinates of N(0, 2^2): mean within 4 se (2/sqrt(n)), variance within
    4 se (4 sqrt(2/n))."""
    energy = lambda x: 0.5 * jnp.sum(x**2)
    make = lambda seed: (
        energy_target(
            energy, key=jax.random.key(seed), event_shape=(3,), num_chains=4000, init_scale=2.0
        ).initial_position
    )
    starts = np.asarray(make(0), np.float64).ravel()
    n = starts.size
    assert make(0).dtype == jnp.result_type(float)
    assert abs(starts.mean()) < 4 * 2.0 / math.sqrt(n)
    assert abs(starts.var() - 4.0) < 4 * 4.0 * math.sqrt(2.0 / n)
    np.testing.assert_array_equal(make(0), make(0))
    assert not np.array_equal(make(0), make(1))


def test_spin_starts_are_fair_coins():
    starts = energy_target(
        lambda s: -jnp.sum(s),
        key=jax.random.key(2),
        event_shape=(50,),
        num_chains=200,
        support="pm1",
    ).initial_position
    values = np.asarray(starts).ravel()
    assert set(np.unique(values)) == {-1.0, 1.0}
    assert abs((values > 0).mean() - 0.5) < 4 * 0.5 / math.sqrt(values.size)


def test_the_probe_counts_a_nan_region_by_batches_shaped_like_the_starts():
    """An energy NaN where x0 > 0 around draws spread as N(0, 1): a moved point lands there
    with probability 1/2; the count is checked against Binomial(total, 1/2) within 4 sd, with
    batches of 3 chains' shape (the program's)."""
    rng = np.random.default_rng(0)
    draws = rng.standard_normal((3, 500, 2)).astype(np.float32)
    like = jnp.zeros((3, 2))
    shapes = []

    def energies(points):
        shapes.append(points.shape)
        return np.where(points[:, 0] > 0, np.nan, 0.0)

    count, total = _health.probe(draws, np.arange(3), np.random.default_rng(1), energies, like)
    assert total == 3 * math.ceil(_health.PROBE_POINTS / 3) and set(shapes) == {(3, 2)}
    assert abs(count - total / 2) < 4 * math.sqrt(total / 4)


def test_a_first_sample_compiles_its_check_warmup_and_draws_only(caplog):
    """No eager random program (starts, key splits) and no probe program: after the caches are
    cleared, the device programs of a sample() of a new energy are the start check, the warm-up
    and draws as one program (one chunk holds the 20 draws) and scalar conversions."""
    jax.clear_caches()
    ne.clear_cache()
    energy = lambda x: 0.5 * jnp.sum((x - 0.25) ** 2)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        ne.sample(
            energy,
            "mala",
            key=jax.random.key(0),
            event_shape=(2,),
            num_chains=4,
            num_warmup=20,
            num_samples=20,
        )
    names = {
        record.getMessage().split("jit(")[1].split(")")[0]
        for record in caplog.records
        if record.getMessage().startswith("Finished XLA compilation of jit(")
    }
    assert "warmup_and_chunk" in names  # one chunk holds these 20 draws
    assert not {n for n in names if any(w in n for w in ("normal", "split", "probe", "bernoulli"))}


@pytest.mark.parametrize(
    "case, num_samples",
    [("one chunk", 20), ("three chunks", 2500), ("two devices", 20), ("rbg key", 20)],
)
def test_warmup_and_a_draw_are_traced_once_per_run(case, num_samples):
    """The traces of the sampler's warm-up and of one draw that give the output shapes are
    the ones the programs reuse: a new energy is traced 6 times by its first run (its cache key
    and purity check, the start check, MALA's init and move in the warm-up, a draw), in one
    chunk or three, split over two devices or with another key type; and once (its cache key)
    by a repeated run and by a run continued with resume=."""
    traces = []
    offset = float(len(case) + num_samples)  # a new target content: nothing cached

    def energy(x):
        traces.append(1)
        return 0.5 * jnp.sum((x - offset) ** 2)

    impl = "rbg" if case == "rbg key" else None
    devices = jax.devices()[:2] if case == "two devices" else None
    runs = dict(event_shape=(2,), num_warmup=10, num_samples=num_samples)

    def run(seed):
        return ne.sample(
            energy,
            "mala",
            key=jax.random.key(seed, impl=impl),
            num_chains=4,
            devices=devices,
            **runs,
        )

    first = run(0)
    assert len(traces) == 6
    run(1)
    assert len(traces) == 7
    if devices is None:
        ne.sample(energy, "mala", resume=first, **runs)
        assert len(traces) == 8


def test_prefetch_then_data_and_the_lazy_name():
    _arviz.prefetch()
    data = _arviz.from_dict({"posterior": {"x": np.zeros((2, 5))}}, {"posterior": {"a": 1}})
    assert _arviz.group(data, "posterior").attrs["a"] == 1
    from numpyro_ebm._arviz import az

    assert isinstance(data, az.InferenceData) or type(data).__name__ == "DataTree"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _arviz.nope
