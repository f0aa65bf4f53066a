"""mixing_report: statistics per coordinate and warnings in words, on both ArviZ data models."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import numpyro_ebm as ne
from numpyro_ebm import _arviz
from numpyro_ebm.report import bfmi

CENTRES = np.array([[4.0, 0.0], [-4.0, 0.0]])


def two_modes(x):
    return -logsumexp(jnp.sum(norm.logpdf(x, CENTRES, 0.5), axis=-1))


def test_chains_stuck_in_different_modes_get_a_warning():
    init = jnp.asarray(np.repeat(CENTRES, 2, axis=0))  # chains 0, 1 right; 2, 3 left
    idata = ne.sample(
        two_modes,
        "mala",
        key=jax.random.key(0),
        init_position=init,
        event_shape=(2,),
        num_chains=4,
        num_samples=300,
        num_warmup=200,
    )
    report = ne.mixing_report(idata, display=False)
    assert report.table.loc["x[0]", "rhat"] > 1.1
    assert not report.ok and any("R-hat > 1.01" in w for w in report.warnings)


@pytest.mark.slow
def test_a_well_mixed_run_gets_no_warning():
    idata = ne.sample(
        lambda x: 0.5 * jnp.sum(x**2),
        "nuts",
        key=jax.random.key(1),
        event_shape=(2,),
        num_chains=4,
        num_samples=1000,
        num_warmup=300,
    )
    report = ne.mixing_report(idata, display=False)
    assert report.ok, report.warnings
    assert np.all(report.table["rhat"] < 1.01) and np.all(report.table["ess_bulk"] > 400)
    # the table's statistics are the on-device diagnostics of the same draws
    draws = np.asarray(_arviz.group(idata, "posterior")["x"])
    np.testing.assert_allclose(report.table["rhat"], ne.diagnostics.rhat(draws), rtol=1e-6)
    np.testing.assert_allclose(report.table["mean"], draws.mean((0, 1)), rtol=1e-5)


def _run(posterior, sample_stats=None):
    groups = {"posterior": posterior}
    if sample_stats is not None:
        groups["sample_stats"] = sample_stats
    return _arviz.from_dict(groups)


def test_divergences_nonfinite_chains_and_rare_swaps_are_reported():
    rng = np.random.default_rng(0)
    diverging = np.zeros((4, 100), bool)
    diverging[1, 5] = diverging[1, 7] = diverging[3, 0] = True
    nonfinite = np.zeros((4, 100), bool)
    nonfinite[2, 50:] = True
    swaps = np.full((4, 100, 3), 0.5)
    swaps[..., 1] = 0.01
    swaps[:, ::2, 2] = np.nan  # pairs not attempted at a draw
    report = ne.mixing_report(
        _run(
            {"x": rng.normal(size=(4, 100))},
            {"diverging": diverging, "nonfinite": nonfinite, "swap_acceptance": swaps},
        ),
        display=False,
        min_ess_per_chain=10,
    )
    assert report.divergences == 3 and report.nonfinite_chains == 1
    np.testing.assert_allclose(report.swap_acceptance, [0.5, 0.01, 0.5])
    text = " ".join(report.warnings)
    assert "3 divergent transition(s) in 2 chain(s)" in text
    assert "1 chain(s) reached a non-finite" in text
    assert "1<->2 (0.010)" in text and "0<->1" not in text


def test_nan_draws_and_short_runs_are_explained_not_crashed_on():
    x = np.random.default_rng(1).normal(size=(4, 50, 2))
    x[0, 3, 1] = np.nan
    report = ne.mixing_report(_run({"x": x}), display=False, min_ess_per_chain=1)
    assert np.isfinite(report.table.loc["x[0]", "rhat"])
    assert np.isnan(report.table.loc["x[1]", "rhat"])
    assert any("NaN or infinite draws (x[1])" in w for w in report.warnings)

    single = ne.mixing_report(_run({"x": x[:, :1, 0]}), display=False)  # 4 chains x 1 draw
    assert np.isnan(single.table.loc["x", "rhat"]) and np.isfinite(single.table.loc["x", "mean"])
    assert any("at least 2 chains of at least 4 draws" in w for w in single.warnings)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rhat_threshold": -1.0}, "rhat_threshold must be a number above 1"),
        ({"min_ess_per_chain": float("nan")}, "min_ess_per_chain must be a finite number"),
        ({"var_names": []}, "var_names must name at least one"),
    ],
)
def test_bad_thresholds_and_an_empty_var_names_are_refused(options, message):
    # a negative threshold flagged everything, a NaN one silenced the ESS warnings
    data = _arviz.from_dict({"posterior": {"x": np.random.default_rng(0).normal(size=(2, 50))}})
    with pytest.raises(ValueError, match=message):
        ne.mixing_report(data, display=False, **options)


def test_the_report_is_printed_as_a_table():
    out = io.StringIO()
    data = _run(
        {
            "mu": np.random.default_rng(2).normal(size=(2, 400)),
            "theta": np.random.default_rng(3).normal(size=(2, 400, 3)),
        }
    )
    report = ne.mixing_report(data, file=out, var_names=["theta"])
    text = out.getvalue()
    assert "2 chains x 400 draws" in text and "theta[2]" in text and "mu" not in text
    assert list(report.table.index) == ["theta[0]", "theta[1]", "theta[2]"]
    with pytest.raises(ValueError, match=r"var_names \['nope'\] not in the posterior"):
        ne.mixing_report(data, var_names=["nope"], display=False)


def test_arviz_1_datatree_output_is_supported(monkeypatch, tmp_path):
    """With ArviZ >= 1 (Python >= 3.12), sample() returns an xarray.DataTree; the report, the
    accessors and netCDF files work the same (tested through arviz_base, which ArviZ 1.x
    re-exports)."""
    pytest.importorskip("arviz_base")
    import xarray as xr

    monkeypatch.setattr(_arviz, "_arviz_1", lambda: True)
    tree = ne.sample(
        lambda x: 0.5 * jnp.sum(x**2),
        "mala",
        key=jax.random.key(3),
        event_shape=(2,),
        num_chains=4,
        num_samples=200,
        num_warmup=100,
    )
    assert isinstance(tree, xr.DataTree)
    assert _arviz.group(tree, "sample_stats").attrs["sampler"] == "mala"
    report = ne.mixing_report(tree, display=False)
    assert list(report.table.index) == ["x[0]", "x[1]"]
    _arviz.to_netcdf(tree, tmp_path / "run.nc")
    back = _arviz.from_netcdf(tmp_path / "run.nc")
    assert isinstance(back, xr.DataTree)
    np.testing.assert_array_equal(
        _arviz.group(back, "posterior")["x"], _arviz.group(tree, "posterior")["x"]
    )


def _ar1(rho, shape, seed):
    """Stationary AR(1) series along the last axis, unit marginal variance."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=shape)
    series = np.empty(shape)
    series[..., 0] = noise[..., 0]
    for t in range(1, shape[-1]):
        series[..., t] = rho * series[..., t - 1] + np.sqrt(1 - rho**2) * noise[..., t]
    return series


