"""Replica exchange for RBMs on the tempered joint p(v, h)^(1/T) (issue 23): sampling the exact
marginal through sample(), PCD over replica exchange setting the masses of modes that one
block Gibbs chain rarely crosses, and class_weights' statistics."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp
from stats import assert_mean_close

import numpyro_ebm as ne
from numpyro_ebm.energy import BoundEnergy
from numpyro_ebm.kernels import block_gibbs
from numpyro_ebm.metrics import class_weights
from numpyro_ebm.models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMParams
from numpyro_ebm.training import rbm_move
from numpyro_ebm.training.rbm import fit_rbm


def all_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def exact_marginal(model, params) -> tuple[np.ndarray, np.ndarray]:
    states = all_states(model.n_visible)
    log_p = -np.asarray(jax.vmap(model.free_energy, (None, 0))(params, jnp.asarray(states)))
    return states, np.exp(log_p - logsumexp(log_p))


def test_tempered_params_are_the_joint_energy_over_t():
    model = BernoulliRBM(5, 3)
    params = model.init(jax.random.key(0), 1.0)
    v, h = jnp.array([1.0, 0, 1, 1, 0]), jnp.array([0.0, 1, 1])
    scaled = model.tempered(params, 4.0)
    assert float(model.energy(scaled, v, h)) == pytest.approx(
        float(model.energy(params, v, h)) / 4.0, rel=1e-6
    )


def test_parallel_tempering_over_block_gibbs_samples_the_exact_rbm_marginal():
    """Two strongly coupled hidden units make a 4-mode marginal; the cold replica's visible
    moments match exact enumeration within 4 MCSE (6 + 15 comparisons: a false failure with
    probability <= 21 * 6.3e-5 = 1.3e-3)."""
    model = BernoulliRBM(6, 2)
    W = jnp.array([[4.0, 0], [4, 0], [4, 0], [0, 4], [0, 4], [0, 4]])
    params = RBMParams(W, jnp.full(6, -2.0), jnp.full(2, -6.0))
    sampler = ne.samplers.parallel_tempering(
        inner=ne.samplers.block_gibbs(), num_replicas=4, max_temperature=6.0
    )
    data = ne.sample(
        BoundEnergy(model.free_energy, params),
        sampler,
        key=jax.random.key(1),
        event_shape=(6,),
        support="01",
        num_chains=16,
        num_warmup=200,
        num_samples=1500,
    )
    v = np.asarray(data.posterior["x"], np.float64)
    assert set(np.unique(v)) <= {0.0, 1.0}
    states, probs = exact_marginal(model, params)
    pairs = list(itertools.combinations(range(6), 2))
    products = np.stack([v[..., i] * v[..., j] for i, j in pairs], axis=-1)
    assert_mean_close(v, probs @ states)
    assert_mean_close(products, [probs @ (states[:, i] * states[:, j]) for i, j in pairs])
    stats = data.sample_stats
    assert int(stats["round_trips"].sum()) > 0
    # the draws' potential energy is the free energy F(v), not the joint energy
    free = jax.vmap(model.free_energy, (None, 0))(params, jnp.asarray(v[0, :5]))
    np.testing.assert_allclose(stats["potential_energy"].values[0, :5], free, rtol=1e-5)


# Two 6-bit patterns (A: the first six bits on, B: the last six) with masses 0.8 and 0.2, each
# bit flipped with probability 0.05; a 4-hidden RBM. Measured (2026-12-06, CPU) with these
# settings over training keys 0..5: replica exchange put 0.787 to 0.842 of the model's mass
# nearer A (mean 0.81, sd 0.02); PCD-1 with as many chains swung from 0.23 to 0.99, its chains
# rarely crossing between the patterns. The asserted band, 0.8 +- 0.08, is four such sds.
A = np.r_[np.ones(6), np.zeros(6)]


def two_patterns(key, n: int) -> np.ndarray:
    key_which, key_flip = jax.random.split(key)
    which = np.asarray(jax.random.bernoulli(key_which, 0.8, (n,)))
    clean = np.where(which[:, None], A, 1.0 - A)
    flips = np.asarray(jax.random.bernoulli(key_flip, 0.05, clean.shape))
    return np.abs(clean - flips).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replica_exchange_pcd_sets_the_masses_of_modes_block_gibbs_rarely_crosses(seed):
    model = BernoulliRBM(12, 4)
    train = two_patterns(jax.random.key(0), 2000)
    num_steps = 2000
    fit = fit_rbm(
        model,
        model.init(jax.random.key(seed), 0.1, data=train),
        train,
        key=jax.random.key(100 + seed),
        method="replica_exchange",
        temperatures=np.geomspace(1.0, 8.0, 6),
        optimizer=optax.sgd(optax.linear_schedule(0.05, 0.0, num_steps), momentum=0.5),
        num_steps=num_steps,
        batch_size=20,
        num_chains=20,
        steps_per_chunk=num_steps,
    )
    states, probs = exact_marginal(model, fit.params)
    to_a, to_b = np.abs(states - A).sum(1), np.abs(states - (1.0 - A)).sum(1)
    mass_a = probs[to_a < to_b].sum() / (probs[to_a < to_b].sum() + probs[to_a > to_b].sum())
    assert abs(mass_a - 0.8) < 0.08, mass_a
    assert np.isfinite(fit.history["swap_rate_min"]).all()


def test_replica_exchange_options_are_checked():
    model = BernoulliRBM(4, 2)
    data = np.zeros((8, 4), np.float32)
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="temperatures is an option of method='replica_exchange'"):
        fit_rbm(model, params, data, key=jax.random.key(0), temperatures=[1.0, 2.0])
    with pytest.raises(ValueError, match="temperatures"):
        fit_rbm(
            model,
            params,
            data,
            key=jax.random.key(0),
            method="replica_exchange",
            temperatures=[2.0, 3.0],
        )
    with pytest.raises(TypeError, match="tempered"):
        rbm_move(GaussianBernoulliRBM(4, 2))
    with pytest.raises(TypeError, match="tempered"):
        block_gibbs.tempered_factory(GaussianBernoulliRBM(4, 2), None)


# --- class_weights -----------------------------------------------------------------------------


def test_class_weights_kl_and_its_standard_error_cover_the_truth():
    """Labels drawn from known shares p in 40 independent chains of 50 draws: the estimate of
    KL(p || q) lies within 4 of its standard errors (plus the plug-in bias) of the truth, and
    the shares within 4 of theirs (10 comparisons: Bonferroni 10 * 6.3e-5)."""
    p = np.array([0.3, 0.2, 0.2, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01])
    q = np.full(10, 0.1)
    rng = np.random.default_rng(0)
    labels = rng.choice(10, size=(40, 50), p=p)
    reference = np.repeat(np.arange(10), 150)
    weights = class_weights(labels, reference, 10)
    truth = float(np.sum(p * np.log(p / q)))
    bias = 9 / (2 * labels.size)
    assert abs(weights.kl - truth) < 4 * weights.kl_standard_error + bias
    assert np.all(np.abs(weights.frequencies - p) < 4 * weights.standard_error + 1e-12)
    np.testing.assert_allclose(weights.reference, q)
    assert np.nanmax(weights.rhat) < 1.01


def test_class_weights_rhat_names_chains_stuck_in_one_class_each():
    labels = np.repeat(np.arange(10)[:, None], 100, axis=1)  # chain c stays in class c
    weights = class_weights(labels, np.arange(10), 10)
    assert weights.kl == pytest.approx(0.0, abs=1e-12)  # the pooled shares are right...
    assert np.nanmin(weights.rhat) > 1.5  # ...but no chain mixed: R-hat says so


def test_class_weights_refuses_bad_labels():
    with pytest.raises(ValueError, match=r"labels must lie in 0..9"):
        class_weights(np.array([[0, 10]]), np.arange(10), 10)
    with pytest.raises(ValueError, match="integer class labels"):
        class_weights(np.array([0.5, 1.0]), np.arange(10), 10)
    with pytest.raises(ValueError, match=r"shape \(chains, draws\) or \(n,\)"):
        class_weights(np.zeros((2, 2, 2), int), np.arange(10), 10)
    with pytest.raises(ValueError, match="num_classes"):
        class_weights(np.zeros(3, int), np.zeros(3, int), 1)
