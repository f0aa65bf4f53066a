"""Flax NNX networks as pure energy and score functions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import numpyro_ebm as ne


def test_as_pure_reproduces_the_module_and_trains_with_optax():
    net = ne.MLPEnergy((2,), hidden=(16, 16), rngs=nnx.Rngs(0))
    apply, params = ne.as_pure(net)
    x = jax.random.normal(jax.random.key(0), (2,))
    np.testing.assert_allclose(apply(params, x), net(x), rtol=1e-6)

    data = jax.random.normal(jax.random.key(1), (64, 2)) + 3.0

    def loss(params):  # pull the energy of the data down: any gradient step must reduce it
        return jnp.mean(jax.vmap(functools.partial(apply, params))(data))

    optimizer = optax.sgd(1e-2)
    state = optimizer.init(params)
    grads = jax.jit(jax.grad(loss))(params)
    updates, state = optimizer.update(grads, state, params)
    new_params = optax.apply_updates(params, updates)
    assert loss(new_params) < loss(params)
    nnx.update(net, new_params)
    np.testing.assert_allclose(net(x), apply(new_params, x), rtol=1e-6)


def test_mlp_energy_is_scalar_per_configuration_and_vmaps():
    apply, params = ne.as_pure(ne.MLPEnergy((4, 3), rngs=nnx.Rngs(1)))
    x = jnp.ones((4, 3))
    assert apply(params, x).shape == ()
    assert jax.vmap(functools.partial(apply, params))(jnp.ones((5, 4, 3))).shape == (5,)
    assert jax.grad(functools.partial(apply, params))(x).shape == (4, 3)


@pytest.mark.parametrize("output", ["energy", "score"])
def test_noise_conditional_mlp_shapes_and_sigma_dependence(output):
    net = ne.NoiseConditionalMLP((3,), hidden=(16,), output=output, rngs=nnx.Rngs(2))
    apply, params = ne.as_pure(net)
    x = jnp.ones(3)
    out_small, out_large = apply(params, x, 0.1), apply(params, x, 10.0)
    assert out_small.shape == (() if output == "energy" else (3,))
    assert not np.allclose(out_small, out_large)
    # the Fourier frequencies are fixed, not trained
    assert all("frequencies" not in str(path) for path, _ in jax.tree.leaves_with_path(params))
    batched = jax.vmap(functools.partial(apply, params))(jnp.ones((5, 3)), jnp.linspace(0.1, 1, 5))
    assert batched.shape == ((5,) if output == "energy" else (5, 3))


def test_noise_conditional_energy_gives_a_score_by_autodiff():
    apply, params = ne.as_pure(ne.NoiseConditionalMLP((2,), hidden=(8,), rngs=nnx.Rngs(3)))
    score = jax.grad(lambda x, s: -apply(params, x, s))(jnp.ones(2), 0.5)
    assert score.shape == (2,) and np.all(np.isfinite(score))


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="event_shape"):
        ne.MLPEnergy((0,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="output"):
        ne.NoiseConditionalMLP((2,), output="logits", rngs=nnx.Rngs(0))
