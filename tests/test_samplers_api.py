"""Samplers as values, explicit targets, continuable runs, one compile per run signature, one
meaning of step_size, and our samplers inside NumPyro's MCMC."""

import inspect

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC
from stats import assert_mean_close

import numpyro_ebm as ne
from numpyro_ebm import _cache, diagnostics


def gaussian(x):
    return 0.5 * jnp.sum((x - 1.0) ** 2)


# --- values -------------------------------------------------------------------------------


def test_sampler_values_are_hashable_and_equal_by_options():
    a, b = ne.samplers.mala(step_size=0.1), ne.samplers.mala(step_size=0.1)
    assert a == b and hash(a) == hash(b)
    assert a != ne.samplers.mala(step_size=0.2)
    assert a.replace(step_size=0.2) == ne.samplers.mala(step_size=0.2)
    assert ne.samplers.get_sampler("mala", step_size=0.1) == a
    assert repr(a) == "mala(step_size=0.1, target_acceptance_rate=0.574)"
    pt = ne.samplers.parallel_tempering(inner=a, temperatures=[1.0, 2.0])
    assert pt == ne.samplers.parallel_tempering(inner=a, temperatures=jnp.array([1.0, 2.0]))


def test_the_class_of_a_value_says_how_it_runs():
    """The dispatch is a method of the value's class: one of chain_sampler (a chain) and run
    (a whole run) is overridden, and a class overriding neither or both is refused."""
    from numpyro_ebm.samplers.base import Sampler
    from numpyro_ebm.samplers.langevin import MALA

    mala = ne.samplers.mala()
    assert type(mala) is MALA and not mala.is_runner
    assert ne.samplers.tempered_smc().is_runner and ne.samplers.numpyro_nuts().is_runner
    with pytest.raises(ValueError, match="draws chain by chain"):
        mala.run(jax.random.key(0), None, num_warmup=1, num_samples=1, progress=False)
    with pytest.raises(ValueError, match="runs as a whole"):
        ne.samplers.tempered_smc().chain_sampler(None)
    with pytest.raises(TypeError, match=r"override exactly one .* overrides \[\]"):
        Sampler("plain", {}, {"energy"})

    class Both(Sampler):
        def chain_sampler(self, target):
            raise AssertionError

        def run(self, rng_key, target, *, num_warmup, num_samples, progress):
            raise AssertionError

    with pytest.raises(TypeError, match=r"overrides \['chain_sampler', 'run'\]"):
        Both("both", {}, {"energy"})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ne.samplers.mala(step_size=-1.0), "step_size"),
        (lambda: ne.samplers.mala(target_acceptance_rate=2.0), "target_acceptance_rate"),
        (lambda: ne.samplers.nuts(target_acceptance_rate=1.5), "target_acceptance_rate"),
        (lambda: ne.samplers.nuts(is_mass_matrix_diagonal="yes"), "is_mass_matrix_diagonal"),
        (lambda: ne.samplers.nuts(initial_step_size=0.0), "initial_step_size"),
        (lambda: ne.samplers.hmc(num_integration_steps=0), "num_integration_steps"),
        (lambda: ne.samplers.get_sampler("nuts", step_sise=0.1), r"step_sise.*options are"),
        (lambda: ne.samplers.get_sampler("hmc", num_integration_step=3), "num_integration_step"),
        (lambda: ne.samplers.get_sampler(ne.samplers.mala(), step_size=0.1), "sampler value"),
        (lambda: ne.samplers.get_sampler(3), "Sampler or a registered name"),
        (lambda: ne.samplers.parallel_tempering(inner="mala"), "inner"),
        (lambda: ne.samplers.parallel_tempering(inner=ne.samplers.nuts()), "move of its own"),
        (lambda: ne.samplers.tempered_smc(target_ess=1.0), "target_ess"),
        # an array step size was taken, then failed in sample() without naming step_size
        (lambda: ne.samplers.mala(step_size=np.array([0.1, 0.2])), "step_size must be a single"),
        (lambda: ne.samplers.ula(step_size=np.array([0.1])), "step_size must be a single"),
        (lambda: ne.samplers.sgld(step_size=[0.1, 0.2]), "step_size must be a single"),
    ],
)
def test_options_are_checked_when_the_value_is_made(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_parallel_tempering_over_ula_keeps_its_step_and_samples_its_biased_target():
    # ULA has no acceptance rate to tune its step by (warm-up crashed on it). At noise
    # variance h on N(1, I), ULA's stationary law is N(1, I / (1 - h / 4)).
    h = 0.05
    sampler = ne.samplers.parallel_tempering(
        inner=ne.samplers.ula(step_size=h), temperatures=[1.0, 2.0, 4.0]
    )
    idata = ne.sample(
        gaussian, sampler, key=jax.random.key(0), event_shape=(2,), num_chains=16,
        num_samples=1000, num_warmup=200,
    )  # fmt: skip
    np.testing.assert_allclose(idata.sample_stats["step_size"].values, h, rtol=1e-6)
    draws = idata.posterior["x"].values
    ess = float(np.min(diagnostics.ess_bulk(draws)))
    variance = 1 / (1 - h / 4)
    # Monte Carlo errors of the mean and the variance at the smaller bulk ESS
    assert np.all(np.abs(draws.mean((0, 1)) - 1.0) < 4 * np.sqrt(variance / ess))
    assert np.all(np.abs(draws.var((0, 1)) - variance) < 4 * variance * np.sqrt(2 / ess))


def test_documented_nuts_options_are_accepted():
    sampler = ne.samplers.nuts(is_mass_matrix_diagonal=False, initial_step_size=0.5)
    idata = ne.sample(
        gaussian,
        sampler,
        key=jax.random.key(0),
        event_shape=(2,),
        num_chains=2,
        num_samples=20,
        num_warmup=20,
    )
    assert idata.posterior["x"].shape == (2, 20, 2)
    assert "energy" in idata.sample_stats  # the Hamiltonian, for the BFMI


def test_a_sampler_refuses_a_target_it_does_not_sample_before_compiling():
    sampler = ne.samplers.annealed_langevin(sigmas=[1.0, 0.1])
    target = ne.energy_target(gaussian, key=jax.random.key(0), event_shape=(2,))
    with pytest.raises(
        ValueError, match="samples model or noise_conditional targets, not an energy target"
    ):
        ne.sample(target, sampler, key=jax.random.key(1))
    with pytest.raises(ValueError, match=r"calling the target as fn\(x, sigma\) fails"):
        ne.sample(gaussian, sampler, key=jax.random.key(0), event_shape=(2,))


# --- targets ------------------------------------------------------------------------------


def test_initial_positions_need_a_leading_chain_axis():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"leading num_chains=4 axis.*broadcast_to"):
        ne.sample(gaussian, "mala", key=key, init_position=jnp.zeros(3))
    with pytest.raises(ValueError, match=r"\(num_chains, \*event_shape\) = \(4, 2\)"):
        ne.sample(gaussian, "mala", key=key, init_position=jnp.zeros((4, 3)), event_shape=(2,))
    with pytest.raises(TypeError, match="real numbers"):
        ne.sample(gaussian, "mala", key=key, init_position=np.array([["a", "b"]] * 4))
    with pytest.raises(TypeError, match="real numbers"):
        ne.sample(gaussian, "mala", key=key, init_position=jnp.ones((4, 2), jnp.complex64))
    with pytest.raises(ValueError, match="positive sizes"):
        ne.sample(gaussian, "mala", key=key, event_shape=(0,))
    with pytest.raises(ValueError, match="positive sizes"):
        ne.sample(gaussian, "mala", key=key, event_shape=(-2,))
    with pytest.raises(TypeError, match=r"jax\.random\.key"):
        ne.sample(gaussian, "mala", key=0, event_shape=(2,))
    with pytest.raises(ValueError, match="cannot take one configuration of shape"):
        ne.sample(lambda x: x @ jnp.ones(3), "mala", key=key, event_shape=(2,))


