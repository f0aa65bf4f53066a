"""compare(): several samplers on one NumPyro model, one table, data that load back."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import numpyro_ebm as ne

# mu ~ N(0, 10^2 I), y_i ~ N(mu, I): the posterior is Gaussian in closed form
Y = np.random.default_rng(0).normal([1.0, -2.0], 1.0, size=(20, 2))
POST_VAR = 1.0 / (1.0 / 100.0 + len(Y))
POST_MEAN = POST_VAR * Y.sum(0)


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


def test_compare_four_samplers_on_a_numpyro_model(tmp_path):
    exact = np.random.default_rng(1).normal(POST_MEAN, np.sqrt(POST_VAR), size=(100_000, 2))
    samplers = ["nuts", "hmc", "mala", "parallel_tempering"]
    result = ne.compare(
        model,
        samplers,
        key=jax.random.key(0),
        reference={"mu": exact},
        num_chains=4,
        num_samples=400,
        num_warmup=300,
        model_args=(jnp.asarray(Y),),
        sampler_options={"hmc": {"num_integration_steps": 8}},
    )
    table = result.table
    assert list(table.index) == samplers
    columns = [
        "wall_s",
        "compile_s",
        "grad_evals",
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "ess_per_s",
        "ess_per_1k_grads",
        "divergences",
        "nonfinite_chains",
        "mean_error",
        "sd_error",
        "mean_z",
    ]
    assert list(table.columns) == columns
    assert np.all(np.isfinite(table.to_numpy(float)))
    assert np.all(table["wall_s"] > 0) and np.all(table["compile_s"] > 0)
    # gradient counts: one per MALA step, a fixed 8 leapfrog steps per HMC step
    assert table.loc["mala", "grad_evals"] == 4 * 400
    assert table.loc["hmc", "grad_evals"] == 4 * 400 * 8
    # a Gaussian posterior: every sampler's means lie within MCSE of the truth
    assert np.all(table["mean_z"] < 4.5), table["mean_z"]
    assert table.loc["nuts", "mean_error"] < 0.2 and table.loc["nuts", "sd_error"] < 0.2

    paths = result.save(tmp_path)
    for name in samplers:
        back = az.from_netcdf(tmp_path / f"{name}.nc")
        np.testing.assert_array_equal(back.posterior["mu"], result.idata[name].posterior["mu"])
    assert (tmp_path / "comparison.csv").exists() and len(paths) == 5
    figures = result.plot(tmp_path)
    assert all(path.stat().st_size > 10_000 for path in figures) and len(figures) == 5


def test_a_reference_sampler_is_run_once_and_tabulated():
    result = ne.compare(
        lambda x: 0.5 * jnp.sum(x**2),
        ["mala"],
        key=jax.random.key(2),
        reference="nuts",
        event_shape=(3,),
        num_chains=4,
        num_samples=300,
        num_warmup=200,
    )
    assert list(result.table.index) == ["mala", "nuts"]
    assert result.table.loc["nuts", "mean_error"] == 0.0
    assert result.table.loc["mala", "mean_z"] < 4.5


@pytest.mark.parametrize(
    "samplers, kwargs, match",
    [
        ([], {}, "at least one sampler"),
        (["mala", "mala"], {}, "duplicates"),
        (["mala", "bogus"], {}, "bogus"),
        (["mala"], {"sampler_options": {"nuts": {}}}, r"sampler_options for \['nuts'\]"),
        (["mala"], {"reference": {"x": np.full((10, 2), np.nan)}}, "'x' must be finite"),
        (["mala"], {"reference": {"x": np.zeros((1, 2))}}, "at least 2"),
        (
            ["mala"],
            {"reference": {"y": np.zeros((10, 2))}, "var_names": ["x"]},
            "reference draws have no variable 'x'",
        ),
    ],
)
def test_bad_input_is_rejected_before_running(samplers, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ne.compare(
            lambda x: jnp.sum(x**2), samplers, key=jax.random.key(0), event_shape=(2,), **kwargs
        )


def test_reference_draws_of_another_shape_are_named():
    with pytest.raises(ValueError, match="'x' has 2 coordinates but the reference 3"):
        ne.compare(
            lambda x: jnp.sum(x**2),
            ["mala"],
            key=jax.random.key(0),
            reference={"x": np.zeros((10, 3))},
            event_shape=(2,),
            num_chains=2,
            num_samples=20,
            num_warmup=20,
        )
