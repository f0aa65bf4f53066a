"""Gibbs within HMC (ne.samplers.hmc_gibbs) on NumPyro models with discrete latent sites,
checked against exact posteriors: enumeration of the discrete sites times quadrature over the
continuous one. Tolerances: posterior means within 4 Monte Carlo standard errors (ArviZ's
mcse_mean of the run), marginal probabilities of the discrete sites within 0.03, which is
at least 5 standard errors of a marginal at the runs' effective sample sizes (> 3000)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm.models.ising import Ising
from numpyro_ebm.models.rbm import BernoulliRBM

BETA = 0.25


def noisy_image(L):
    return jnp.asarray(np.random.default_rng(L).normal(size=(L, L)) * 1.2, jnp.float32)


def denoising_model(L):
    """Ising-prior denoising with an unknown noise level (Geman & Geman 1984), L x L."""
    ising = Ising(L)

    def denoising(y):
        prior = ne.DiscreteEnergyDistribution(ising.energy, (L, L), "pm1", temperature=1 / BETA)
        s = numpyro.sample("s", prior)
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(s, sigma).to_event(2), obs=y)

    return denoising


Y = noisy_image(3)
denoising = denoising_model(3)


def exact_denoising(L):
    """Posterior mean of sigma and P(s_i = +1), by enumerating the 2^(L^2) configurations and a
    quadrature over sigma (chunks of the grid, to bound memory)."""
    ising = Ising(L)
    states = np.asarray(ne.DiscreteEnergyDistribution(ising.energy, (L, L)).enumerate_support())
    states = states.reshape(len(states), -1)
    energy = np.asarray(jax.vmap(ising.energy)(states.reshape(-1, L, L)), np.float64) * BETA
    squares = ((np.asarray(noisy_image(L), np.float64).ravel() - states) ** 2).sum(1)
    sigma = np.linspace(2e-3, 6.0, 1500)

    def log_post(part):
        return (
            -energy[:, None]
            - part[None] ** 2 / 2
            - L * L * np.log(part)[None]
            - squares[:, None] / (2 * part[None] ** 2)
        )

    parts = np.array_split(sigma, 30)
    top = max(log_post(part).max() for part in parts)
    by_sigma, by_state = [], np.zeros(len(states))
    for part in parts:
        weights = np.exp(log_post(part) - top)
        by_sigma.append(weights.sum(0))
        by_state += weights.sum(1)
    by_sigma = np.concatenate(by_sigma)
    total = by_sigma.sum()
    return (by_sigma * sigma).sum() / total, (by_state / total) @ (states > 0)


def mixture(y):
    """Bits beside a continuous site: which of six points come from the shifted component."""
    p = numpyro.sample("p", dist.Beta(2.0, 2.0))
    with numpyro.plate("points", 6):
        z = numpyro.sample("z", dist.Bernoulli(p))
        numpyro.sample("y", dist.Normal(2.0 * z, 1.0), obs=y)


Y_MIXTURE = jnp.asarray([-0.5, 0.3, 1.0, 1.2, 2.1, 2.8])


def exact_mixture():
    bits = ((np.arange(64)[:, None] >> np.arange(6)) & 1).astype(np.float64)
    p = np.linspace(1e-5, 1 - 1e-5, 20001)
    k = bits.sum(1)
    y = np.asarray(Y_MIXTURE, np.float64)
    log_lik = -0.5 * ((y[None] - 2.0 * bits) ** 2).sum(1)
    log_post = (
        log_lik[:, None]
        + (1 + k[:, None]) * np.log(p[None])
        + (1 + 6 - k[:, None]) * np.log(1 - p[None])
    )
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    return (weights.sum(0) * p).sum(), weights.sum(1) @ bits


RBM = BernoulliRBM(6, 3)
RBM_PARAMS = RBM.init(jax.random.key(5), scale=1.0)
Y_RBM = jnp.asarray([0.9, -0.2, 1.4, 0.1, 0.6, -0.4])


def rbm_prior(y):
    """An RBM prior on six bits observed with unknown Gaussian noise."""
    energy = ne.BoundEnergy(RBM.free_energy, RBM_PARAMS)
    v = numpyro.sample("v", ne.DiscreteEnergyDistribution(energy, (6,), support="01"))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(v, sigma).to_event(1), obs=y)


def exact_rbm_prior():
    bits = ((np.arange(64)[:, None] >> np.arange(6)) & 1).astype(np.float64)
    free = np.asarray(jax.vmap(lambda v: RBM.free_energy(RBM_PARAMS, v))(bits), np.float64)
    squares = ((np.asarray(Y_RBM, np.float64)[None] - bits) ** 2).sum(1)
    sigma = np.linspace(2e-3, 6.0, 20000)
    log_post = (
        -free[:, None]
        - sigma[None] ** 2 / 2
        - 6 * np.log(sigma)[None]
        - squares[:, None] / (2 * sigma[None] ** 2)
    )
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    return (weights.sum(0) * sigma).sum(), weights.sum(1) @ bits


def assert_matches(result, site, exact_mean, marginal_site, exact_marginal, high=1.0):
    summary = az.summary(result, var_names=[site], kind="diagnostics", round_to="none")
    draws = result.posterior[site].values
    mcse = float(summary["mcse_mean"].iloc[0])
    assert abs(draws.mean() - exact_mean) < 4 * mcse, (draws.mean(), exact_mean, mcse)
    marginal = (result.posterior[marginal_site].values == high).mean((0, 1)).ravel()
    np.testing.assert_allclose(marginal, exact_marginal, atol=0.03)
    assert float(az.rhat(result)[site]) < 1.01


@pytest.mark.parametrize(
    ("L", "discrete"),
    [
        (3, "gibbs"),
        (4, ne.samplers.checkerboard(flip_ratio="curvature")),
        pytest.param(4, "swendsen_wang", marks=pytest.mark.slow),
    ],
    ids=["gibbs-3x3", "checkerboard-4x4", "swendsen_wang-4x4"],
)
def test_gibbs_within_nuts_recovers_the_ising_denoising_posterior(L, discrete):
    sigma_mean, spin_marginals = exact_denoising(L)
    result = ne.sample(
        denoising_model(L),
        ne.samplers.hmc_gibbs(discrete=discrete, continuous="nuts"),
        key=jax.random.key(0),
        model_args=(noisy_image(L),),
        num_chains=4,
        num_samples=4000,
        num_warmup=500,
    )
    assert_matches(result, "sigma", sigma_mean, "s", spin_marginals)
    assert set(result.posterior.data_vars) == {"s", "sigma"}
    stats = result.sample_stats
    assert float(stats.discrete_acceptance_rate.min()) == 1.0  # heat-bath sweeps
    assert 0.6 < float(stats.acceptance_rate.mean()) < 0.99  # tuned towards 0.8


def test_block_gibbs_within_nuts_recovers_a_posterior_under_an_rbm_prior():
    sigma_mean, marginals = exact_rbm_prior()
    result = ne.sample(
        rbm_prior,
        ne.samplers.hmc_gibbs(discrete="block_gibbs"),
        key=jax.random.key(4),
        model_args=(Y_RBM,),
        num_chains=4,
        num_samples=4000,
        num_warmup=500,
    )
    assert_matches(result, "sigma", sigma_mean, "v", marginals)


def test_block_gibbs_within_hmc_refuses_terms_that_couple_visible_units():
    def coupled(y):
        energy = ne.BoundEnergy(RBM.free_energy, RBM_PARAMS)
        v = numpyro.sample("v", ne.DiscreteEnergyDistribution(energy, (6,), support="01"))
        numpyro.factor("pair", v[0] * v[1])
        numpyro.sample("y", dist.Normal(v, 1.0).to_event(1), obs=y)

    with pytest.raises(ValueError, match="couples visible unit"):
        ne.sample(coupled, ne.samplers.hmc_gibbs(discrete="block_gibbs"),
                  key=jax.random.key(0), model_args=(Y_RBM,))


def test_gibbs_with_gradients_within_mala_recovers_a_mixture_of_bits():
    p_mean, z_marginals = exact_mixture()
    sampler = ne.samplers.hmc_gibbs(discrete="gibbs_with_gradients", continuous="mala")
    result = ne.sample(
        mixture,
        sampler,
        key=jax.random.key(1),
        model_args=(Y_MIXTURE,),
        num_chains=4,
        num_samples=4000,
        num_warmup=500,
    )
    assert_matches(result, "p", p_mean, "z", z_marginals)
    assert set(np.unique(result.posterior["z"].values)) == {0.0, 1.0}


def test_the_numpyro_kernel_samples_the_same_posterior():
    sigma_mean, spin_marginals = exact_denoising(3)
    kernel = ne.infer.SamplerKernel(ne.samplers.hmc_gibbs(), model=denoising)
    mcmc = MCMC(
        kernel,
        num_warmup=500,
        num_samples=4000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), Y)
    result = az.from_numpyro(mcmc)
    assert_matches(result, "sigma", sigma_mean, "s", spin_marginals)


def test_resume_continues_gibbs_within_hmc_as_one_longer_run():
    short = dict(model_args=(Y,), num_chains=2, num_warmup=50)
    first = ne.sample(denoising, "hmc_gibbs", key=jax.random.key(3), num_samples=30, **short)
    longer = ne.sample(denoising, "hmc_gibbs", key=jax.random.key(3), num_samples=60, **short)
    more = ne.sample(
        denoising, "hmc_gibbs", resume=first, num_samples=30, model_args=(Y,), num_chains=2
    )
    for site in ("s", "sigma"):
        np.testing.assert_allclose(
            more.posterior[site].values, longer.posterior[site].values[:, 30:], rtol=1e-5
        )


@pytest.mark.slow
def test_compare_ranks_mixed_samplers_on_one_model():
    comparison = ne.compare(
        denoising,
        [ne.samplers.hmc_gibbs(), ne.samplers.hmc_gibbs(continuous="mala")],
        key=jax.random.key(4),
        model_args=(Y,),
        num_samples=300,
        num_warmup=200,
    )
    assert len(comparison.table) == 2
    assert np.isfinite(comparison.table["ess_per_s"]).all()


def test_models_with_discrete_sites_are_refused_by_gradient_samplers_in_our_words():
    with pytest.raises(ValueError, match=r"discrete latent site \('s'\) of spins.*hmc_gibbs"):
        ne.sample(denoising, "nuts", key=jax.random.key(0), model_args=(Y,))
    with pytest.raises(ValueError, match=r"discrete latent site \('s'\).*hmc_gibbs"):
        ne.logdensity_from_model(denoising, Y, key=jax.random.key(0))

    def categorical():
        numpyro.sample("c", dist.Categorical(probs=jnp.ones(3) / 3))

    with pytest.raises(ValueError, match=r"site \('c'.*neither bits nor spins"):
        ne.sample(categorical, "hmc_gibbs", key=jax.random.key(0))
    with pytest.raises(ValueError, match="discrete must be one of"):
        ne.samplers.hmc_gibbs(discrete="nuts")
    with pytest.raises(ValueError, match="block_gibbs moves the discrete site 's' only as"):
        ne.sample(denoising, ne.samplers.hmc_gibbs(discrete="block_gibbs"),
                  key=jax.random.key(0), model_args=(Y,))
    with pytest.raises(ValueError, match="continuous must be one of"):
        ne.samplers.hmc_gibbs(continuous="ula")

    def continuous_only():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"not a model target.*no discrete latent site"):
        ne.sample(continuous_only, "hmc_gibbs", key=jax.random.key(0))


def test_checkerboard_within_hmc_needs_curvature_for_a_gaussian_likelihood():
    with pytest.raises(ValueError, match=r"not affine in site.*flip_ratio='curvature'"):
        ne.sample(
            denoising_model(4),
            ne.samplers.hmc_gibbs(discrete="checkerboard"),
            key=jax.random.key(0),
            model_args=(noisy_image(4),),
        )


@pytest.mark.parametrize(
    ("discrete", "module", "check", "model", "data"),
    [
        (
            ne.samplers.checkerboard(flip_ratio="curvature"),
            "checkerboard",
            "check_sublattices",
            denoising_model(4),
            noisy_image(4),
        ),
        (
            "swendsen_wang",
            "swendsen_wang",
            "check_ising_in_a_field",
            denoising_model(4),
            noisy_image(4),
        ),
        ("block_gibbs", "block_gibbs", "_unit_terms_check", rbm_prior, Y_RBM),
    ],
    ids=["checkerboard", "swendsen_wang", "block_gibbs"],
)
def test_the_structure_of_a_discrete_move_is_checked_once_not_in_each_transition(
    monkeypatch, discrete, module, check, model, data
):
    """A discrete move's structure test runs on the first chain's start only: inside the
    traced transitions (warm-up and draws) the kernel is built again without it."""
    import importlib

    from numpyro_ebm._checks import structure_checks_skipped

    kernels = importlib.import_module(f"numpyro_ebm.kernels.{module}")
    original, calls = getattr(kernels, check), []

    def counted(*args, **kwargs):
        calls.append(structure_checks_skipped())
        return original(*args, **kwargs)

    monkeypatch.setattr(kernels, check, counted)
    sampler = ne.samplers.hmc_gibbs(discrete=discrete, continuous="mala")
    ne.sample(model, sampler, key=jax.random.key(0), model_args=(data,), num_chains=2,
              num_warmup=5, num_samples=5)
    assert calls.count(False) == 1 and calls.count(True) >= 1, calls