def test_bfmi_equals_arviz_and_its_expectation():
    """For an AR(1) energy with lag-one correlation rho, E-BFMI tends to 2 (1 - rho)."""
    import arviz as az

    energy = _ar1(0.9, (4, 4000), seed=0)
    ours = bfmi(energy)
    np.testing.assert_allclose(ours, az.bfmi(energy), rtol=1e-10)
    # one chain's estimate has a relative sd of about sqrt(2 (1 + rho^2) / (N (1 - rho^2))),
    # 0.1 here; four chains average it
    assert np.all(np.abs(ours - 0.2) < 4 * 0.2 * 0.1), ours
    with pytest.raises(ValueError, match=r"energy must have shape \(chain, draw\)"):
        bfmi(np.zeros((2, 1)))


def test_low_bfmi_and_missing_round_trips_are_reported():
    rng = np.random.default_rng(1)
    energy = np.concatenate([_ar1(0.95, (1, 500), 2), _ar1(0.0, (3, 500), 3)])
    report = ne.mixing_report(
        _run(
            {"x": rng.normal(size=(4, 500))},
            {"energy": energy, "round_trips": np.zeros((4, 500), np.int32)},
        ),
        display=False,
    )
    assert len(report.bfmi) == 4 and report.bfmi[0] < 0.3 < min(report.bfmi[1:])
    assert report.round_trip_rate == 0.0
    text = " ".join(report.warnings)
    assert "E-BFMI < 0.3 in 1 chain(s) (chain 0: " in text
    assert "no parallel-tempering replica completed a round trip" in text

    trips = np.zeros((4, 500), np.int32)
    trips[:, ::50] = 1
    fine = ne.mixing_report(
        _run(
            {"x": rng.normal(size=(4, 500))},
            {"energy": energy[1:2].repeat(4, 0), "round_trips": trips},
        ),
        display=False,
    )
    assert fine.ok, fine.warnings
    assert fine.round_trip_rate == pytest.approx(0.02)
