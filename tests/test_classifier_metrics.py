"""Expected calibration error and AUROC (``ne.metrics``) against closed forms."""

import numpy as np
import pytest
import scipy.stats

import numpyro_ebm as ne


def test_auroc_of_two_gaussians_is_its_closed_form():
    # scores N(d, 1) against N(0, 1): AUROC = Phi(d / sqrt(2))
    rng = np.random.default_rng(0)
    n = 20_000
    d = 1.0
    value = ne.metrics.auroc(rng.normal(d, 1, n), rng.normal(0, 1, n))
    truth = scipy.stats.norm.cdf(d / np.sqrt(2))
    # Hanley & McNeil's (1982) standard error of the Mann-Whitney statistic
    q1, q2 = truth / (2 - truth), 2 * truth**2 / (1 + truth)
    se = np.sqrt((truth * (1 - truth) + (n - 1) * (q1 - truth**2 + q2 - truth**2)) / n**2)
    assert abs(value - truth) < 4 * se


def test_auroc_counts_ties_half_and_orders_the_scores():
    assert ne.metrics.auroc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert ne.metrics.auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert ne.metrics.auroc([0.0], [1.0, 0.0]) == 0.25
    with pytest.raises(ValueError, match="non-empty 1-D arrays of scores"):
        ne.metrics.auroc([], [1.0])
    with pytest.raises(ValueError, match="positive holds 1 non-finite"):
        ne.metrics.auroc([np.nan], [1.0])


def test_calibrated_probabilities_have_small_ece_and_overconfident_ones_do_not():
    rng = np.random.default_rng(1)
    n, k = 50_000, 3
    logits = rng.normal(0, 2, (n, k))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    # labels drawn from the predicted probabilities: calibrated by construction
    labels = (rng.random(n)[:, None] > np.cumsum(probabilities, 1)).sum(1)
    assert ne.metrics.expected_calibration_error(probabilities, labels) < 0.01
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
    assert ne.metrics.expected_calibration_error(sharp, labels) > 0.05


def test_ece_by_hand():
    # two bins used: confidence 0.9 (right) and 0.6 (wrong): |1 - 0.9| / 2 + |0 - 0.6| / 2
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6]])
    value = ne.metrics.expected_calibration_error(probabilities, [0, 0], num_bins=10)
    assert value == pytest.approx(0.05 + 0.3)
    with pytest.raises(ValueError, match="one label per row"):
        ne.metrics.expected_calibration_error(probabilities, [0, 0, 1])
    # rows that are no probabilities gave an "ECE" of 1.75
    for bad in ([[2.0, -1.0], [0.5, 0.5]], [[0.1, 0.1], [0.2, 0.2]]):
        with pytest.raises(ValueError, match="rows of non-negative numbers summing to 1"):
            ne.metrics.expected_calibration_error(bad, [0, 1])


def test_mode_weights_refuse_centres_they_cannot_use():
    draws = np.zeros((10, 2))
    with pytest.raises(ValueError, match="centers holds 1 non-finite"):
        ne.metrics.mode_weights(draws, [[0.0, np.nan], [1.0, 1.0]])
    with pytest.raises(ValueError, match="draws must have shape"):
        ne.metrics.mode_weights(np.zeros((0, 10, 2)), [[0.0, 0.0]])  # no chains
    # centres of another dimension than the energy's were broadcast into weights
    with pytest.raises(ValueError, match="centers must be points of the grid's dimension 2"):
        ne.metrics.density_mode_weights(
            lambda x: 0.5 * (x**2).sum(), [[0.0], [1.0]], [-3.0, -3.0], [3.0, 3.0], num=16
        )


def test_spurious_basins_finds_a_planted_basin_and_none_in_a_faithful_energy():
    import jax.numpy as jnp

    rng = np.random.default_rng(2)
    data = rng.normal(0, 0.3, (400, 2))
    held_out = rng.normal(0, 0.3, (200, 2))
    starts = rng.uniform(-4, 4, (300, 2))
    faithful = lambda x: 0.5 * jnp.sum(x**2) / 0.09  # the data's own energy
    probe = ne.diagnostics.spurious_basins(faithful, starts, data, held_out, step_size=0.01)
    assert probe.fraction == 0.0
    # a second, deeper well at (3, 3) where no data lie: the descents that end in it, and only
    # they, are spurious
    planted = lambda x: -jnp.logaddexp(
        -0.5 * jnp.sum(x**2) / 0.09, -0.5 * jnp.sum((x - 3.0) ** 2) / 0.09 + 2.0
    )
    probe = ne.diagnostics.spurious_basins(planted, starts, data, held_out, step_size=0.01)
    in_well = np.linalg.norm(probe.points - 3.0, axis=1) < 0.1
    assert in_well.mean() > 0.1
    np.testing.assert_array_equal(probe.spurious, in_well)
    assert probe.fraction == probe.spurious.mean()
    with pytest.raises(ValueError, match="share one event shape"):
        ne.diagnostics.spurious_basins(faithful, starts[:, :1], data, held_out)
    # no data ended in a ZeroDivisionError; lower > upper clipped every point silently
    with pytest.raises(ValueError, match=r"data must hold at least one point, got shape \(0, 2\)"):
        ne.diagnostics.spurious_basins(faithful, starts, data[:0], held_out)
    with pytest.raises(ValueError, match="lower must not exceed upper"):
        ne.diagnostics.spurious_basins(faithful, starts, data, held_out, lower=5.0, upper=-5.0)
