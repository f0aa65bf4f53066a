"""The energy contract and its NumPyro faces: statistics against closed forms, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS
from stats import assert_covariance_close, assert_mean_close

import numpyro_ebm as ne
from numpyro_ebm.models.ising import Ising

DIM = 5
_A = np.random.default_rng(0).normal(size=(DIM, DIM))
COV = _A @ _A.T / DIM + 0.5 * np.eye(DIM)
MEAN = np.linspace(-2.0, 2.0, DIM)
PRECISION = np.linalg.inv(COV)


def gaussian_energy(x):
    d = x - MEAN
    return 0.5 * d @ PRECISION @ d


def run_nuts(key, num_chains=4, num_samples=2000, **kernel_kwargs):
    mcmc = MCMC(
        NUTS(**kernel_kwargs),
        num_warmup=500,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    return mcmc


def test_nuts_with_potential_fn_recovers_correlated_gaussian():
    mcmc = run_nuts(None, potential_fn=ne.potential_fn(gaussian_energy))
    init = jnp.zeros((4, DIM))
    mcmc.run(jax.random.key(0), init_params=init)
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_mean_close(draws, MEAN)
    assert_covariance_close(draws, MEAN, COV)


def test_potential_fn_scales_with_temperature():
    x = jnp.ones(DIM)
    u1 = ne.potential_fn(gaussian_energy)(x)
    u3 = ne.potential_fn(gaussian_energy, temperature=3.0)(x)
    np.testing.assert_allclose(u3, u1 / 3.0, rtol=1e-6)


def test_tempered_potential_widens_the_gaussian():
    temperature = 2.0
    mcmc = run_nuts(None, potential_fn=ne.potential_fn(gaussian_energy, temperature))
    mcmc.run(jax.random.key(1), init_params=jnp.zeros((4, DIM)))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_covariance_close(draws, MEAN, temperature * COV)


def test_energy_distribution_prior_conjugate_posterior():
    # prior mu ~ N(m0, s0^2 I) written as an energy; likelihood y_i ~ N(mu, s^2 I)
    m0, s0, s = np.array([1.0, -1.0]), 2.0, 0.5
    y = np.random.default_rng(1).normal([0.3, 0.7], s, size=(10, 2))
    prior = ne.EnergyDistribution(lambda mu: 0.5 * jnp.sum((mu - m0) ** 2) / s0**2, (2,))

    def model(y):
        mu = numpyro.sample("mu", prior)
        with numpyro.plate("n", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, s).to_event(1), obs=y)

    mcmc = run_nuts(None, model=model)
    mcmc.run(jax.random.key(2), y)
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])
    post_var = 1.0 / (1.0 / s0**2 + len(y) / s**2)
    post_mean = post_var * (m0 / s0**2 + y.sum(axis=0) / s**2)
    assert_mean_close(draws, post_mean)
    assert_covariance_close(draws, post_mean, post_var * np.eye(2))


def test_energy_distribution_log_prob_batches_and_matches_energy():
    d = ne.EnergyDistribution(gaussian_energy, (DIM,), temperature=2.0)
    x = jax.random.normal(jax.random.key(3), (3, 4, DIM))
    expected = -jax.vmap(jax.vmap(gaussian_energy))(x) / 2.0
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=1e-6)
    assert d.event_shape == (DIM,) and d.batch_shape == ()
    assert jax.jit(d.log_prob)(x).shape == (3, 4)


def test_energy_distribution_as_likelihood_with_pytree_flatten():
    d = ne.EnergyDistribution(gaussian_energy, (DIM,))
    leaves, treedef = jax.tree.flatten(d)
    rebuilt = jax.tree.unflatten(treedef, leaves)
    np.testing.assert_allclose(rebuilt.log_prob(jnp.ones(DIM)), d.log_prob(jnp.ones(DIM)))


def test_energy_factor_adds_minus_energy_over_temperature():
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 10.0).expand([DIM]).to_event(1))
        ne.energy_factor("prior", gaussian_energy, x, temperature=0.5)

    md = ne.logdensity_from_model(model, key=jax.random.key(4))
    x = jnp.linspace(-1, 1, DIM)
    expected = dist.Normal(0.0, 10.0).log_prob(x).sum() - gaussian_energy(x) / 0.5
    np.testing.assert_allclose(md.logdensity_fn({"x": x}), expected, rtol=1e-5)


def test_energy_factor_nuts_recovers_product_of_prior_and_energy():
    # N(0, 10^2) prior times exp(-E) gives a Gaussian with precision P + I/100.
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 10.0).expand([DIM]).to_event(1))
        ne.energy_factor("prior", gaussian_energy, x)

    mcmc = run_nuts(None, model=model)
    mcmc.run(jax.random.key(5))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    cov = np.linalg.inv(PRECISION + np.eye(DIM) / 100.0)
    mean = cov @ PRECISION @ MEAN
    assert_mean_close(draws, mean)
    assert_covariance_close(draws, mean, cov)


def test_energy_distribution_sample_points_to_samplers():
    d = ne.EnergyDistribution(gaussian_energy, (DIM,))
    with pytest.raises(NotImplementedError, match=r"numpyro_ebm\.sample"):
        d.sample(jax.random.key(0))


def test_nets_plug_into_energy_distribution():
    from flax import nnx

    apply, params = ne.as_pure(ne.MLPEnergy((3,), hidden=(8,), rngs=nnx.Rngs(0)))
    d = ne.EnergyDistribution(lambda x: apply(params, x), (3,))
    assert d.log_prob(jnp.ones((7, 3))).shape == (7,)


# --- bad input -------------------------------------------------------------------------------


def vector_energy(x):
    return x**2


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_temperature_is_rejected_everywhere(temperature):
    with pytest.raises(ValueError, match="temperature"):
        ne.potential_fn(gaussian_energy, temperature)
    with pytest.raises(ValueError, match="temperature"):
        ne.EnergyDistribution(gaussian_energy, (DIM,), temperature)
    with pytest.raises(ValueError, match="temperature"):
        with numpyro.handlers.seed(rng_seed=0):
            ne.energy_factor("f", gaussian_energy, jnp.zeros(DIM), temperature)


def test_non_scalar_energy_is_rejected_everywhere():
    x = jnp.ones(DIM)
    with pytest.raises(TypeError, match=r"energy must return a scalar.*\(5,\)"):
        ne.potential_fn(vector_energy)(x)
    with pytest.raises(TypeError, match=r"energy must return a scalar.*\(5,\)"):
        jax.jit(ne.potential_fn(vector_energy))(x)
    with pytest.raises(TypeError, match=r"energy must return a scalar.*\(5,\)"):
        ne.potential_fn(vector_energy, example=x)
    with pytest.raises(TypeError, match=r"energy must return a scalar.*\(5,\)"):
        ne.EnergyDistribution(vector_energy, (DIM,))
    with pytest.raises(TypeError, match=r"energy must return a scalar.*\(5,\)"):
        with numpyro.handlers.seed(rng_seed=0):
            ne.energy_factor("f", vector_energy, x)


def test_non_finite_energy_at_the_initial_point_is_rejected():
    def log_energy(x):
        return jnp.sum(jnp.log(x))

    bad = jnp.zeros(DIM).at[0].set(-1.0)
    with pytest.raises(ValueError, match=r"energy is not finite.*nan"):
        ne.potential_fn(log_energy, example=bad)
    with pytest.raises(ValueError, match="energy is not finite"):
        ne.potential_fn(log_energy)(jnp.zeros(DIM))
    with pytest.raises(ValueError, match="energy is not finite"):
        ne.EnergyDistribution(log_energy, (DIM,)).log_prob(bad)
    with pytest.raises(ValueError, match="energy is not finite"):
        with numpyro.handlers.seed(rng_seed=0):
            ne.energy_factor("f", log_energy, bad)


def test_event_shape_that_does_not_fit_the_energy_is_rejected():
    with pytest.raises(ValueError, match=r"event_shape=\(3,\) does not fit the energy"):
        ne.EnergyDistribution(gaussian_energy, (3,))
    d = ne.EnergyDistribution(gaussian_energy, (DIM,))
    with pytest.raises(ValueError, match=r"value of shape \(4, 3\).*event_shape=\(5,\)"):
        d.log_prob(jnp.ones((4, 3)))
    with pytest.raises(TypeError, match="event_shape"):
        ne.EnergyDistribution(gaussian_energy, 5)


def test_energy_must_be_callable():
    with pytest.raises(TypeError, match="energy must be callable"):
        ne.EnergyDistribution("not a function", (DIM,))


def test_discrete_energy_distribution_draws_each_state_with_its_probability():
    """9 sites (blocks of 16 x 32 states for the two-stage Gumbel-max draw): 200 000 draws, every
    state's frequency within 5 binomial standard errors of its enumerated probability (512
    states: a false alarm has probability below 3e-4)."""
    ising = Ising(3, h=0.2)
    site = ne.DiscreteEnergyDistribution(ising.energy, (3, 3), temperature=1 / 0.4)
    states = site.enumerate_support()
    logits = np.asarray(-jax.vmap(ising.energy)(states) * 0.4, np.float64)
    probability = np.exp(logits - logits.max())
    probability /= probability.sum()
    draws = np.asarray(site.sample(jax.random.key(0), (200_000,))).reshape(-1, 9)
    index = ((draws > 0).astype(int) << np.arange(9)).sum(1)
    frequency = np.bincount(index, minlength=512) / len(index)
    se = np.sqrt(probability * (1 - probability) / len(index))
    assert np.all(np.abs(frequency - probability) < 5 * se + 1e-6)
