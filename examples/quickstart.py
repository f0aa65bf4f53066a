"""Quick start: one energy, three ways to use it inside NumPyro and BlackJAX."""

import blackjax
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import numpyro_ebm as ne


def energy(x):  # E(x): a banana-shaped 2-D energy, p(x) ∝ exp(-E(x))
    return 0.5 * x[0] ** 2 + 2.0 * (x[1] - 0.5 * x[0] ** 2) ** 2


# 1. The energy as a potential for NumPyro's NUTS.
mcmc = MCMC(
    NUTS(potential_fn=ne.potential_fn(energy)), num_warmup=300, num_samples=1000, progress_bar=False
)
mcmc.run(jax.random.key(0), init_params=jnp.zeros(2))
print("NUTS on E(x):      mean", mcmc.get_samples().mean(0))


# 2. The energy as a learned prior inside a model, observed through noise.
def model(y):
    x = numpyro.sample("x", ne.EnergyDistribution(energy, event_shape=(2,)))
    numpyro.sample("y", dist.Normal(x, 0.5).to_event(1), obs=y)


mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=1000, progress_bar=False)
mcmc.run(jax.random.key(1), y=jnp.array([1.0, 1.0]))
print("posterior of x:    mean", mcmc.get_samples()["x"].mean(0))

# 3. The same model as a log density for any BlackJAX kernel.
logdensity_fn, z0, postprocess = ne.logdensity_from_model(
    model, jnp.array([1.0, 1.0]), key=jax.random.key(2)
)
mala = blackjax.mala(logdensity_fn, step_size=0.05)


def one_step(state, key):
    state, _ = mala.step(key, state)
    return state, postprocess(state.position)["x"]


_, draws = jax.lax.scan(one_step, mala.init(z0), jax.random.split(jax.random.key(3), 3000))
print("MALA (BlackJAX):   mean", draws[500:].mean(0))
