"""Probability-flow ODE log-likelihood: with the exact score of a Gaussian mixture it
recovers the closed-form log density of the mixture convolved with N(0, sigma_min^2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ebm.evidence.flow import probability_flow_log_likelihood

WEIGHTS = jnp.array([0.3, 0.7])
MEANS = jnp.array([[-2.0, -2.0], [1.5, 1.5]])
SCALES = jnp.array([0.5, 1.0])
SIGMA_MIN, SIGMA_MAX = 0.01, 500.0  # sigma_max >> the data's spread: the prior is right
POINTS = MEANS[jnp.arange(10) % 2] + jax.random.normal(jax.random.key(0), (10, 2))


def noised_logdensity(x, sigma):
    """log of the mixture convolved with N(0, sigma^2 I)."""
    scale = jnp.sqrt(SCALES**2 + sigma**2)
    log_components = jax.scipy.stats.norm.logpdf(x, MEANS, scale[:, None]).sum(-1)
    return jax.scipy.special.logsumexp(log_components + jnp.log(WEIGHTS))


exact_score = jax.grad(noised_logdensity)
TRUTH = jax.vmap(lambda x: noised_logdensity(x, SIGMA_MIN))(POINTS)


def test_exact_score_and_exact_trace_give_the_closed_form_log_density():
    result = probability_flow_log_likelihood(
        jax.random.key(1), POINTS, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
        score_fn=exact_score, trace="exact", num_probes=1,
    )
    assert float(jnp.max(jnp.abs(result.log_likelihood - TRUTH))) < 1e-2
    assert float(result.standard_error) == 0.0
    bits = -float(jnp.mean(TRUTH)) / (2 * np.log(2))
    assert abs(float(result.bits_per_dim) - bits) < 1e-2 / (2 * np.log(2))


def test_hutchinson_estimate_is_unbiased_within_its_standard_error():
    result = probability_flow_log_likelihood(
        jax.random.key(2), POINTS, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
        score_fn=exact_score, trace="rademacher", num_probes=8,
    )
    error = abs(float(result.mean_log_likelihood - jnp.mean(TRUTH)))
    assert 0 < float(result.standard_error) < 0.5
    assert error < 3 * float(result.standard_error) + 1e-2
    assert result.per_probe.shape == (8, 10)


@pytest.mark.slow
def test_an_energy_parameterization_gives_the_same_likelihood():
    result = probability_flow_log_likelihood(
        jax.random.key(1), POINTS[:4], sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
        energy_fn=lambda x, sigma: -noised_logdensity(x, sigma), trace="exact", num_probes=1,
        solver="dopri5", dequantization_bins=256,
    )
    assert float(jnp.max(jnp.abs(result.log_likelihood - TRUTH[:4]))) < 1e-2
    bits = -float(jnp.mean(TRUTH[:4])) / (2 * np.log(2)) + 8.0
    assert abs(float(result.bits_per_dim) - bits) < 1e-2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sigma_min": 0.0}, "sigma_min"),
        ({"sigma_min": 600.0}, "sigma_min must be below"),
        ({"trace": "skilling"}, "trace"),
        ({"solver": "euler"}, "solver"),
        ({"rtol": -1e-5}, "rtol"),
        ({"num_probes": 0}, "num_probes"),
        ({"score_fn": None}, "exactly one"),
        ({"energy_fn": lambda x, s: 0.0}, "exactly one"),
        ({"dequantization_bins": 1}, "dequantization_bins"),
    ],
)
def test_bad_options_are_refused(options, message):
    arguments = {"sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "score_fn": exact_score}
    with pytest.raises((ValueError, TypeError), match=message):
        probability_flow_log_likelihood(jax.random.key(0), POINTS, **(arguments | options))


def test_non_finite_data_is_refused():
    with pytest.raises(ValueError, match="data"):
        probability_flow_log_likelihood(
            jax.random.key(0), POINTS.at[0, 0].set(jnp.nan), sigma_min=SIGMA_MIN,
            sigma_max=SIGMA_MAX, score_fn=exact_score,
        )
