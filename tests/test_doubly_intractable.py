"""A model whose energy site has a normalizer that depends on a latent site is refused by every
density-based sampler, naming both sites (issue 20, part 3): on 5 observed 4x4 Ising
configurations with beta latent, NUTS used to return E[beta] = 0.985 against the exact 0.297."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm.models.ising import Ising

ISING = Ising(4)
OBSERVED = jnp.asarray(np.random.default_rng(0).choice([-1.0, 1.0], size=(5, 4, 4)))


def ising_beta(x):
    beta = numpyro.sample("beta", dist.Uniform(0.0, 1.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample(
            "x", ne.DiscreteEnergyDistribution(ISING.energy, (4, 4), temperature=1.0 / beta), obs=x
        )


def latent_temperature():
    t = numpyro.sample("t", dist.LogNormal(0.0, 1.0))
    numpyro.sample("z", ne.EnergyDistribution(lambda z: 0.5 * jnp.sum(z**2), (2,), temperature=t))


def latent_scale():
    a = numpyro.sample("a", dist.HalfNormal(1.0))
    numpyro.sample("z", ne.EnergyDistribution(lambda z: a * jnp.sum(z**2), (2,)))


@pytest.mark.parametrize(
    "model,args,site,latent",
    [
        (ising_beta, (OBSERVED,), "x", "beta"),
        (latent_temperature, (), "z", "t"),
        (latent_scale, (), "z", "a"),
    ],
    ids=["observed Ising, latent beta", "energy prior, latent temperature", "latent scale"],
)
@pytest.mark.parametrize("sampler", ["nuts", "mala"])
def test_a_normalizer_that_depends_on_a_latent_is_refused(model, args, site, latent, sampler):
    match = f"energy site '{site}' has a normalizer that depends on the latent site '{latent}'"
    with pytest.raises(ValueError, match=match):
        ne.sample(model, sampler, key=jax.random.key(0), model_args=args, num_samples=5)


def test_the_numpyro_kernels_refuse_it_too():
    mcmc = MCMC(ne.infer.MALA(ising_beta), num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(ValueError, match="doubly intractable"):
        mcmc.run(jax.random.key(0), OBSERVED)


def test_an_energy_prior_with_fixed_parameters_beside_other_latents_is_sampled():
    """The learned-prior case: the energy's normalizer is a constant, other latents are free."""

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        z = numpyro.sample("z", ne.EnergyDistribution(lambda z: 0.5 * jnp.sum(z**2), (2,)))
        numpyro.sample("y", dist.Normal(mu + z.sum(), 1.0), obs=y)

    data = ne.sample(
        model, "nuts", key=jax.random.key(0), model_args=(1.0,), num_samples=20, num_warmup=20
    )
    assert set(data.posterior.data_vars) == {"mu", "z"}
