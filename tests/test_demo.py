"""The demo's pieces: per-sampler budgets and samplers judged against the data in compare(),
the mode-weight table and the verdict, and a tiny end-to-end run of the demo."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_ebm as ne
from numpyro_ebm import _arviz, demo, workflow


def gaussian(x):
    return 0.5 * jnp.sum(x**2)


@pytest.fixture(scope="module")
def judged():
    """mala judged against the reference, hmc (a shorter budget) against draws of N(3, 1):
    the data disagree with hmc's target, so hmc must be marked as far from them."""
    data = {"x": np.asarray(jax.random.normal(jax.random.key(9), (4000, 2))) + 3.0}
    return ne.compare(
        gaussian,
        ["mala", "hmc"],
        key=jax.random.key(0),
        reference="nuts",
        data=data,
        num_chains=4,
        num_samples=400,
        num_warmup=200,
        budgets={"hmc": {"num_samples": 100, "num_warmup": 100}},
        against_data=["hmc"],
        event_shape=(2,),
    )


def test_budgets_give_a_sampler_its_own_number_of_draws(judged):
    assert _arviz.group(judged.idata["hmc"], "posterior").sizes["draw"] == 100
    assert _arviz.group(judged.idata["mala"], "posterior").sizes["draw"] == 400


def test_a_sampler_judged_against_the_data_is_measured_against_them(judged):
    table = judged.table
    assert np.isnan(table.loc["hmc", "sampler_error"])
    # hmc samples N(0, 1); the data are N(3, 1): its means are ~3 sds from them
    assert table.loc["hmc", "mean_error"] == pytest.approx(3.0, abs=0.3)
    assert not table.loc["hmc", "mixed"]
    assert "MCSE from the data" in table.loc["hmc", "reason"]
    # mala keeps the reference as its truth, and agrees with it
    assert table.loc["mala", "sampler_error"] < 0.2
    assert "MCSE from the data" not in table.loc["mala", "reason"]


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"budgets": {"nuts": {"num_samples": 10}}}, ValueError, "not in samplers"),
        ({"budgets": {"mala": {"num_chains": 10}}}, ValueError, "num_samples and num_warmup"),
        ({"budgets": {"mala": {"num_samples": 0}}}, ValueError, "num_samples"),
        ({"budgets": [1]}, TypeError, "budgets must be a dict"),
        ({"against_data": "mala"}, TypeError, "sequence of names"),
        ({"against_data": ["nuts"]}, ValueError, "not in samplers"),
        ({"against_data": ["mala"]}, ValueError, "needs data="),
    ],
)
def test_bad_budgets_and_against_data_are_refused_before_running(options, error, message):
    with pytest.raises(error, match=message):
        ne.compare(gaussian, ["mala"], key=jax.random.key(0), event_shape=(2,), **options)


@pytest.mark.slow  # about 2 minutes on 2 cores, most of it compiling seven programs
def test_the_demo_runs_end_to_end_and_tells_what_it_measured(tmp_path):
    settings = workflow.TrainSettings(
        num_steps=300, hidden=(32, 32), likelihood_steps=100, likelihood_chains=64
    )
    lines = []
    record = demo.run_demo(
        tmp_path,
        key=jax.random.key(0),
        num_data=2000,
        settings=settings,
        num_chains=4,
        num_samples=50,
        num_warmup=50,
        num_sweeps=20,
        steps_per_level=5,
        progress=False,
        echo=lines.append,
    )
    text = "\n".join(lines)
    assert "held-out log-likelihood" in text and "the true density's" in text
    assert "mass per mode" in text and text.count("Verdict:") == 1
    weights = record["mode_weights"]
    assert set(weights) >= {"data", "density exp(-E)", "parallel_tempering", "mala"}
    assert len(weights["data"]) == 8 + 2  # eight modes, the worst error, the worst se
    assert record["comparison"]["annealed_langevin"]["sampler_error"] is None  # NaN in JSON
    held = record["training"]["held_out"]
    assert np.isfinite(held["difference"]) and held["num_points"] == 200
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "metrics.json").is_file()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["verdict"] == record["verdict"]
    annealed = _arviz.from_netcdf(tmp_path / "idata" / "annealed_langevin.nc")
    assert _arviz.group(annealed, "posterior").sizes["draw"] == 20  # its own budget
