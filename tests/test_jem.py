"""The convolutional energy (``ne.nets.ConvEnergy``), the JEM objective
(``ne.training.jem``) and labelled data in ``fit``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import numpyro_ebm as ne
from numpyro_ebm import nets, storage
from numpyro_ebm.training import hybrid

SPEC = {
    "network": "ConvEnergy",
    "event_shape": [8, 8],
    "channels": [4, 8],
    "hidden": [16],
    "num_outputs": 3,
    "spectral_norm": True,
    "activation": "silu",
}


def test_conv_energy_shapes_and_a_scalar_energy():
    logits = nets.ConvEnergy((8, 8), channels=(4, 8), num_outputs=3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (5, 8, 8))
    assert logits(x).shape == (5, 3)
    assert logits(x[0]).shape == (3,)
    np.testing.assert_allclose(logits(x)[2], logits(x[2]), rtol=1e-5, atol=1e-6)
    energy = nets.ConvEnergy((6, 6, 2), channels=(4,), rngs=nnx.Rngs(0))
    assert energy(jnp.zeros((6, 6, 2))).shape == ()
    with pytest.raises(ValueError, match="event_shape \\(height, width\\)"):
        nets.ConvEnergy((64,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="spectral_norm must be True or False"):
        nets.ConvEnergy((8, 8), spectral_norm="yes", rngs=nnx.Rngs(0))


def test_spectral_normalization_gives_unit_top_singular_value():
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 6)) * 3.0
    normalized = nets.spectral_normalized(kernel, jnp.ones(6), steps=30)
    top = np.linalg.svd(np.asarray(normalized).reshape(-1, 6), compute_uv=False)[0]
    assert top == pytest.approx(1.0, abs=1e-4)
    # with every kernel normalized, a dense ConvEnergy is 1-Lipschitz up to the activation's
    # own constant (SiLU: about 1.1 per layer) and the convolutions' 3x3 overlap (at most 3x)
    net = nets.ConvEnergy((8, 8), channels=(4,), hidden=(), spectral_norm=True, rngs=nnx.Rngs(2))
    x, y = jax.random.normal(jax.random.key(3), (2, 8, 8))
    assert abs(net(x) - net(y)) <= 3 * 1.11 * float(jnp.linalg.norm(x - y))


def test_conv_energy_saves_and_loads(tmp_path):
    network = storage.build_network(SPEC, seed=4)
    storage.save_network(tmp_path / "net", network, SPEC, {"objective": "jem"})
    loaded, spec, metadata = storage.load_network(tmp_path / "net")
    x = jax.random.normal(jax.random.key(5), (2, 8, 8))
    np.testing.assert_allclose(loaded(x), network(x), rtol=1e-6)
    assert spec == SPEC and metadata == {"objective": "jem"}
    with pytest.raises(ValueError, match="spectral_norm must be True or False"):
        storage.build_network(SPEC | {"spectral_norm": 1})


def test_jem_sampler_is_jems_update():
    # x' = x + alpha * grad log p(x) + sigma * z, with the kernel's own z
    def log_p(x):
        return -0.5 * jnp.sum((x - 1.0) ** 2) * 3.0

    alpha, sigma = 0.7, 0.05
    kernel = hybrid._sgld_kernel(log_p, alpha, sigma)
    x = jnp.array([0.2, -0.4])
    key = jax.random.key(6)
    new, _ = kernel.step(key, kernel.init(x))
    z = jax.random.normal(key, x.shape)  # blackjax's generate_gaussian_noise of one array
    np.testing.assert_allclose(new.position, x + alpha * jax.grad(log_p)(x) + sigma * z, rtol=1e-5)


def logits_fn(w, x):
    return x.reshape(-1) @ w


def test_jem_loss_is_cross_entropy_plus_the_contrastive_term():
    w = jax.random.normal(jax.random.key(7), (4, 3))
    x = jax.random.normal(jax.random.key(8), (6, 2, 2))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    batch = {"x": x, "y": y}
    classifier = ne.training.jem(logits_fn, generative_weight=0.0)
    value, (aux, state) = classifier.loss(w, batch, jax.random.key(9), None)
    logits = x.reshape(6, 4) @ w
    cross_entropy = -np.mean(np.asarray(jax.nn.log_softmax(logits))[np.arange(6), y])
    np.testing.assert_allclose(value, cross_entropy, rtol=1e-5)
    assert state is None and "energy_neg" not in aux
    objective = ne.training.jem(logits_fn, k=3, capacity=32)
    buffer = objective.init(jax.random.key(10), w, {"x": x[0], "y": y[0]})
    value, (aux, new_buffer) = objective.loss(w, batch, jax.random.key(11), buffer)
    energy_pos = -jax.nn.logsumexp(logits, axis=-1).mean()
    np.testing.assert_allclose(aux["energy_pos"], energy_pos, rtol=1e-5)
    contrastive = aux["energy_pos"] - aux["energy_neg"]
    np.testing.assert_allclose(value, cross_entropy + contrastive, rtol=1e-5)
    assert new_buffer.samples.shape == (32, 2, 2)
    with pytest.raises(TypeError, match="jem needs labelled data"):
        objective.loss(w, x, jax.random.key(0), buffer)


def test_fit_takes_labelled_data_and_refuses_mismatched_lengths():
    rng = np.random.default_rng(12)
    y = rng.integers(0, 3, 300)
    # three separated clusters in the first three of four coordinates, as 2x2 "images"
    x = np.zeros((300, 4))
    x[:, :3] = np.eye(3)[y] * 2.0 + rng.normal(0, 0.5, (300, 3))
    x = x.reshape(300, 2, 2)
    objective = ne.training.jem(logits_fn, generative_weight=0.0)
    result = ne.training.fit(
        objective,
        jnp.zeros((4, 3)),
        {"x": x, "y": y},
        key=jax.random.key(13),
        optimizer=optax.adam(0.1),
        num_steps=200,
        batch_size=50,
        progress=False,
    )
    assert result.history["accuracy"][-1] > 0.9
    with pytest.raises(ValueError, match="same number of examples, got \\[299, 300\\]"):
        ne.training.fit(
            objective,
            jnp.zeros((4, 3)),
            {"x": x[:299], "y": y},
            key=jax.random.key(0),
            optimizer=optax.adam(0.1),
            num_steps=1,
            batch_size=10,
            progress=False,
        )


def test_a_jem_fit_of_a_conv_energy_resumes_exactly(tmp_path):
    data = {
        "x": jax.random.uniform(jax.random.key(14), (64, 8, 8), minval=-1, maxval=1),
        "y": jax.random.randint(jax.random.key(15), (64,), 0, 3),
    }
    apply, params = nets.as_pure(storage.build_network(SPEC))
    objective = ne.training.jem(apply, k=2, capacity=64)
    run = dict(
        key=jax.random.key(16),
        optimizer=optax.adam(1e-3),
        batch_size=16,
        steps_per_chunk=2,
        progress=False,
    )
    whole = ne.training.fit(objective, params, data, num_steps=6, **run)
    ne.training.fit(objective, params, data, num_steps=4, checkpoint_dir=tmp_path, **run)
    resumed = ne.training.fit(
        objective, params, data, num_steps=6, checkpoint_dir=tmp_path, resume=True, **run
    )
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.loss_state.samples, resumed.loss_state.samples)
