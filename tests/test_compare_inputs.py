"""compare(): what it is given is checked before anything runs, and what it says reads true.

One test per row of the probe of 2026-12-06 (compare rows) and of issue 24's small faults:
draws of the wrong width or type, a string for ``samplers``, two settings of one sampler,
an unreachable R-hat threshold, a bias check that applies to no sampler, a save under a file,
thresholds printed as if equal, and the attribution's wording.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

import numpyro_ebm as ne
from numpyro_ebm import _compare_runs as runs
from numpyro_ebm import _compare_verdicts as verdicts


def quadratic(x):
    return 0.5 * jnp.sum(x**2)


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


@pytest.fixture
def no_sampling(monkeypatch):
    """compare() must refuse before it samples: sampling fails the test."""

    def sample(*args, **kwargs):
        raise AssertionError("compare() sampled before refusing its input")

    monkeypatch.setattr(runs, "sample", sample)


SMALL = dict(num_chains=2, num_samples=50, num_warmup=50)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"reference": {"x": np.zeros((100, 3))}},
            r"reference draws of 'x' have shape \(3,\) each, but the target's 'x' has shape \(2,\)",
        ),
        (
            {"data": {"x": np.zeros((100, 3))}},
            r"data draws of 'x' have shape \(3,\) each, but the target's 'x' has shape \(2,\)",
        ),
        ({"data": {"y": np.zeros((100, 2))}}, "data draws have no variable 'x'"),
        ({"rhat_threshold": 0.5}, r"rhat_threshold must be at least 1.*0\.5"),
    ],
)
def test_bad_values_are_refused_before_any_sampler_runs(no_sampling, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ne.compare(quadratic, ["nuts", "mala"], key=jax.random.key(0), event_shape=(2,), **kwargs)


def test_draws_of_a_model_are_checked_against_its_sites_before_running(no_sampling):
    y = jnp.ones((5, 2))
    with pytest.raises(ValueError, match=r"reference draws of 'mu' have shape \(3,\) each"):
        ne.compare(
            model,
            ["nuts"],
            key=jax.random.key(0),
            reference={"mu": np.zeros((50, 3))},
            model_args=(y,),
        )


@pytest.mark.parametrize(
    ("samplers", "kwargs", "match"),
    [
        ("mala", {}, r"samplers must be a sequence of samplers, got the single 'mala': write \["),
        (["mala"], {"data": np.zeros((100, 2))}, r"data must be draws \{var: array"),
        (["mala"], {"reference": np.zeros((100, 2))}, r"got an array of shape \(100, 2\)"),
    ],
)
def test_bad_types_are_refused_in_words_before_any_sampler_runs(
    no_sampling, samplers, kwargs, match
):
    with pytest.raises(TypeError, match=match):
        ne.compare(quadratic, samplers, key=jax.random.key(0), event_shape=(2,), **kwargs)


def test_two_settings_of_one_sampler_get_rows_labelled_by_their_options():
    result = ne.compare(
        quadratic,
        ["mala", ne.samplers.mala(step_size=0.05)],
        key=jax.random.key(0),
        event_shape=(2,),
        budgets={"mala": {"num_samples": 60}},
        **SMALL,
    )
    labels = {"mala(step_size=0.2)", "mala(step_size=0.05)"}
    assert set(result.table.index) == labels == set(result.idata)
    # budgets name the sampler, so they apply to both settings
    assert all(result.idata[label].posterior.sizes["draw"] == 60 for label in labels)
    with pytest.raises(ValueError, match="duplicates"):
        ne.compare(quadratic, ["mala", ne.samplers.mala()], key=jax.random.key(0))


def test_a_bias_check_that_applies_to_no_sampler_says_so():
    result = ne.compare(
        quadratic, ["mala"], key=jax.random.key(0), event_shape=(2,), check_bias=True, **SMALL
    )
    assert "bias_check" not in result.table
    assert "check_bias=True checked no sampler" in str(result)
    assert "mala" in str(result)


def test_save_under_a_file_is_refused_naming_the_path(tmp_path):
    result = ne.compare(quadratic, ["mala"], key=jax.random.key(0), event_shape=(2,), **SMALL)
    afile = tmp_path / "afile"
    afile.write_text("")
    for write in (result.save, result.plot):
        with pytest.raises(ValueError, match=r"directory '.*afile/x' lies under .*which is a file"):
            write(afile / "x")


@pytest.mark.parametrize(
    ("value", "threshold", "text"),
    [
        (1.0116, 1.01, "1.012"),
        (1.0146, 1.01, "1.015"),
        (1.0500, 1.01, "1.05"),
        (4.0004, 4.0, "4.0004"),
    ],
)
def test_a_value_past_its_threshold_is_printed_with_the_digits_that_show_it(value, threshold, text):
    assert verdicts.printed_apart(value, threshold) == text
    row = {"max_rhat": value, "divergences": 0, "nonfinite_chains": 0, "min_bfmi": np.nan}
    # a report whose health checks all passed, run without superchains
    healthy = SimpleNamespace(health=(), nested_rhat_threshold=np.nan)
    reasons = verdicts.mixing_reasons(row, healthy, threshold, None)
    assert reasons == [f"R-hat {text} > {threshold}"]


def _attribution(mixed: list[bool]) -> str:
    table = pd.DataFrame(
        {"sampler_error": [0.1, 0.3, 0.5][: len(mixed)], "mixed": mixed},
        index=["pt", "smc", "mala"][: len(mixed)],
    )
    return verdicts.attribution(table, {"error": 0.05, "mean_z": 1.0}, None)


def test_the_attribution_says_which_samplers_its_error_speaks_for():
    # some mixed: the worst of those that mixed (smc), and it says so
    assert "up to 0.3 sd (smc, among those that mixed)" in _attribution([True, True, False])
    # all mixed: nothing to qualify
    assert "up to 0.5 sd (mala)" in _attribution([True, True, True])
    # none mixed: the worst of all, and it says that none mixed
    assert "up to 0.5 sd (mala, none of which mixed)" in _attribution([False, False, False])
