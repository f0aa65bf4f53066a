"""sample(): every sampler against known answers, with tolerances from Monte Carlo error."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import multivariate_normal, norm
from scipy.stats import t as student_t
from stats import assert_mean_close, mcse_mean

import numpyro_ebm as ne
from numpyro_ebm.evidence.references import Gaussian

DIM = 10
_A = np.random.default_rng(7).normal(size=(DIM, DIM))
COV = _A @ _A.T / DIM + 0.3 * np.eye(DIM)
MEAN = np.linspace(-1.0, 1.0, DIM)
PRECISION = np.linalg.inv(COV)


def gaussian_energy(x):
    d = x - MEAN
    return 0.5 * d @ PRECISION @ d


def assert_moments(draws, mean, cov, z=4.0):
    """Means and variances within ``z`` MCSE (variances: MCSE of the squared deviations)."""
    assert_mean_close(draws, mean, z)
    assert_mean_close((np.asarray(draws) - mean) ** 2, np.diag(cov), z)


# Each chain is an independent replicate, so the standard error of a mean over all draws is
# that of the CHAINS' means: sd(chain means) / sqrt(chains), Student-t with chains - 1 degrees
# of freedom, whatever the autocorrelation within a chain. An ESS-based MCSE is not: HMC with
# a fixed path length on a Gaussian is antithetic in x and slow in x^2 (per-chain ESS of some
# x_i^2 about 35 in 2000 draws, lag-1 autocorrelation of x_i -0.3 to -0.5), and its ESS
# estimate then misleads (one mean 4.8 "MCSE" off, 2026-12-06). The test makes 5 samplers x
# (10 means + 10 second moments) = 100 comparisons; each two-sided at 1e-3 / 100 (Bonferroni)
# gives |t_31| < 5.27 and a false failure of the whole test with probability <= 1e-3 while the
# chain means are close to normal. Draws per chain are set where that needs them: HMC's slow
# x^2 (2000), MALA and tempering (500). Measured (2026-12-06, CPU, these draws): the largest
# |t| over keys was 4.1 (HMC, 60 keys), 3.9 (NUTS and parallel tempering, 30 keys each), 3.6
# (MALA, 30 keys) and 2.7 (numpyro_nuts, 3 keys).
NUM_CHAINS = 32
COMPARISONS = 5 * 2 * DIM
T_CRITICAL = float(student_t.isf(1e-3 / (2 * COMPARISONS), NUM_CHAINS - 1))


def assert_chain_means_close(quantity, truth):
    """Each component's mean over all draws is within ``T_CRITICAL`` standard errors of
    ``truth``, the standard error from the spread of the chains' means."""
    chain_means = np.asarray(quantity, np.float64).mean(axis=1)
    error = chain_means.mean(axis=0) - truth
    t = error / (chain_means.std(axis=0, ddof=1) / np.sqrt(chain_means.shape[0]))
    assert np.all(np.abs(t) < T_CRITICAL), f"t = {t} (|t| must stay below {T_CRITICAL:.2f})"


@pytest.mark.parametrize(
    "sampler,options,num_samples",
    [
        ("nuts", {}, 250),
        ("hmc", {"num_integration_steps": 10}, 2000),
        ("mala", {}, 500),
        ("parallel_tempering", {"num_replicas": 3, "max_temperature": 4.0}, 500),
        ("numpyro_nuts", {}, 250),
    ],
)
def test_samplers_recover_a_correlated_gaussian(sampler, options, num_samples):
    idata = ne.sample(
        gaussian_energy,
        sampler,
        key=jax.random.key(0),
        event_shape=(DIM,),
        num_chains=NUM_CHAINS,
        num_samples=num_samples,
        num_warmup=500,
        **options,
    )
    draws = idata.posterior["x"].values
    assert draws.shape == (NUM_CHAINS, num_samples, DIM)
    assert_chain_means_close(draws, MEAN)
    assert_chain_means_close((draws - MEAN) ** 2, np.diag(COV))
    stats = idata.sample_stats
    assert not stats.nonfinite.values.any()
    assert 0.3 < float(stats.acceptance_rate.mean()) <= 1.0
    assert (stats.num_grad_evals.values >= 1).all()
    np.testing.assert_allclose(
        stats.potential_energy.values,
        jax.vmap(jax.vmap(gaussian_energy))(draws),
        rtol=1e-3,
        atol=1e-3,
    )


