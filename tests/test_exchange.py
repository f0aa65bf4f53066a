"""The exchange algorithm (ne.samplers.exchange) and coupling from the past, against exact
posteriors: the inverse temperature of observed Ising configurations, with log Z(beta) by
enumeration (4x4) or the transfer matrix (6x6) on a quadrature grid; the precision of observed
Gaussian energies, whose log Z is known. Tolerances: posterior means within 4 Monte Carlo
standard errors (ArviZ's mcse_mean), posterior sds within 15 %; CFTP's independent draws
within 4 standard errors of exact expectations."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.special import logsumexp

import numpyro_ebm as ne
from numpyro_ebm.evidence.exact import expectation, transfer_matrix_log_partition
from numpyro_ebm.kernels.cftp import ising_cftp
from numpyro_ebm.models.ising import Ising

TRUE_BETA = 0.3
BETAS = np.linspace(1e-3, 1.0, 1000)


def ising_beta_model(ising, upper=1.0):
    def model(x):
        beta = numpyro.sample("beta", dist.Uniform(0.0, upper))
        with numpyro.plate("n", x.shape[0]):
            site = ne.DiscreteEnergyDistribution(ising.energy, ising.shape, temperature=1 / beta)
            numpyro.sample("x", site, obs=x)

    return model


def observed(ising, n, key, beta=TRUE_BETA):
    """n exact draws at beta: enumeration for 4x4, coupling from the past above."""
    if ising.L == 4:
        site = ne.DiscreteEnergyDistribution(ising.energy, (4, 4), temperature=1 / beta)
        return site.sample(key, (n,))
    draws, coalesced, _ = jax.vmap(lambda k: ising_cftp(k, ising.shape, beta))(
        jax.random.split(key, n)
    )
    assert bool(coalesced.all())
    return draws


def exact_posterior(ising, x, log_z, betas=BETAS):
    """Mean and sd of beta under a uniform prior on the grid ``betas`` by quadrature, log Z(beta)
    on the grid."""
    pairs = -np.asarray(jax.vmap(ising.energy)(x), np.float64).sum()
    log_post = betas * pairs - len(x) * log_z
    weights = np.exp(log_post - logsumexp(log_post))
    mean = (weights * betas).sum()
    return mean, np.sqrt((weights * (betas - mean) ** 2).sum())


def enumerated_log_z(ising):
    states = ne.DiscreteEnergyDistribution(ising.energy, ising.shape).enumerate_support()
    energies = np.asarray(jax.vmap(ising.energy)(states), np.float64)
    return logsumexp(-BETAS[:, None] * energies[None], axis=1)


def assert_posterior(result, mean, sd, name="beta", bias=0.0, max_rhat=1.02):
    """The draws of ``name`` against the exact posterior: mean within ``bias`` plus 4 Monte
    Carlo standard errors, sd within 15 %, R-hat below ``max_rhat``."""
    summary = az.summary(result, var_names=[name], round_to="none")
    draws = result.posterior[name].values
    mcse = float(summary["mcse_mean"].iloc[0])
    assert abs(draws.mean() - mean) < bias + 4 * mcse, (name, draws.mean(), mean, sd, mcse)
    assert abs(draws.std() / sd - 1) < 0.15, (name, draws.std(), sd)
    assert float(summary["r_hat"].iloc[0]) < max_rhat


def test_coupling_from_the_past_draws_the_ising_model_exactly():
    ising = Ising(4, J=1.0, h=0.1)
    beta = 0.3
    spins, coalesced, sweeps = jax.jit(
        jax.vmap(lambda k: ising_cftp(k, (4, 4), beta * ising.J, beta * ising.h))
    )(jax.random.split(jax.random.key(0), 4000))
    assert bool(coalesced.all()) and int(sweeps.max()) >= 2

    def statistics(s):
        return jnp.stack([s.mean(), jnp.abs(s.mean()), ising.energy(s) / s.size])

    truth = np.asarray(expectation(lambda s: -beta * ising.energy(s), statistics, (4, 4)))
    values = np.asarray(jax.vmap(statistics)(spins), np.float64)
    error = np.abs(values.mean(0) - truth)
    assert np.all(error < 4 * values.std(0) / np.sqrt(len(values))), (values.mean(0), truth)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"coupling": float("nan")}, "coupling holds 1 non-finite"),
        ({"coupling": 0.3, "field": float("nan")}, "field holds 1 non-finite"),
        ({"coupling": 0.3, "max_doublings": 0}, "max_doublings must be an integer >= 1"),
    ],
)
def test_coupling_from_the_past_refuses_what_gave_garbage(options, message):
    # NaN gave all -1 spins reported as coalesced; no doubling gave spins 0
    with pytest.raises(ValueError, match=message):
        ising_cftp(jax.random.key(0), (4, 4), **options)


def test_exchange_with_enumerated_auxiliary_draws_recovers_beta_of_a_4x4_lattice():
    ising = Ising(4)
    x = observed(ising, 5, jax.random.key(1))
    mean, sd = exact_posterior(ising, x, enumerated_log_z(ising))
    result = ne.sample(
        ising_beta_model(ising),
        "exchange",
        key=jax.random.key(2),
        model_args=(x,),
        num_chains=4,
        num_samples=3000,
        num_warmup=300,
    )
    assert_posterior(result, mean, sd)
    assert 0.2 < float(result.sample_stats.acceptance_rate.mean()) < 0.7


@pytest.mark.slow
def test_exchange_with_coupling_from_the_past_recovers_beta_of_a_6x6_lattice():
    """A Uniform(0, 0.4) prior keeps the chains above the critical temperature (0.44), where
    coupling from the past needs tens of sweeps (below it, thousands: such proposals would be
    rejected and counted)."""
    ising = Ising(6)
    x = observed(ising, 10, jax.random.key(3), beta=0.2)
    betas = np.linspace(1e-3, 0.4, 800)
    log_z = np.array([transfer_matrix_log_partition(6, 6, b) for b in betas])
    mean, sd = exact_posterior(ising, x, log_z, betas)
    result = ne.sample(
        ising_beta_model(ising, upper=0.4),
        "exchange",
        key=jax.random.key(4),
        model_args=(x,),
        num_chains=4,
        num_samples=1500,
        num_warmup=200,
    )
    assert_posterior(result, mean, sd)
    assert not result.sample_stats.auxiliary_failed.values.any()


@pytest.mark.slow
def test_approximate_exchange_with_gibbs_sweeps_is_close_to_the_exact_posterior():
    ising = Ising(4)
    x = observed(ising, 5, jax.random.key(1))
    mean, sd = exact_posterior(ising, x, enumerated_log_z(ising))
    sampler = ne.samplers.exchange(auxiliary=ne.samplers.gibbs(), auxiliary_steps=30)
    result = ne.sample(
        ising_beta_model(ising),
        sampler,
        key=jax.random.key(5),
        model_args=(x,),
        num_chains=4,
        num_samples=3000,
        num_warmup=300,
    )
    assert_posterior(result, mean, sd)


def gaussian_scale(n):
    """x_i ~ exp(-a x_i^2) / Z(a), Z(a) = sqrt(pi / a), n draws at a = 1.5: ``(data, model,
    mean, sd)`` with the posterior mean and sd of a under HalfNormal(2) by quadrature."""
    data = jnp.asarray(np.random.default_rng(0).normal(size=(n, 1)) / np.sqrt(2 * 1.5))

    def model(x):
        a = numpyro.sample("a", dist.HalfNormal(2.0))
        with numpyro.plate("n", x.shape[0]):
            numpyro.sample("x", ne.EnergyDistribution(lambda v: a * jnp.sum(v**2), (1,)), obs=x)

    grid = np.linspace(1e-3, 8.0, 4000)
    squares = float((np.asarray(data, np.float64) ** 2).sum())
    log_post = -(grid**2) / 8 - grid * squares + 0.5 * n * np.log(grid)
    weights = np.exp(log_post - logsumexp(log_post))
    mean = (weights * grid).sum()
    return data, model, mean, np.sqrt((weights * (grid - mean) ** 2).sum())


def test_approximate_exchange_infers_the_scale_of_a_continuous_energy():
    """The scale of observed Gaussian energies (gaussian_scale); auxiliary draws by 50 MALA steps
    from the observations."""
    data, model, mean, sd = gaussian_scale(20)
    sampler = ne.samplers.exchange(
        auxiliary=ne.samplers.mala(step_size=0.1), auxiliary_steps=50
    )
    result = ne.sample(
        model, sampler, key=jax.random.key(6), model_args=(data,), num_samples=3000, num_warmup=300
    )
    draws = result.posterior["a"].values
    mcse = float(az.summary(result, var_names=["a"], round_to="none")["mcse_mean"].iloc[0])
    assert abs(draws.mean() - mean) < 4 * mcse + 0.02 * mean, (draws.mean(), mean, mcse)
    assert abs(draws.std() / sd - 1) < 0.15


def test_what_the_exchange_algorithm_cannot_sample_is_refused_in_our_words():
    ising = Ising(4)
    x = observed(ising, 2, jax.random.key(1))
    with pytest.raises(ValueError, match=r"normalizer that depends on the latent site 'beta'.*"
                       r"ne.samplers.exchange"):
        ne.sample(ising_beta_model(ising), "nuts", key=jax.random.key(0), model_args=(x,))

    def continuous(x):
        a = numpyro.sample("a", dist.HalfNormal(1.0))
        numpyro.sample("x", ne.EnergyDistribution(lambda v: a * jnp.sum(v**2), (2,)), obs=x)

    with pytest.raises(ValueError, match="no exact sampler for the energy site 'x'"):
        ne.sample(continuous, "exchange", key=jax.random.key(0), model_args=(jnp.ones(2),))

    def latent_temperature():
        t = numpyro.sample("t", dist.LogNormal(0.0, 1.0))
        numpyro.sample("z", ne.EnergyDistribution(lambda z: jnp.sum(z**2), (2,), temperature=t))

    with pytest.raises(ValueError, match="the energy site 'z' is latent"):
        ne.sample(latent_temperature, "exchange", key=jax.random.key(0))
    with pytest.raises(ValueError, match="auxiliary must be 'exact' or one of"):
        ne.samplers.exchange(auxiliary="nuts")
    with pytest.raises(ValueError, match="its auxiliary sampler must be one of"):
        ne.sample(
            ising_beta_model(ising),
            ne.samplers.exchange(auxiliary="mala"),
            key=jax.random.key(0),
            model_args=(x,),
        )


def test_a_normalizer_that_depends_on_a_discrete_latent_is_refused_by_hmc_gibbs():
    ising = Ising(4)

    def model(x):
        d = numpyro.sample("d", dist.Bernoulli(0.5))
        site = ne.DiscreteEnergyDistribution(ising.energy, (4, 4), temperature=1.0 + d)
        numpyro.sample("x", site, obs=x)

    x = observed(ising, 1, jax.random.key(1))[0]
    with pytest.raises(ValueError, match="normalizer that depends on the latent site 'd'"):
        ne.sample(model, "hmc_gibbs", key=jax.random.key(0), model_args=(x,))
    with pytest.raises(ValueError, match="exchange algorithm moves continuous latent sites only"):
        ne.sample(model, "exchange", key=jax.random.key(0), model_args=(x,))
