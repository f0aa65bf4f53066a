"""ChEES-HMC, MEADS and MCLMC (ne.samplers.chees_hmc, meads, mclmc): moments of a correlated
Gaussian within 4 Monte Carlo standard errors; posteriordb's gold standards (eight schools,
kidiq, arK) with every reference mean within 0.1 reference sd (posteriordb's standardized
error, slow); NumPyro's MCMC with vectorized chains tuned across chains, resume= and the
refusals."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC
from stats import assert_covariance_close, assert_mean_close

import numpyro_ebm as ne

COV = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 4.0]])
PRECISION = jnp.asarray(np.linalg.inv(COV), jnp.float32)
SAMPLERS = ["chees_hmc", "meads", "mclmc"]
DATA = Path(__file__).parent / "data"


def energy(x):
    return 0.5 * x @ PRECISION @ x


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_adaptive_samplers_match_the_moments_of_a_correlated_gaussian(sampler):
    idata = ne.sample(
        energy,
        sampler,
        key=jax.random.key(0),
        event_shape=(3,),
        num_chains=16,
        num_samples=1000,
        num_warmup=500,
    )
    draws = idata.posterior["x"].values
    assert_mean_close(draws, np.zeros(3))
    assert_covariance_close(draws, np.zeros(3), COV)


def eight_schools(J, y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", J):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample(
            "y", dist.Normal(mu + tau * theta_trans, jnp.asarray(sigma)), obs=jnp.asarray(y)
        )


def kidiq(N, kid_score, mom_hs, mom_iq, **unused):
    beta = numpyro.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (3,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    mu = beta[0] + beta[1] * jnp.asarray(mom_hs) + beta[2] * jnp.asarray(mom_iq)
    numpyro.sample("kid_score", dist.Normal(mu, sigma).to_event(1), obs=jnp.asarray(kid_score))


def ark(K, T, y):
    y = jnp.asarray(y)
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    lags = jnp.stack([y[K - k - 1 : T - k - 1] for k in range(K)], axis=1)
    numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma).to_event(1), obs=y[K:])


POSTERIORS = {
    "eight_schools-eight_schools_noncentered": eight_schools,
    "kidiq-kidscore_momhsiq": kidiq,
    "arK-arK": ark,
}


#: Every (posterior, sampler) pair reaches posteriordb's gold standard in 1000 warm-up steps of
#: 16 chains, from draws of Laplace approximations (ChEES-HMC), in their whitened coordinates
#: (MEADS, MCLMC). From NumPyro's uniform starts every sampler froze on kidiq, whose start lies
#: 1e7 nats out; without the whitening MEADS and MCLMC did not mix on kidiq (R-hat about 10 and
#: 1.33) and MEADS not on arK (1.12).
REACHED = [
    (posterior, sampler)
    for posterior in POSTERIORS
    for sampler in ("chees_hmc", "meads", "mclmc")
]


def gold_standard_run(posterior, sampler):
    spec = json.loads((DATA / f"{posterior}.json").read_text())
    idata = ne.sample(
        POSTERIORS[posterior],
        sampler,
        key=jax.random.key(1),
        model_kwargs=spec["data"],
        num_chains=16,
        num_samples=1000,
        num_warmup=1000,
    )
    errors = {}
    for name, ref in spec["reference"].items():
        base, _, index = name.partition("[")
        draws = idata.posterior[base].values
        if index:
            draws = draws[..., int(index[:-1]) - 1]
        errors[name] = abs(draws.mean() - ref["mean"]) / ref["sd"]
    return idata, errors


@pytest.mark.slow
@pytest.mark.parametrize(("posterior", "sampler"), REACHED)
def test_adaptive_samplers_reproduce_the_posteriordb_gold_standards(posterior, sampler):
    idata, errors = gold_standard_run(posterior, sampler)
    assert max(errors.values()) < 0.1, (posterior, sampler, errors)
    # max R-hat measured at these 1000 draws (key 1): MEADS 1.02-1.06, MCLMC 1.002-1.013,
    # ChEES 1.003: MEADS mixes slower than NUTS here, but mixes
    assert float(ne.mixing_report(idata, display=False).table["rhat"].max()) < 1.1


def correlated():
    numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(3), jnp.asarray(COV, jnp.float32)))


@pytest.mark.parametrize("sampler", ["chees_hmc", "meads"])
def test_numpyro_mcmc_tunes_vectorized_chains_across_chains(sampler):
    kernel = ne.infer.SamplerKernel(ne.samplers.get_sampler(sampler), model=correlated)
    mcmc = MCMC(
        kernel,
        num_warmup=300,
        num_samples=500,
        num_chains=16,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2))
    state = mcmc.last_state
    # one set of tuned parameters, shared by every chain
    assert np.ptp(np.asarray(state.parameters["step_size"])) == 0
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    assert_mean_close(draws, np.zeros(3))
    assert_covariance_close(draws, np.zeros(3), COV)


def test_resume_continues_a_run_tuned_across_chains():
    run = dict(event_shape=(3,), num_chains=8)
    whole = ne.sample(
        energy, "chees_hmc", key=jax.random.key(3), num_samples=40, num_warmup=100, **run
    )
    first = ne.sample(
        energy, "chees_hmc", key=jax.random.key(3), num_samples=20, num_warmup=100, **run
    )
    second = ne.sample(energy, "chees_hmc", num_samples=20, resume=first, **run)
    np.testing.assert_allclose(
        second.posterior["x"].values, whole.posterior["x"].values[:, 20:], rtol=1e-5, atol=1e-6
    )


def test_what_the_adaptive_samplers_cannot_run_is_refused_in_our_words():
    with pytest.raises(ValueError, match="num_chains must be a multiple of num_folds=4"):
        ne.sample(energy, "meads", key=jax.random.key(0), event_shape=(3,), num_chains=4)
    with pytest.raises(ValueError, match=r"mclmc moves on the unit sphere.*needs at least 2"):
        ne.sample(lambda x: jnp.sum(x**2), "mclmc", key=jax.random.key(0), event_shape=(1,))
    with pytest.raises(ValueError, match="learning_rate"):
        ne.samplers.chees_hmc(learning_rate=0.0)