def test_sgld_with_constant_step_targets_its_known_biased_gaussian():
    # constant-step SGLD with exact gradients is ULA; for a Gaussian its stationary law is
    # N(mu, (P - h P^2 / 4)^{-1}) exactly.
    h = 0.05
    idata = ne.sample(
        gaussian_energy,
        "sgld",
        key=jax.random.key(1),
        event_shape=(DIM,),
        num_chains=64,
        num_samples=400,
        num_warmup=2000,
        thinning=5,
        step_size=h,
        schedule="constant",
    )
    biased_cov = np.linalg.inv(PRECISION - h * PRECISION @ PRECISION / 4)
    assert_moments(idata.posterior["x"].values, MEAN, biased_cov)
    assert (idata.sample_stats.num_grad_evals.values == 5).all()


def test_sgld_schedules_decay_as_documented():
    idata = ne.sample(
        gaussian_energy,
        "sgld",
        key=jax.random.key(2),
        event_shape=(DIM,),
        num_chains=2,
        num_samples=8,
        num_warmup=0,
        step_size=0.1,
        schedule="inverse_cube_root",
    )
    t = np.arange(1, 9)
    np.testing.assert_allclose(idata.sample_stats.step_size.values[0], 0.1 / np.cbrt(t), 1e-6)


def noise_conditional_gaussian(x, sigma):
    d = x - MEAN
    return 0.5 * d @ jnp.linalg.solve(COV + sigma**2 * jnp.eye(DIM), d)


def test_annealed_langevin_with_metropolis_matches_the_last_noise_level():
    sigmas = np.geomspace(3.0, 0.3, 8)
    idata = ne.sample(
        noise_conditional_gaussian,
        "annealed_langevin",
        key=jax.random.key(3),
        event_shape=(DIM,),
        init_scale=3.0,
        num_chains=256,
        num_samples=8,
        num_warmup=1,
        sigmas=sigmas,
        step_size=0.05,
        num_steps_per_level=30,
        metropolis=True,
        denoise=False,
    )
    draws = idata.posterior["x"].values
    assert_moments(draws, MEAN, COV + sigmas[-1] ** 2 * np.eye(DIM))
    assert 0.5 < float(idata.sample_stats.acceptance_rate.mean()) < 1.0


@pytest.mark.slow
def test_tempered_smc_particles_match_the_gaussian():
    idata = ne.sample(
        gaussian_energy,
        "tempered_smc",
        key=jax.random.key(4),
        event_shape=(DIM,),
        num_chains=8,
        num_samples=1000,
        num_mcmc_steps=10,
    )
    draws = idata.posterior["x"].values
    # runs are independent: the standard error of a mean is the spread of the run means
    for values, truth in ((draws, MEAN), ((draws - MEAN) ** 2, np.diag(COV))):
        run_means = values.mean(axis=1)
        error = np.abs(run_means.mean(0) - truth)
        assert np.all(error < 5.0 * run_means.std(0, ddof=1) / np.sqrt(8)), error


# --- two well-separated modes with unequal weights ---------------------------------------

WEIGHTS = np.array([0.8, 0.2])
CENTRES = np.array([[5.0, 0.0], [-5.0, 0.0]])
SD = 0.5


def mixture_energy(x, sigma=0.0):
    scale = jnp.sqrt(SD**2 + sigma**2)
    logs = jnp.log(WEIGHTS) + jnp.sum(norm.logpdf(x, CENTRES, scale), axis=-1)
    return -logsumexp(logs)


def major_mode_weight(idata):
    """Per-chain fraction of draws in the heavier mode; chains are independent."""
    per_chain = (idata.posterior["x"].values[..., 0] > 0).mean(axis=1)
    return per_chain.mean(), per_chain.std(ddof=1) / np.sqrt(per_chain.size)


