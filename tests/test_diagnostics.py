"""Agreement of ``numpyro_ebm.diagnostics`` with ArviZ 0.23, plus behaviour and jit checks."""

import contextlib
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpyro_ebm import diagnostics
from numpyro_ebm.diagnostics import _ranks

NAMES = ("rhat", "ess_bulk", "ess_tail", "ess_mean", "mcse_mean", "mcse_sd")
REFERENCE = {
    "rhat": lambda a: az.rhat(a, method="rank"),
    "ess_bulk": lambda a: az.ess(a, method="bulk"),
    "ess_tail": lambda a: az.ess(a, method="tail"),
    "ess_mean": lambda a: az.ess(a, method="mean"),
    "mcse_mean": lambda a: az.mcse(a, method="mean"),
    "mcse_sd": lambda a: az.mcse(a, method="sd"),
}
# A few (chain, draw) shapes, odd and even draw counts, so that compiled code is reused.
SHAPES = [(2, 4), (2, 5), (3, 7), (4, 50), (5, 101), (6, 200)]

all_diagnostics = jax.jit(lambda x: {name: getattr(diagnostics, name)(x) for name in NAMES})
# The two ways to the rank statistics: "sorted" (order statistics read off one sort, the
# general ranks), which arrays of at most _ranks._SMALL draws per parameter take, and
# "selected" (the packed-key sort with exact handling of tied keys, and order statistics by
# selection above _ranks._SELECT_CANDIDATES draws), which larger ones take. The agreement
# tests run both paths.
RANK_PATHS = {"sorted": 1 << 62, "selected": 0}


def _set_small(value: int) -> None:
    if _ranks._SMALL != value:
        _ranks._SMALL = value
        jax.clear_caches()  # jit's cache does not see a module constant


@contextlib.contextmanager
def rank_path(path: str):
    """Within: every array takes the rank path ``path``; after, the default again."""
    previous = _ranks._SMALL
    _set_small(RANK_PATHS[path])
    try:
        yield
    finally:
        _set_small(previous)


def reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """ArviZ's value of every diagnostic for each parameter column of a (chain, draw, p) array."""
    with warnings.catch_warnings():
        # ArviZ itself warns (division by zero) on degenerate columns; ours must not.
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            name: np.array([np.asarray(fn(x[..., j])).item() for j in range(x.shape[-1])])
            for name, fn in REFERENCE.items()
        }


def draws(shape: tuple[int, int], seed: int, phi: float, shift: float) -> np.ndarray:
    """Four parameter columns: iid, AR(1), shifted chain means, integer-valued (ties)."""
    rng = np.random.default_rng(seed)
    chains, n = shape
    noise = rng.normal(size=(chains, n, 4))
    ar = np.empty((chains, n))
    ar[:, 0] = noise[:, 0, 1]
    for t in range(1, n):
        ar[:, t] = phi * ar[:, t - 1] + noise[:, t, 1]
    shifted = noise[:, :, 2] + shift * rng.normal(size=(chains, 1))
    ties = np.round(1.5 * noise[:, :, 3] + shift * rng.normal(size=(chains, 1)))
    return np.stack([noise[:, :, 0], ar, shifted, ties], axis=-1)


def assert_agrees(ours: dict, theirs: dict, rtol: float) -> None:
    for name in NAMES:
        np.testing.assert_allclose(np.asarray(ours[name]), theirs[name], rtol=rtol, err_msg=name)


@pytest.mark.parametrize("path", RANK_PATHS)
@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    seed=st.integers(0, 2**32 - 1),
    phi=st.floats(0.0, 0.95),
    shift=st.floats(0.0, 3.0),
)
@pytest.mark.slow
def test_matches_arviz_float64(path, shape, seed, phi, shift):
    x = draws(shape, seed, phi, shift)
    with jax.enable_x64(True), rank_path(path):
        ours = all_diagnostics(jnp.asarray(x))
        assert all(value.dtype == jnp.float64 for value in ours.values())
    assert_agrees(ours, reference(x), rtol=1e-6)


