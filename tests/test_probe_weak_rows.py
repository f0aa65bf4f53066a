"""Rows of the 2026-12-06 probe that got another library's message, late or not at all: each
now gets ours, early (the probe's calls, as in ../shared/probe-2026-12-06.md)."""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import numpyro_ebm as ne


def squared(x):
    return jnp.sum(x**2)


def normal_model():
    numpyro.sample("x", dist.Normal(0.0, 1.0))


def run_mcmc(kernel, **run):
    MCMC(kernel, num_warmup=5, num_samples=5, progress_bar=False).run(jax.random.key(0), **run)


def test_an_energy_without_event_shape_is_not_silently_taken_for_a_model():
    with pytest.raises(TypeError, match=r"read as a NumPyro model.*give event_shape="):
        ne.sample(squared, "mala", key=jax.random.key(0))


def test_more_draws_than_memory_holds_are_refused_before_the_warm_up():
    with pytest.raises(MemoryError, match="num_samples=100000000000 x num_chains=4 would keep"):
        ne.sample(squared, "mala", key=jax.random.key(0), event_shape=(2,), num_samples=10**11)


def test_a_pytree_valued_energy_is_refused_in_our_words():
    with pytest.raises(TypeError, match=r"must return one real number .* got a dict"):
        ne.sample(lambda x: {"a": squared(x)}, "mala", key=jax.random.key(0), event_shape=(2,))


def test_an_unknown_option_of_a_numpyro_kernel_lists_the_options():
    with pytest.raises(TypeError, match=r"no option\(s\) \['stepsize'\]; its options are"):
        ne.infer.MALA(normal_model, stepsize=0.1)


def test_numpyro_kernels_read_the_model_as_sample_does():
    def discrete():
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("x", dist.Normal(z, 1.0))

    def nowhere_finite():
        normal_model()
        numpyro.factor("f", -jnp.inf)

    with pytest.raises(ValueError, match="discrete latent site \\('z'\\)"):
        run_mcmc(ne.infer.MALA(discrete))
    with pytest.raises(ValueError, match="not finite at any of the initial points"):
        run_mcmc(ne.infer.MALA(nowhere_finite))
    with pytest.raises(ValueError, match="init_params must hold the model's latent sites"):
        run_mcmc(ne.infer.MALA(normal_model), init_params={"w": jnp.ones(())})


def test_numpyro_kernels_check_a_potential_at_the_start():
    with pytest.raises(TypeError, match="potential_fn must return one real number"):
        run_mcmc(ne.infer.MALA(potential_fn=lambda z: z**2), init_params=jnp.ones(2))
    with pytest.raises(TypeError, match="init_params must be floating point"):
        run_mcmc(ne.infer.MALA(potential_fn=squared), init_params=jnp.ones(2, jnp.int32))