def test_parallel_tempering_recovers_mode_weights_where_mala_cannot():
    start = jnp.broadcast_to(jnp.array([-5.0, 0.0]), (256, 2))  # all in the light mode
    common = dict(
        key=jax.random.key(5), init_position=start, num_chains=256, num_warmup=300, num_samples=300
    )
    pt = ne.sample(
        mixture_energy, "parallel_tempering", num_replicas=8, max_temperature=50.0, **common
    )
    weight, se = major_mode_weight(pt)
    assert abs(weight - 0.8) < 4 * se + 1e-3, (weight, se)
    swaps = pt.sample_stats.swap_acceptance.values
    assert 0.05 < np.nanmean(swaps) < 1.0
    mala = ne.sample(mixture_energy, "mala", **common)
    weight, _ = major_mode_weight(mala)
    assert weight < 0.05  # a single-temperature chain never leaves its mode


def test_tempered_smc_recovers_mode_weights_and_log_normalizer():
    offset = 3.0  # E = -log p + offset, so log Z = -offset exactly
    idata = ne.sample(
        lambda x: mixture_energy(x) + offset,
        "tempered_smc",
        key=jax.random.key(6),
        event_shape=(2,),
        num_chains=8,
        num_samples=2000,
        # a reference as broad as both modes (a Laplace fit would sit at one)
        reference=Gaussian(jnp.zeros(2), jnp.full(2, 6.0)),
        num_mcmc_steps=20,
    )
    per_run = (idata.posterior["x"].values[..., 0] > 0).mean(axis=1)
    se = per_run.std(ddof=1) / np.sqrt(per_run.size)
    assert abs(per_run.mean() - 0.8) < 4 * se + 0.01, (per_run, se)
    attrs = idata.sample_stats.attrs
    assert abs(attrs["log_normalizer"] - (-offset)) < 0.1, attrs
    assert 0 < attrs["log_normalizer_mcse"] < 0.1
    runs = idata.sample_stats.log_normalizer.values[:, 0]
    assert runs.shape == (8,) and np.all(np.isfinite(runs))


def test_annealed_langevin_recovers_mode_weights():
    sigmas = np.geomspace(8.0, 0.05, 10)
    idata = ne.sample(
        mixture_energy,
        "annealed_langevin",
        key=jax.random.key(7),
        event_shape=(2,),
        init_scale=8.0,
        num_chains=2000,
        num_samples=1,
        num_warmup=0,
        sigmas=sigmas,
        step_size=2e-3,
        num_steps_per_level=50,
    )
    weight, _ = major_mode_weight(idata)  # one draw per chain: binomial standard error
    assert abs(weight - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 2000), weight


# --- NumPyro models ----------------------------------------------------------------------

REFERENCE = json.loads(
    (Path(__file__).parent / "data" / "eight_schools-eight_schools_noncentered.json").read_text()
)


