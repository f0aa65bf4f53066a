"""Deep belief nets: greedy training raises each layer's exact likelihood, the variational
bound is exact for an unrolled top RBM and below the exact likelihood otherwise, and
top-down sampling reproduces the exact visible marginals."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from test_rbm import exact_samples, random_params

from numpyro_ebm.models.dbn import DBN
from numpyro_ebm.models.rbm import BernoulliRBM, RBMParams
from numpyro_ebm.training.rbm import fit_dbn, rbm_optimizer


def per_example(model: BernoulliRBM, params, data) -> np.ndarray:
    free = jax.vmap(model.free_energy, (None, 0))(params, jnp.asarray(data))
    return np.asarray(-free - model.log_partition(params), np.float64)


def independent(model: BernoulliRBM, data) -> RBMParams:
    """The RBM with no weights and the data's log-odds as visible biases: where training
    starts (up to its N(0, 0.01^2) weights)."""
    start = model.init(jax.random.key(0), 1e-6, data=data)
    return RBMParams(jnp.zeros_like(start.W), start.b, start.c)


@pytest.fixture(scope="module")
def data():
    teacher = BernoulliRBM(12, 4)
    blocks = np.kron(np.eye(4), np.ones((3, 1)))
    params = RBMParams(
        jnp.asarray(4.0 * blocks, jnp.float32), jnp.full(12, -2.0), jnp.full(4, -6.0)
    )
    return exact_samples(jax.random.key(20), teacher, params, 2000)


@pytest.mark.slow  # two fits: ~25 s of CPU
def test_greedy_training_raises_each_layers_exact_log_likelihood(data):
    dbn = DBN((12, 6, 4))
    result = fit_dbn(
        dbn,
        data,
        key=jax.random.key(21),
        optimizer=rbm_optimizer(0.1, momentum=0.9),
        num_steps=1000,
        batch_size=20,
    )
    assert len(result.params) == 2 and len(result.layer_data) == 2
    assert set(np.unique(result.layer_data[1])) <= {0.0, 1.0}  # propagated samples
    for rbm, params, layer_data in zip(dbn.layers, result.params, result.layer_data, strict=True):
        gain = per_example(rbm, params, layer_data) - per_example(
            rbm, independent(rbm, layer_data), layer_data
        )
        stderr = gain.std(ddof=1) / np.sqrt(gain.size)
        assert gain.mean() > 4.0 * stderr, (rbm, gain.mean(), stderr)
    exact = float(dbn.log_likelihood(result.params, data))
    bound = float(dbn.log_likelihood_bound(result.params, data))
    assert bound <= exact + 1e-4
    assert np.isfinite(bound)


def test_bound_is_exact_for_the_unrolled_top_rbm_and_below_the_likelihood_otherwise():
    dbn = DBN((8, 5, 8))
    bottom = random_params(jax.random.key(22), dbn.layers[0], 1.0)
    unrolled = RBMParams(bottom.W.T, bottom.c, bottom.b)
    v = np.array(list(itertools.product([0.0, 1.0], repeat=8)))[::7]
    rbm_loglik = float(dbn.layers[0].log_likelihood(bottom, v))
    assert float(dbn.log_likelihood((bottom, unrolled), v)) == pytest.approx(rbm_loglik, abs=1e-4)
    assert float(dbn.log_likelihood_bound((bottom, unrolled), v)) == pytest.approx(
        rbm_loglik, abs=1e-4
    )
    other = random_params(jax.random.key(23), dbn.layers[1], 1.0)
    assert float(dbn.log_likelihood_bound((bottom, other), v)) < float(
        dbn.log_likelihood((bottom, other), v)
    )


def test_top_down_samples_match_the_exact_visible_marginals():
    dbn = DBN((8, 5, 4))
    keys = jax.random.split(jax.random.key(24), 2)
    params = tuple(random_params(k, rbm, 1.0) for k, rbm in zip(keys, dbn.layers, strict=True))
    h1 = np.array(list(itertools.product([0.0, 1.0], repeat=5)))
    log_prior = -np.asarray(jax.vmap(dbn.layers[1].free_energy, (None, 0))(params[1], h1))
    prior = np.exp(log_prior - logsumexp(log_prior))
    mean = prior @ np.asarray(jax.vmap(dbn.layers[0].visible_probs, (None, 0))(params[0], h1))
    samples = np.asarray(
        jax.jit(lambda k: dbn.sample(k, params, num_samples=4000, num_steps=100))(
            jax.random.key(25)
        ),
        np.float64,
    )
    assert samples.shape == (4000, 8) and set(np.unique(samples)) <= {0.0, 1.0}
    stderr = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    assert np.all(np.abs(samples.mean(axis=0) - mean) < 4.0 * stderr)


def test_dbn_bad_input_is_refused():
    with pytest.raises(ValueError, match="layer_sizes needs at least two sizes"):
        DBN((5,))
    with pytest.raises(ValueError, match=r"layer_sizes\[1\] must be an integer >= 1"):
        DBN((5, 0))
    dbn = DBN((4, 3, 2))
    with pytest.raises(ValueError, match="data must be binary"):
        fit_dbn(dbn, np.full((5, 4), 0.5), key=jax.random.key(0))
    with pytest.raises(ValueError, match="propagate must be one of"):
        fit_dbn(dbn, np.ones((5, 4)), key=jax.random.key(0), propagate="means")
    params = dbn.init(jax.random.key(0))
    with pytest.raises(ValueError, match="two-layer DBNs"):
        DBN((4, 3, 2, 2)).log_likelihood((*params, params[-1]), np.ones((2, 4)))
    with pytest.raises(ValueError, match="params must hold 2 layers"):
        dbn.sample(jax.random.key(0), params[:1], num_samples=2)
