"""Learned priors in NumPyro models: every sampler that is defined on a model whose prior is an
EnergyDistribution reproduces a posterior known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from stats import assert_mean_close

import numpyro_ebm as ne

Y = np.array([1.0, -0.5])
NOISE = 0.8  # likelihood scale s
SIGMA_MIN = 0.1


def noise_conditional_prior(x, sigma):
    """A standard normal prior convolved with N(0, sigma^2): E = |x|^2 / (2 (1 + sigma^2))."""
    return 0.5 * jnp.sum(x**2) / (1.0 + sigma**2)


def posterior(prior_var):
    var = 1.0 / (1.0 / prior_var + 1.0 / NOISE**2)
    return var * Y / NOISE**2, var


def model(y):
    x = numpyro.sample("x", ne.EnergyDistribution(noise_conditional_prior, (2,), sigma=SIGMA_MIN))
    numpyro.sample("y", dist.Normal(x, NOISE).to_event(1), obs=y)


def plain_model(y):
    x = numpyro.sample("x", ne.EnergyDistribution(lambda x: 0.5 * jnp.sum(x**2), (2,)))
    numpyro.sample("y", dist.Normal(x, NOISE).to_event(1), obs=y)


def assert_posterior(idata, prior_var):
    mean, var = posterior(prior_var)
    draws = idata.posterior["x"].values
    assert_mean_close(draws, mean)
    assert_mean_close((draws - mean) ** 2, np.full(2, var))


def test_posterior_annealed_langevin_on_a_noise_conditional_prior():
    sampler = ne.samplers.annealed_langevin(
        sigmas=np.geomspace(2.0, SIGMA_MIN, 6),
        step_size=0.02,
        num_steps_per_level=40,
        metropolis=True,
        denoise=False,
    )
    idata = ne.sample(
        model,
        sampler,
        key=jax.random.key(0),
        model_args=(Y,),
        num_chains=512,
        num_samples=2,
        num_warmup=0,
    )
    assert_posterior(idata, 1.0 + SIGMA_MIN**2)


def test_parallel_tempering_on_an_energy_prior():
    idata = ne.sample(
        plain_model,
        ne.samplers.parallel_tempering(num_replicas=3),
        key=jax.random.key(1),
        model_args=(Y,),
        num_chains=8,
        num_samples=600,
        num_warmup=300,
    )
    assert_posterior(idata, 1.0)


def test_annealed_langevin_refuses_a_model_without_a_noise_conditional_prior():
    with pytest.raises(ValueError, match="only when its prior is noise-conditional"):
        ne.sample(
            plain_model,
            ne.samplers.annealed_langevin(sigmas=[1.0, 0.1]),
            key=jax.random.key(0),
            model_args=(Y,),
        )


def test_posterior_annealed_langevin_sees_a_noise_conditional_prior_inside_a_plate():
    def plated(y):
        with numpyro.plate("rows", 2):
            x = numpyro.sample(
                "x", ne.EnergyDistribution(noise_conditional_prior, (2,), sigma=SIGMA_MIN)
            )
        numpyro.sample("y", dist.Normal(x, NOISE).to_event(2), obs=y)

    sampler = ne.samplers.annealed_langevin(
        sigmas=np.geomspace(2.0, SIGMA_MIN, 6), step_size=0.02, num_steps_per_level=40,
        metropolis=True, denoise=False,
    )
    y = np.stack([Y, -Y])
    idata = ne.sample(plated, sampler, key=jax.random.key(2), model_args=(y,), num_chains=256,
                      num_samples=2, num_warmup=0)
    mean, var = posterior(1.0 + SIGMA_MIN**2)
    draws = idata.posterior["x"].values
    assert_mean_close(draws, np.stack([mean, -mean]))
    assert_mean_close((draws - np.stack([mean, -mean])) ** 2, np.full((2, 2), var))