@pytest.mark.parametrize("path", RANK_PATHS)
@pytest.mark.parametrize("shape", [(2, 5), (6, 200)])
def test_matches_arviz_float32(shape, path):
    x = draws(shape, seed=3, phi=0.5, shift=0.5).astype(np.float32)
    with rank_path(path):
        ours = all_diagnostics(jnp.asarray(x))
    assert all(value.dtype == jnp.float32 for value in ours.values())
    assert_agrees(ours, reference(x), rtol=1e-3)


@pytest.mark.parametrize("path", RANK_PATHS)
def test_matches_arviz_float64_with_the_selection(path):
    x = draws((6, 200), seed=11, phi=0.7, shift=1.0)
    with jax.enable_x64(True), rank_path(path):
        ours = all_diagnostics(jnp.asarray(x))
    assert_agrees(ours, reference(x), rtol=1e-6)


@pytest.mark.parametrize("path", RANK_PATHS)
def test_constant_and_nan_parameters_match_arviz(path):
    x = np.random.default_rng(0).normal(size=(4, 50, 4))
    x[..., 1] = 2.5
    x[1, 7, 2] = np.nan
    x[0, 25, 3] = np.nan  # middle draw of an odd-length chain is dropped by splitting: still NaN
    x = x[:, :49]
    with jax.enable_x64(True), rank_path(path):
        ours = {name: np.asarray(value) for name, value in all_diagnostics(x).items()}
    theirs = reference(x)
    assert_agrees(ours, theirs, rtol=1e-6)
    assert np.isnan(ours["rhat"][1]) and ours["ess_bulk"][1] == 4 * 48
    assert all(np.isnan(ours[name][2:]).all() for name in NAMES)
    assert np.isfinite(ours["ess_bulk"][0])


def test_non_mixing_chains_have_large_rhat():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 500)) + np.array([[-3.0], [-3.0], [3.0], [3.0]])
    assert float(diagnostics.rhat(x)) > 1.1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("draws", [100, 3000])
def test_chains_frozen_at_distinct_values_have_huge_rhat_never_nan(draws, dtype):
    # Above 8192 split draws the folded (and, alone, the bulk) R-hat are read off per-chain
    # sums, whose difference returned NaN (float64) or about 200 (float32) for frozen chains.
    x = np.repeat(np.arange(4.0, dtype=dtype)[:, None], draws, axis=1)
    with jax.enable_x64(dtype == np.float64):
        values = [
            float(diagnostics.rhat(x)),
            float(diagnostics.summary(x, stats=("rhat",))["rhat"]),
            float(diagnostics.summary(x, stats=("rhat", "ess_bulk"))["rhat"]),
        ]
    assert all(value > 1e6 for value in values), values


def test_iid_chains_mix_well():
    x = np.random.default_rng(2).normal(size=(4, 1000, 3))
    assert np.all(np.asarray(diagnostics.rhat(x)) < 1.01)
    np.testing.assert_allclose(diagnostics.ess_bulk(x), 4000, rtol=0.15)


@pytest.mark.parametrize("function", [getattr(diagnostics, name) for name in NAMES])
@pytest.mark.parametrize("shape", [(1, 100), (4, 3), (10,), (3, 2, 5)])
def test_bad_shapes_raise(function, shape):
    with pytest.raises(ValueError, match=r"x\.shape=\(" + ", ".join(map(str, shape))):
        function(np.zeros(shape))
    with pytest.raises(ValueError, match="at least 2 chains and 4 draws"):
        jax.jit(function)(np.zeros(shape))


def test_runs_inside_scan():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(5, 2, 40, 3)), dtype=jnp.float32)

    def step(carry, chunk):
        return carry, (diagnostics.rhat(chunk), diagnostics.ess_bulk(chunk))

    _, (rhats, ess) = jax.lax.scan(step, None, x)
    assert rhats.shape == ess.shape == (5, 3)
    np.testing.assert_allclose(rhats[2], diagnostics.rhat(x[2]), rtol=1e-6)
    np.testing.assert_allclose(ess[4], diagnostics.ess_bulk(x[4]), rtol=1e-6)