def test_integer_and_list_positions_are_converted():
    common = dict(key=jax.random.key(0), num_chains=2, num_samples=5, num_warmup=5)
    ints = ne.sample(gaussian, "mala", init_position=[[0, 1], [1, 0]], **common)
    floats = ne.sample(gaussian, "mala", init_position=jnp.array([[0.0, 1], [1, 0]]), **common)
    np.testing.assert_array_equal(ints.posterior["x"].values, floats.posterior["x"].values)


def test_a_pytree_position_keeps_its_structure():
    def energy(x):
        return 0.5 * (jnp.sum(x["a"] ** 2) + x["b"] ** 2)

    init = {"a": jnp.zeros((4, 2)), "b": jnp.zeros(4)}
    idata = ne.sample(
        energy, "mala", key=jax.random.key(0), init_position=init, num_samples=10, num_warmup=10
    )
    assert idata.posterior["x.a"].shape == (4, 10, 2)
    assert idata.posterior["x.b"].shape == (4, 10)


def test_a_ready_target_is_reused_and_refuses_stray_arguments():
    target = ne.energy_target(gaussian, key=jax.random.key(0), num_chains=3, event_shape=(2,))
    idata = ne.sample(target, "mala", key=jax.random.key(1), num_samples=5, num_warmup=5)
    assert idata.posterior["x"].shape == (3, 5, 2)
    with pytest.raises(TypeError, match="beside a ready Target"):
        ne.sample(target, "mala", key=jax.random.key(1), event_shape=(2,))
    with pytest.raises(ValueError, match="num_chains=5"):
        ne.sample(target, "mala", key=jax.random.key(1), num_chains=5)


