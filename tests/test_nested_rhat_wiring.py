"""Nested R-hat (Margossian et al. 2024) and the kernel Stein discrepancy in mixing_report and
compare() (issue 21): many short chains in superchains, each started from its own point; a biased
sampler whose chains agree, told apart by its distance to the energy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_ebm as ne
from numpyro_ebm.diagnostics import nested_rhat_threshold

SUPERCHAINS, PER_SUPERCHAIN = 8, 16


def gaussian(x):
    return 0.5 * jnp.sum(x**2)


def starts(spread: float) -> jax.Array:
    """One point per superchain (consecutive chains share it), ``spread`` apart."""
    points = spread * jax.random.normal(jax.random.key(0), (SUPERCHAINS, 2))
    return jnp.repeat(points, PER_SUPERCHAIN, axis=0)


def run(num_warmup: int, spread: float):
    return ne.sample(
        gaussian,
        "mala",
        key=jax.random.key(1),
        num_chains=SUPERCHAINS * PER_SUPERCHAIN,
        num_warmup=num_warmup,
        num_samples=10,
        init_position=starts(spread),
    )


def test_superchains_that_have_not_forgotten_their_starts_are_named():
    """No warm-up from starts 20 apart: after 10 draws each superchain is still near its own
    start; nested R-hat is far above the threshold sqrt(1 + 1/16 + 1e-4) = 1.031."""
    data = run(num_warmup=0, spread=20.0)
    report = ne.mixing_report(data, superchains=SUPERCHAINS, display=False)
    threshold = nested_rhat_threshold(PER_SUPERCHAIN)
    assert report.nested_rhat_threshold == threshold
    assert (report.table["nested_rhat"] > 2.0).all()
    assert any("nested R-hat" in warning for warning in report.warnings)


def test_compare_ranks_only_runs_whose_superchains_agree():
    """From starts 1 apart after 200 warm-up steps every superchain has forgotten its start
    (MALA on a standard normal mixes in a few dozen steps): nested R-hat below the threshold."""
    comparison = ne.compare(
        gaussian,
        ["mala"],
        key=jax.random.key(1),
        num_chains=SUPERCHAINS * PER_SUPERCHAIN,
        num_warmup=200,
        num_samples=10,
        init_position=starts(1.0),
        superchains=SUPERCHAINS,
    )
    row = comparison.table.loc["mala"]
    assert np.isfinite(row["max_nested_rhat"])
    assert row["max_nested_rhat"] <= nested_rhat_threshold(PER_SUPERCHAIN)
    stuck = ne.compare(
        gaussian,
        ["mala"],
        key=jax.random.key(1),
        num_chains=SUPERCHAINS * PER_SUPERCHAIN,
        num_warmup=0,
        num_samples=10,
        init_position=starts(20.0),
        superchains=SUPERCHAINS,
    )
    assert not stuck.table.loc["mala", "mixed"]
    assert "nested R-hat" in stuck.table.loc["mala", "reason"]


def test_compare_reports_the_stein_discrepancy_of_each_run_against_the_energy():
    """ULA with step 1.5 on a standard normal samples N(0, 1 / (1 - 1.5 / 4)) = N(0, 1.6):
    biased, yet its chains agree (R-hat cannot see it). Its KSD against the energy is 0.19 to
    0.21 over keys 0-2, MALA's 0.077 to 0.081."""
    comparison = ne.compare(
        gaussian,
        ["mala", ne.samplers.ula(step_size=1.5)],
        key=jax.random.key(0),
        event_shape=(2,),
        num_chains=4,
        num_warmup=300,
        num_samples=500,
    )
    table = comparison.table
    assert table.loc["mala", "ksd"] < 0.12 < table.loc["ula", "ksd"]


def test_until_stops_when_the_superchains_agree_by_nested_rhat():
    """until=Until(superchains=8): the nested R-hat checked between blocks (one program for
    every block, chain means and variances over the draws so far) equals nested_rhat of the
    kept draws, and the run stops once it is below the threshold for 16 chains per superchain
    (1.031); from starts 20 apart without warm-up that takes more than one block."""
    data = ne.sample(
        gaussian,
        "mala",
        key=jax.random.key(1),
        num_chains=SUPERCHAINS * PER_SUPERCHAIN,
        num_warmup=0,
        num_samples=400,
        init_position=starts(20.0),
        until=ne.Until(superchains=SUPERCHAINS, ess_bulk=100.0, block=20),
    )
    attrs = data.sample_stats.attrs
    assert attrs["until_reason"] == "converged"
    assert 20 < attrs["until_num_draws"] < 400
    draws = np.asarray(data.posterior["x"].values)
    assert draws.shape[1] == attrs["until_num_draws"]
    exact = float(np.max(ne.diagnostics.nested_rhat(draws, SUPERCHAINS)))
    assert attrs["until_nested_rhat"] == pytest.approx(exact, rel=1e-4)
    assert attrs["until_nested_rhat"] < nested_rhat_threshold(PER_SUPERCHAIN)


def test_until_refuses_superchains_that_do_not_divide_the_chains():
    with pytest.raises(ValueError, match=r"until\.superchains=3 must divide the 8 chains"):
        ne.sample(gaussian, "mala", key=jax.random.key(0), event_shape=(2,), num_chains=8,
                  until=ne.Until(superchains=3))  # fmt: skip
    with pytest.raises(ValueError, match=r"until\.nested_rhat needs until\.superchains"):
        ne.Until(nested_rhat=1.05).check()