def eight_schools(J, sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", J):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(mu + tau * theta_trans, sigma), obs=y)


@pytest.mark.parametrize("sampler", ["nuts", "numpyro_nuts"])
@pytest.mark.slow
def test_eight_schools_matches_posteriordb_reference(sampler):
    data = REFERENCE["data"]
    idata = ne.sample(
        eight_schools,
        sampler,
        key=jax.random.key(8),
        num_chains=4,
        num_samples=1000,
        num_warmup=500,
        model_args=(data["J"], np.array(data["sigma"], float)),
        model_kwargs={"y": np.array(data["y"], float)},
    )
    posterior = idata.posterior
    assert set(posterior.data_vars) == {"mu", "tau", "theta_trans", "theta"}
    assert (posterior.tau.values > 0).all()
    for name, ref in REFERENCE["reference"].items():
        base, _, index = name.partition("[")
        draws = posterior[base].values
        if index:
            draws = draws[..., int(index[:-1]) - 1]
        tolerance = 4 * np.hypot(mcse_mean(draws), ref["mcse_mean"])
        assert abs(draws.mean() - ref["mean"]) < tolerance, (name, draws.mean(), ref["mean"])


# --- contract: reproducibility, flags and bad input --------------------------------------


def test_results_are_a_function_of_the_key():
    run = lambda k: (
        ne.sample(
            gaussian_energy,
            "mala",
            key=jax.random.key(k),
            event_shape=(DIM,),
            num_chains=2,
            num_samples=50,
            num_warmup=20,
        )
        .posterior["x"]
        .values
    )
    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_progress_bar_chunks_do_not_change_the_draws():
    args = dict(
        key=jax.random.key(9), event_shape=(DIM,), num_chains=2, num_samples=250, num_warmup=20
    )
    quiet = ne.sample(gaussian_energy, "mala", **args).posterior["x"].values
    shown = ne.sample(gaussian_energy, "mala", progress=True, **args).posterior["x"].values
    np.testing.assert_array_equal(quiet, shown)


def test_a_diverging_chain_is_flagged_and_reported():
    def explosive(x):  # ULA with a large step on a steep quartic blows up
        return jnp.sum(x**4)

    with pytest.warns(RuntimeWarning, match=r"chain\(s\) reached a non-finite"):
        idata = ne.sample(
            explosive,
            "sgld",
            key=jax.random.key(10),
            event_shape=(2,),
            num_chains=3,
            num_samples=20,
            num_warmup=0,
            step_size=1.0,
            schedule="constant",
            init_scale=5.0,
        )
    assert idata.sample_stats.nonfinite.values.any(axis=1).all()


def test_unknown_sampler_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown sampler 'gibs'.*'nuts'"):
        ne.sample(gaussian_energy, "gibs", key=jax.random.key(0), event_shape=(DIM,))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_chains": 0}, "num_chains"),
        ({"num_samples": 0}, "num_samples"),
        ({"thinning": 0}, "thinning"),
        ({"temperature": 0.0}, "temperature"),
        ({"sampler": "mala", "step_size": -0.1}, "step_size"),
        ({"sampler": "sgld", "step_size": 0.0}, "step_size"),
        ({"sampler": "sgld", "schedule": "cosine"}, "schedule"),
        ({"sampler": "parallel_tempering", "temperatures": [1.0, 0.5]}, "temperatures"),
        ({"sampler": "parallel_tempering", "temperatures": [2.0, 3.0]}, "temperatures"),
        ({"sampler": "annealed_langevin", "sigmas": [0.1, 1.0]}, "sigmas"),
        ({"sampler": "annealed_langevin"}, "sigmas"),
        ({"sampler": "tempered_smc", "mutation": "gibbs"}, "mutation"),
        ({"sampler": "mala", "bogus": 1}, "bogus"),
    ],
)
def test_bad_input_is_rejected_with_its_name(kwargs, match):
    kwargs = {"sampler": "nuts", **kwargs}
    sampler = kwargs.pop("sampler")
    with pytest.raises((ValueError, TypeError), match=match):
        ne.sample(
            gaussian_energy,
            sampler,
            key=jax.random.key(0),
            event_shape=(DIM,),
            num_samples=kwargs.pop("num_samples", 5),
            num_warmup=2,
            **kwargs,
        )


def test_bad_initial_positions_are_rejected():
    with pytest.raises(ValueError, match="init_position"):
        ne.sample(
            gaussian_energy, "mala", key=jax.random.key(0), init_position=jnp.full(DIM, jnp.nan)
        )
    with pytest.raises(ValueError, match="num_chains=4"):
        ne.sample(
            gaussian_energy,
            "mala",
            key=jax.random.key(0),
            event_shape=(DIM,),
            init_position=jnp.zeros((3, DIM)),
        )
    with pytest.raises(ValueError, match="energy at init_position"):
        ne.sample(
            lambda x: jnp.sum(jnp.log(x)),
            "mala",
            key=jax.random.key(0),
            init_position=-jnp.ones((4, DIM)),
        )
    with pytest.raises(TypeError, match="must return a scalar"):
        ne.sample(lambda x: x, "mala", key=jax.random.key(0), event_shape=(DIM,))


def test_multivariate_normal_log_density_reported_as_potential():
    # a check of the sign convention: potential_energy = E(x) = -log p(x) + const
    idata = ne.sample(
        gaussian_energy,
        "nuts",
        key=jax.random.key(11),
        event_shape=(DIM,),
        num_chains=2,
        num_samples=20,
        num_warmup=50,
    )
    x = idata.posterior["x"].values
    logp = multivariate_normal.logpdf(x, MEAN, COV)
    difference = idata.sample_stats.potential_energy.values + logp
    np.testing.assert_allclose(difference, np.ravel(difference)[0], atol=1e-3)