# --- continuing, compiling once -----------------------------------------------------------


@pytest.mark.parametrize(
    "sampler",
    [ne.samplers.mala(), ne.samplers.nuts(), ne.samplers.parallel_tempering(num_replicas=3)],
    ids=["mala", "nuts", "parallel_tempering"],
)
def test_a_continued_run_makes_the_draws_of_one_long_run(sampler):
    common = dict(event_shape=(2,), num_chains=3, num_warmup=30)
    first = ne.sample(gaussian, sampler, key=jax.random.key(4), num_samples=40, **common)
    more = ne.sample(gaussian, sampler, resume=first, num_samples=25, **common)
    whole = ne.sample(gaussian, sampler, key=jax.random.key(4), num_samples=65, **common)
    x = whole.posterior["x"].values
    np.testing.assert_allclose(first.posterior["x"].values, x[:, :40], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(more.posterior["x"].values, x[:, 40:], rtol=1e-5, atol=1e-6)
    # the tuned step size was carried over, not tuned anew
    np.testing.assert_array_equal(
        more.sample_stats.step_size.values[:, 0], first.sample_stats.step_size.values[:, -1]
    )


def test_resume_refuses_another_sampler_or_key(tmp_path):
    first = ne.sample(
        gaussian, "mala", key=jax.random.key(0), event_shape=(2,), num_samples=5, num_warmup=5
    )
    with pytest.raises(ValueError, match="continue a run with the sampler that made it"):
        ne.sample(gaussian, "ula", resume=first, event_shape=(2,), num_samples=5)
    with pytest.raises(TypeError, match="do not pass key"):
        ne.sample(gaussian, "mala", key=jax.random.key(0), resume=first, event_shape=(2,))
    # the state survives a netCDF round trip
    path = tmp_path / "run.nc"
    from numpyro_ebm import _arviz

    _arviz.to_netcdf(first, path)
    more = ne.sample(
        gaussian,
        "mala",
        resume=_arviz.from_netcdf(path),
        event_shape=(2,),
        num_samples=5,
        num_warmup=5,
    )
    assert np.isfinite(more.posterior["x"].values).all()


def _backend_compiles(call) -> int:
    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        call()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return len(compiles)


def test_a_repeated_call_compiles_nothing_new():
    args = dict(key=jax.random.key(0), event_shape=(2,), num_samples=30, num_warmup=10)
    first = ne.sample(gaussian, "mala", **args)
    results = []
    assert _backend_compiles(lambda: results.append(ne.sample(gaussian, "mala", **args))) == 0
    np.testing.assert_array_equal(first.posterior["x"].values, results[0].posterior["x"].values)
    assert len(_cache._ENTRIES) >= 1


def test_a_model_sampled_again_with_another_key_compiles_nothing_new():
    y = np.array([0.3, -0.1, 0.8], np.float32)
    args = dict(num_chains=2, num_samples=20, num_warmup=10, model_args=(y,))
    first = ne.sample(conjugate, "mala", key=jax.random.key(0), **args)
    again = []
    calls = lambda: again.append(ne.sample(conjugate, "mala", key=jax.random.key(1), **args))
    assert _backend_compiles(calls) == 0
    assert not np.array_equal(first.posterior["mu"].values, again[0].posterior["mu"].values)
    # the same key gives the same draws as a run made from scratch
    _cache.clear()
    fresh = ne.sample(conjugate, "mala", key=jax.random.key(1), **args)
    np.testing.assert_array_equal(fresh.posterior["mu"].values, again[0].posterior["mu"].values)


# --- one meaning of step_size -------------------------------------------------------------


def test_step_size_is_the_noise_variance_at_the_blackjax_border():
    from numpyro_ebm.samplers.langevin import _mala_kernel

    key, x0 = jax.random.key(3), jnp.array([0.3, -0.2])
    ours = _mala_kernel(lambda x: -gaussian(x), 0.02)
    theirs = blackjax.mala(lambda x: -gaussian(x), 0.01)
    a, _ = ours.step(key, ours.init(x0))
    b, _ = theirs.step(key, theirs.init(x0))
    np.testing.assert_array_equal(a.position, b.position)


# --- NumPyro kernels ----------------------------------------------------------------------


def conjugate(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


Y = np.array([0.5, 1.5, 2.0, 1.0])
POST_VAR = 1.0 / (1.0 / 4.0 + Y.size)
POST_MEAN = POST_VAR * Y.sum()


@pytest.mark.parametrize(
    "kernel",
    [
        lambda: ne.infer.MALA(conjugate, step_size=0.5),
        lambda: ne.infer.ParallelTempering(conjugate, num_replicas=3),
    ],
    ids=["MALA", "ParallelTempering"],
)
def test_our_kernels_run_in_numpyro_mcmc(kernel, capsys):
    mcmc = MCMC(
        kernel(),
        num_warmup=300,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), Y)
    draws = mcmc.get_samples(group_by_chain=True)["mu"]
    assert draws.shape == (4, 1000)
    assert_mean_close(np.asarray(draws)[..., None], [POST_MEAN])
    mcmc.print_summary()
    assert "mu" in capsys.readouterr().out
    import arviz

    idata = arviz.from_numpyro(mcmc)
    assert idata.posterior["mu"].shape == (4, 1000)


def test_annealed_langevin_runs_in_numpyro_mcmc():
    def energy(x, sigma):
        return 0.5 * jnp.sum(x**2) / (1.0 + sigma**2)

    # one level with MALA steps: each sweep leaves N(0, (1 + 0.3^2) I) invariant
    kernel = ne.infer.AnnealedLangevin(
        energy, sigmas=[0.3], step_size=0.5, num_steps_per_level=5, metropolis=True,
        denoise=False,
    )
    mcmc = MCMC(kernel, num_warmup=0, num_samples=400, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(1), init_params=jnp.zeros((4, 2)))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert draws.shape == (4, 400, 2)
    assert_mean_close(draws, np.zeros(2))
    assert_mean_close(draws**2, np.full(2, 1.09))


def test_numpyro_kernels_need_exactly_one_of_model_and_potential():
    with pytest.raises(ValueError, match="exactly one of model and potential_fn"):
        ne.infer.MALA()
    with pytest.raises(ValueError, match="only when its prior is noise-conditional"):
        MCMC(
            ne.infer.SamplerKernel(
                ne.samplers.annealed_langevin(sigmas=[1.0, 0.5]), model=conjugate
            ),
            num_warmup=1,
            num_samples=1,
            progress_bar=False,
        ).run(jax.random.key(0), Y)


def test_models_the_samplers_cannot_take_are_refused_in_our_words():
    def discrete_latent():
        z = numpyro.sample("z", dist.Bernoulli(0.3))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=0.5)

    def nowhere_finite():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.factor("bad", jnp.nan * x)

    with pytest.raises(ValueError, match="discrete latent site"):
        ne.sample(discrete_latent, "nuts", key=jax.random.key(0))
    with pytest.raises(ValueError, match="not finite at any of the initial points"):
        ne.sample(nowhere_finite, "nuts", key=jax.random.key(0))


@pytest.mark.parametrize("name", ["mala", "block_gibbs", "tempered_smc", "parallel_tempering"])
def test_a_factory_called_directly_lists_its_options_on_a_typo(name):
    factory = getattr(ne.samplers, name)
    options = sorted(inspect.signature(factory).parameters)
    with pytest.raises(TypeError) as raised:
        factory(stepsize=0.1)
    assert str(raised.value) == (
        f"sampler {name!r} takes no option(s) ['stepsize']; its options are {options}"
    )
    with pytest.raises(TypeError, match=rf"^{name}\(\) takes its options by name, got \(0.1,\)"):
        factory(0.1)