def test_parameter_shape_is_kept():
    x = np.random.default_rng(5).normal(size=(2, 20, 1, 3))
    for name in NAMES:
        assert getattr(diagnostics, name)(x).shape == (1, 3)


@pytest.mark.slow
def test_max_rhat_min_ess_is_the_worst_coordinate_of_a_pytree():
    x = jnp.asarray(draws((4, 50), seed=6, phi=0.5, shift=1.0), jnp.float32)
    tree = {"a": x[..., :2], "b": x[..., 2:]}
    rhat, ess = diagnostics.max_rhat_min_ess(tree)
    np.testing.assert_allclose(rhat, jnp.max(diagnostics.rhat(x)), rtol=1e-6)
    np.testing.assert_allclose(ess, jnp.min(diagnostics.ess_bulk(x)), rtol=1e-6)
    # a constant coordinate (R-hat 0/0) is skipped; one NaN draw fails the check
    constant = {"a": tree["a"].at[..., 0].set(1.0), "b": tree["b"]}
    assert np.isfinite(diagnostics.max_rhat_min_ess(constant)[0])
    broken = {"a": tree["a"].at[0, 3, 1].set(jnp.nan), "b": tree["b"]}
    assert np.isnan(diagnostics.max_rhat_min_ess(broken)).all()
    with pytest.raises(ValueError, match=r"share its \(chain, draw\) axes"):
        diagnostics.max_rhat_min_ess({"a": x, "b": x[:, :40]})


@pytest.mark.slow
def test_summary_of_a_pytree_is_the_summary_of_each_leaf_with_named_coordinates():
    x = jnp.asarray(draws((4, 50), seed=7, phi=0.3, shift=0.5), jnp.float32)
    tree = {"w": x[..., :3].reshape(4, 50, 1, 3), "b": x[..., 3]}
    ours = diagnostics.summary(tree)
    whole = diagnostics.summary(x)
    for name, value in ours.items():
        np.testing.assert_allclose(value["w"].reshape(-1), whole[name][:3], rtol=1e-6)
        np.testing.assert_allclose(value["b"], whole[name][3], rtol=1e-6)
    names = diagnostics.coordinate_names(tree)
    assert names == ["['b']", "['w'][0,0]", "['w'][0,1]", "['w'][0,2]"]


@pytest.mark.parametrize("function", [getattr(diagnostics, n) for n in (*NAMES, "summary")])
def test_complex_draws_are_refused_naming_the_argument(function):
    with pytest.raises(TypeError, match=r"x must hold real draws, got complex"):
        function(np.zeros((2, 10), np.complex64))
    with pytest.raises(TypeError, match=r"draws must hold real draws, got complex"):
        diagnostics.max_rhat_min_ess(np.zeros((2, 10), np.complex64))


def test_summary_of_chosen_statistics_equals_each_function():
    x = jnp.asarray(draws((4, 60), seed=8, phi=0.4, shift=0.3), jnp.float32)
    stats = ("ess_tail", "rhat", "ess_bulk")
    ours = diagnostics.summary(x, stats=stats)
    assert tuple(ours) == stats
    for name in stats:
        np.testing.assert_allclose(ours[name], getattr(diagnostics, name)(x), rtol=1e-6)
    assert list(diagnostics.summary(x, stats="mean")) == ["mean"]


@pytest.mark.parametrize("stats", [(), ("rhat", "rhat"), ("rhat", "r_hat"), ("ess_mean",)])
def test_summary_refuses_unknown_or_repeated_statistics(stats):
    with pytest.raises(ValueError, match=r"stats must be distinct names among .* got stats="):
        diagnostics.summary(np.zeros((2, 10)), stats=stats)
