"""Tempered SMC log Z over independent runs: coverage of closed forms, models whose prior is
an EnergyDistribution, improper targets reported, bad input refused.

Coverage counts are those of tests/test_ais.py (>= 7 of 10 keys within 2 SE, all within 3).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from test_ais import (
    BROAD,
    LOG_EVIDENCE,
    LOG_Z_MIXTURE,
    Y,
    conjugate_model,
    mixture_logdensity,
    within,
)

from numpyro_ebm.energy import EnergyDistribution
from numpyro_ebm.evidence.references import Gaussian, GaussianMixture
from numpyro_ebm.evidence.smc import model_smc, smc


def test_smc_log_z_of_a_gaussian_mixture_covers_the_truth_over_ten_keys():
    results = [
        smc(jax.random.key(k), mixture_logdensity, jnp.zeros(2), reference=BROAD)
        for k in range(10)
    ]
    in2, in3, z = within(
        [float(r.log_normalizer) for r in results],
        [float(r.standard_error) for r in results],
        LOG_Z_MIXTURE,
    )
    assert in2 >= 7 and in3 == 10, f"z-scores {np.round(z, 2)}"
    first = results[0]
    assert first.ok and bool(first.is_finite) and bool(jnp.all(first.reached_target))
    assert first.particles.shape == (8, 256, 2)
    assert first.log_normalizer_per_run.shape == (8,)
    # gradients per particle: one per tempering step (the kernel's initialization), 5 leapfrog
    # steps per MCMC step; at least num_mcmc_steps=5 MCMC steps per tempering step
    tempering, moves = (int(jnp.sum(n)) for n in (first.num_tempering_steps, first.num_mcmc_steps))
    assert int(first.num_grad_evals) == 256 * (tempering + 5 * moves)
    assert 5 * tempering <= moves <= 50 * tempering
    # the final particles are equally weighted draws of the mixture: 70 % near (1.5, 1.5)
    upper = float(jnp.mean(first.particles[..., 0] > -0.25))
    assert abs(upper - 0.7) < 4 * np.sqrt(0.7 * 0.3 / (8 * 256 / 4))  # ESS >= 1/4 of N


def test_smc_evidence_of_a_model_with_an_energy_distribution_prior():
    # x ~ exp(-|x|^2 / (2 s^2)) (unnormalized, Z_E = 2 pi s^2), y ~ N(x, I): the log evidence
    # is log Z_E + log N(y; 0, (1 + s^2) I); nothing is drawn from the prior
    s2 = 4.0
    y = jnp.array([0.7, -1.2])

    def model(y):
        x = numpyro.sample("x", EnergyDistribution(lambda v: 0.5 * v @ v / s2, (2,)))
        numpyro.sample("y", dist.Normal(x, 1.0).to_event(1), obs=y)

    truth = np.log(2 * np.pi * s2) + float(
        jax.scipy.stats.norm.logpdf(y, scale=np.sqrt(1 + s2)).sum()
    )
    result = model_smc(jax.random.key(0), model, y)
    assert result.ok
    assert abs(float(result.log_normalizer) - truth) < 3 * float(result.standard_error) + 1e-4
    assert set(result.particles) == {"x"} and result.particles["x"].shape == (8, 256, 2)


def test_improper_targets_are_reported_not_estimated():
    quartic = lambda x: jnp.sum(x**2) ** 2  # E = -|x|^4
    with pytest.warns(RuntimeWarning, match="improper"):
        result = smc(jax.random.key(0), quartic, jnp.zeros(2), reference=BROAD)
    assert not result.ok


@pytest.mark.slow
def test_a_flat_target_is_reported_whatever_the_reference():
    flat = lambda x: 0.0 * jnp.sum(x)
    with pytest.warns(RuntimeWarning, match="Laplace fit failed"):
        result = smc(jax.random.key(0), flat, jnp.zeros(2))
    assert not result.ok
    with pytest.warns(RuntimeWarning, match="reference's scale"):
        result = smc(jax.random.key(0), flat, jnp.zeros(2), reference=BROAD)
    assert not result.ok and not result.scale_consistent


@pytest.mark.slow
def test_smc_evidence_of_a_conjugate_model_covers_the_closed_form():
    results = [model_smc(jax.random.key(k), conjugate_model, Y) for k in range(10)]
    in2, in3, z = within(
        [float(r.log_normalizer) for r in results],
        [float(r.standard_error) + 1e-5 for r in results],  # + float32 rounding
        LOG_EVIDENCE,
    )
    assert in2 >= 7 and in3 == 10, f"z-scores {np.round(z, 2)}"


@pytest.mark.slow
def test_a_run_that_does_not_reach_the_target_is_reported():
    with pytest.warns(RuntimeWarning, match="did not reach the target"):
        result = smc(
            jax.random.key(0), mixture_logdensity, jnp.zeros(2), reference=BROAD,
            max_iterations=1, target_ess=0.99,
        )
    assert not result.ok and not bool(jnp.all(result.reached_target))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_particles": 1}, "num_particles"),
        ({"num_runs": 0}, "num_runs"),
        ({"target_ess": 1.5}, "target_ess"),
        ({"init_scale": float("nan")}, "init_scale"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"mutation": "gibbs"}, "mutation"),
        ({"num_mcmc_steps": 0}, "num_mcmc_steps"),
        ({"reference": "prior"}, "reference"),
        ({"reference": Gaussian(jnp.zeros(2), jnp.array([1.0, -1.0]))}, "reference.scale"),
        (
            {"reference": GaussianMixture(jnp.zeros(2), jnp.zeros((2, 2)), jnp.ones((2, 2)))},
            r"reference.scales must have shape \(K, d, d\)",
        ),
        (
            {"reference": GaussianMixture(jnp.zeros(1), jnp.zeros((1, 2)), jnp.ones((1, 2, 2)))},
            "lower-triangular",
        ),
        ({"max_mcmc_steps": 2}, "max_mcmc_steps"),
        ({"num_starts": 0}, "num_starts"),
        ({"scale_check": "yes"}, "scale_check"),
        ({"num_leapfrog": 3}, r"no option\(s\) \['num_leapfrog'\]"),
    ],
)
def test_bad_options_are_refused_before_compiling(options, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises((ValueError, TypeError), match=message):
            smc(jax.random.key(0), mixture_logdensity, jnp.zeros(2), **options)


def test_a_reference_without_a_position_needs_one():
    with pytest.raises(ValueError, match="position"):
        smc(jax.random.key(0), mixture_logdensity)