def subsampled_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("N", y.shape[0], subsample_size=50):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=numpyro.subsample(y, event_dim=0))


@pytest.mark.slow
def test_sgld_with_minibatches_recovers_the_posterior_mean():
    # conjugate: mu | y ~ N(v * sum(y), v), v = 1 / (1/100 + N); a linear gradient makes the
    # minibatch noise mean-zero, so the mean is unbiased (the spread is inflated by the noise)
    y = np.random.default_rng(0).normal(1.5, 1.0, size=1000)
    idata = ne.sample(
        subsampled_model,
        "sgld",
        key=jax.random.key(12),
        model_args=(y,),
        num_chains=16,
        num_samples=500,
        num_warmup=500,
        thinning=4,
        step_size=5e-4,
        schedule="constant",
    )
    variance = 1.0 / (1.0 / 100 + y.size)
    assert_mean_close(idata.posterior["mu"].values[..., None], [variance * y.sum()])


def test_exact_samplers_refuse_a_subsampled_model():
    y = np.zeros(100)
    with pytest.raises(ValueError, match=r"subsamples its data.*'sgld'"):
        ne.sample(subsampled_model, "nuts", key=jax.random.key(0), model_args=(y,))
    with pytest.raises(ValueError, match=r"plate 'N' draws subsample_size=50 of 100"):
        ne.logdensity_from_model(subsampled_model, y, key=jax.random.key(0))


def _gaussian_energy(x):
    return 0.5 * jnp.sum(x**2)


@pytest.mark.slow
def test_until_stops_when_mixed_and_reports_why():
    until = ne.Until(rhat=1.01, ess_bulk=400.0, block=50)
    idata = ne.sample(
        _gaussian_energy,
        "mala",
        key=jax.random.key(0),
        event_shape=(3,),
        num_chains=8,
        num_samples=2000,
        num_warmup=200,
        until=until,
    )
    attrs = idata.sample_stats.attrs
    draws = np.asarray(idata.posterior["x"])
    assert attrs["until_reason"] == "converged"
    assert draws.shape[1] == attrs["until_num_draws"] < 2000
    assert attrs["until_num_draws"] % 50 == 0
    # the reported statistics are those of the returned draws, and meet the rule
    assert attrs["until_rhat"] < 1.01 and attrs["until_ess_bulk"] > 400
    np.testing.assert_allclose(
        attrs["until_rhat"], float(ne.diagnostics.rhat(draws).max()), rtol=1e-5
    )


@pytest.mark.parametrize(
    "num_samples, until, reason, num_draws",
    [
        (200, ne.Until(block=50), "max_draws", 200),
        (10_000, ne.Until(block=20, max_seconds=1e-6), "max_seconds", 20),
    ],
)
@pytest.mark.slow
def test_until_stops_on_its_budget_when_chains_stay_in_separate_modes(
    num_samples, until, reason, num_draws
):
    # MALA cannot cross between modes 10 sd apart: chains started in each stay there
    init = jnp.asarray(np.repeat(CENTRES, 2, axis=0))
    idata = ne.sample(
        mixture_energy,
        "mala",
        key=jax.random.key(1),
        init_position=init,
        event_shape=(2,),
        num_chains=4,
        num_samples=num_samples,
        num_warmup=100,
        until=until,
    )
    attrs = idata.sample_stats.attrs
    assert attrs["until_reason"] == reason and attrs["until_num_draws"] == num_draws
    assert attrs["until_rhat"] > 1.1


@pytest.mark.parametrize(
    "sampler, kwargs, match",
    [
        ("tempered_smc", {}, "draws chain by chain"),
        ("mala", {"num_chains": 1}, "num_chains must be >= 2"),
        ("mala", {"until": ne.Until(block=2)}, "until.block"),
        ("mala", {"until": ne.Until(rhat=-1.0)}, "until.rhat"),
    ],
)
def test_until_rejects_bad_input(sampler, kwargs, match):
    options = {"num_chains": 4, "until": ne.Until()} | kwargs
    with pytest.raises(ValueError, match=match):
        ne.sample(
            _gaussian_energy,
            sampler,
            key=jax.random.key(0),
            event_shape=(2,),
            num_samples=10,
            num_warmup=10,
            **options,
        )
