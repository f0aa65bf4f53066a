"""The Bradley-Terry reward model (``ne.training.bradley_terry``) and the tilted density
p0(x) exp(r(x) / beta) it is used with, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import numpyro_ebm as ne
from numpyro_ebm import _arviz


def linear_energy(w, x):
    return -jnp.dot(w, x)


def preference_pairs(key, w_true, n):
    """Pairs of N(0, I) items, the preferred first, judged by Bradley-Terry with the linear
    reward w_true . x."""
    ka, kb, ky = jax.random.split(key, 3)
    a = jax.random.normal(ka, (n, w_true.shape[0]))
    b = jax.random.normal(kb, (n, w_true.shape[0]))
    a_wins = jax.random.bernoulli(ky, jax.nn.sigmoid((a - b) @ w_true))
    winner = jnp.where(a_wins[:, None], a, b)
    loser = jnp.where(a_wins[:, None], b, a)
    return jnp.stack([winner, loser], axis=1)


def test_loss_is_the_bradley_terry_negative_log_likelihood():
    objective = ne.training.bradley_terry(linear_energy)
    pairs = preference_pairs(jax.random.key(0), jnp.array([1.0, -0.5]), 50)
    w = jnp.array([0.3, 0.2])
    value, (aux, state) = objective.loss(w, pairs, jax.random.key(1), None)
    margin = (pairs[:, 0] - pairs[:, 1]) @ w  # r(w) - r(l)
    np.testing.assert_allclose(value, np.mean(np.log1p(np.exp(-margin))), rtol=1e-5)
    np.testing.assert_allclose(aux["accuracy"], np.mean(margin > 0))
    np.testing.assert_allclose(aux["margin"], np.mean(margin), rtol=1e-5)
    assert state is None


def test_maximum_likelihood_recovers_the_reward_within_its_standard_errors():
    w_true = jnp.array([1.5, -0.8])
    pairs = preference_pairs(jax.random.key(2), w_true, 4000)
    objective = ne.training.bradley_terry(linear_energy)

    def loss(w):
        return objective.loss(w, pairs, jax.random.key(0), None)[0]

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(_, carry):
        w, state = carry
        value, grad = value_and_grad(w, state=state)
        updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(w, updates), state

    # One compiled loop: the solver's line search dispatched eagerly took most of a minute.
    w, _ = jax.jit(lambda w: jax.lax.fori_loop(0, 50, step, (w, solver.init(w))))(jnp.zeros(2))
    # Fisher information of the logistic regression on the differences, at the estimate
    d = np.asarray(pairs[:, 0] - pairs[:, 1], np.float64)
    p = 1 / (1 + np.exp(-d @ np.asarray(w, np.float64)))
    information = (d * (p * (1 - p))[:, None]).T @ d
    se = np.sqrt(np.diag(np.linalg.inv(information)))
    z = (np.asarray(w) - np.asarray(w_true)) / se
    assert np.all(np.abs(z) < 4), (w, se, z)


def test_fit_takes_pairs_and_refuses_single_items():
    objective = ne.training.bradley_terry(linear_energy)
    pairs = preference_pairs(jax.random.key(3), jnp.array([1.0, 1.0]), 512)
    result = ne.training.fit(
        objective,
        jnp.zeros(2),
        pairs,
        key=jax.random.key(4),
        optimizer=optax.adam(0.05),
        num_steps=200,
        batch_size=128,
        progress=False,
    )
    assert float(result.history["accuracy"][-1]) > 0.7
    with pytest.raises(ValueError, match=r"pairs of shape \(batch, 2, \*event_shape\)"):
        objective.loss(jnp.zeros(2), pairs[:, :1], jax.random.key(0), None)
    with pytest.raises(TypeError, match="energy_fn must be callable"):
        ne.training.bradley_terry("reward")


def tilted_model(energy, beta):
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    ne.energy_factor("reward", energy, x, temperature=beta)


@pytest.mark.slow
def test_the_tilted_density_of_a_quadratic_reward_is_its_closed_form_gaussian():
    # p0 = N(0, I), r(x) = -(x - mu)' A (x - mu) / 2: p0 e^{r / beta} = N(m, P^-1) with
    # precision P = I + A / beta and mean m = P^-1 A mu / beta.
    mu = np.array([2.0, -1.0])
    a = np.array([[1.5, 0.5], [0.5, 1.0]])
    beta = 0.7

    def energy(x):  # minus the reward
        d = x - jnp.asarray(mu, x.dtype)
        return 0.5 * d @ jnp.asarray(a, x.dtype) @ d

    precision = np.eye(2) + a / beta
    cov = np.linalg.inv(precision)
    mean = cov @ a @ mu / beta
    idata = ne.sample(
        tilted_model,
        "nuts",
        key=jax.random.key(5),
        model_kwargs={"energy": energy, "beta": beta},
        num_chains=4,
        num_samples=2000,
        num_warmup=500,
        progress=False,
    )
    draws = np.asarray(_arviz.group(idata, "posterior")["x"].values, np.float64)
    summary = ne.diagnostics.summary(draws)
    assert float(np.max(summary["rhat"])) < 1.01
    z = (np.asarray(summary["mean"]) - mean) / np.asarray(summary["mcse_mean"])
    assert np.all(np.abs(z) < 4), z
    np.testing.assert_allclose(np.cov(draws.reshape(-1, 2).T), cov, rtol=0.1, atol=0.01)
