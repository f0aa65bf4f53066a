"""logdensity_from_model: the same unconstrained density as NumPyro, and back to constraints."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy

import numpyro_ebm as ne


def hierarchical(y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(5.0))
    corr = numpyro.sample("corr", dist.Beta(2.0, 2.0))
    with numpyro.plate("J", y.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
    numpyro.deterministic("scaled", corr * tau)


Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def test_logdensity_matches_numpyro_potential_energy_at_random_points():
    md = ne.logdensity_from_model(hierarchical, Y, SIGMA, key=jax.random.key(0))
    assert set(md.initial_position) == {"mu", "tau", "corr", "theta"}
    assert np.isfinite(md.logdensity_fn(md.initial_position))
    for i in range(5):
        keys = jax.random.split(jax.random.key(i), 4)
        z = {
            name: 2.0 * jax.random.normal(k, jnp.shape(v))
            for k, (name, v) in zip(keys, sorted(md.initial_position.items()))
        }
        expected = -potential_energy(hierarchical, (Y, SIGMA), {}, z)
        np.testing.assert_allclose(md.logdensity_fn(z), expected, rtol=1e-5)
        np.testing.assert_allclose(
            jax.grad(md.logdensity_fn)(z)["tau"],
            -jax.grad(lambda z: potential_energy(hierarchical, (Y, SIGMA), {}, z))(z)["tau"],
            rtol=1e-4,
        )


def test_postprocess_returns_constrained_and_deterministic_values():
    md = ne.logdensity_from_model(hierarchical, Y, SIGMA, key=jax.random.key(1))
    z = dict(md.initial_position, tau=jnp.asarray(-3.0), corr=jnp.asarray(0.4))
    values = md.postprocess_fn(z)
    np.testing.assert_allclose(values["tau"], np.exp(-3.0), rtol=1e-6)
    np.testing.assert_allclose(values["corr"], 1.0 / (1.0 + np.exp(-0.4)), rtol=1e-6)
    np.testing.assert_allclose(values["scaled"], values["corr"] * values["tau"], rtol=1e-6)
    np.testing.assert_allclose(values["theta"], z["theta"])


def test_jacobian_makes_the_unconstrained_density_integrate_correctly():
    # tau ~ HalfNormal(1): the unconstrained log density is log p(e^z) + z.
    def model():
        numpyro.sample("tau", dist.HalfNormal(1.0))

    md = ne.logdensity_from_model(model, key=jax.random.key(2))
    z = jnp.linspace(-3.0, 2.0, 7)
    got = jax.vmap(lambda t: md.logdensity_fn({"tau": t}))(z)
    expected = dist.HalfNormal(1.0).log_prob(jnp.exp(z)) + z
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kwargs_are_passed_to_the_model():
    md = ne.logdensity_from_model(hierarchical, Y, sigma=SIGMA, key=jax.random.key(3))
    z = md.initial_position
    np.testing.assert_allclose(
        md.logdensity_fn(z), -potential_energy(hierarchical, (Y, SIGMA), {}, z), rtol=1e-5
    )


def test_model_must_be_callable():
    with pytest.raises(TypeError, match="model must be a callable"):
        ne.logdensity_from_model(None, key=jax.random.key(0))
