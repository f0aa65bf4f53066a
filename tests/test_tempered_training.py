"""Maximum likelihood with replica-exchange negatives: the masses of separated modes, which
score matching cannot identify, are learned (training/tempered.py, workflow's stage 2)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from numpyro_ebm import datasets, metrics, training, workflow
from numpyro_ebm.evidence import exact

W = datasets.WEIGHTED_RING
CENTERS = jnp.asarray(W.centers)


def mixture_energy(params, x):
    """A mixture of the six ring components with free logits: the only unknowns are the
    masses, which score matching cannot see (each component's score is its own)."""
    d2 = jnp.sum((x - CENTERS) ** 2, axis=-1)
    return -jax.nn.logsumexp(jax.nn.log_softmax(params["logits"]) - 0.5 * d2 / W.std**2)


def test_replica_exchange_pcd_learns_the_masses_of_separated_modes():
    # The maximum-likelihood masses of components this far apart (13 sds) are the data's
    # component frequencies (to 1e-6): the objective must find them from equal logits, where
    # short chains that cannot cross (CD, PCD) find no gradient at all.
    data = datasets.ring_mixture(jax.random.key(0), 4000, W.weights, W.radius, W.std)
    frequencies = metrics.mode_weights(np.asarray(data), W.centers).weights
    objective = training.replica_exchange_pcd(
        mixture_energy, num_chains=256, k=4, step_size=0.005, init_positions=data[:256]
    )
    result = training.fit(
        objective,
        {"logits": jnp.zeros(6)},
        data,
        key=jax.random.key(1),
        optimizer=optax.adam(optax.cosine_decay_schedule(0.05, 600, alpha=0.0)),
        num_steps=600,
        batch_size=256,
        progress=False,
    )
    learned = np.asarray(jax.nn.softmax(result.params["logits"]))
    # tolerance: the last updates' gradient noise, 0.004 to 0.011 over keys 1 to 8
    np.testing.assert_allclose(learned, frequencies, atol=0.03)
    state = result.loss_state
    assert state.positions.shape == (256, 8, 2)
    assert 0.4 < float(state.acceptance) < 0.75  # the step size adapted towards 0.574
    assert float(jnp.min(state.swap_rate)) > 0.2  # the ladder connects the modes
    assert int(state.round_trips) > 0


def test_combine_sums_weighted_terms_and_keeps_their_states():
    data = datasets.ring_mixture(jax.random.key(0), 256, W.weights, W.radius, W.std)
    params = {"logits": jnp.zeros(6)}
    ml = training.replica_exchange_pcd(mixture_energy, num_chains=8, k=1)
    constant = training.from_loss(lambda p, b, k: (jnp.sum(p["logits"] ** 2) + 3.0, {"c": 1.0}))
    both = training.combine(ml=(ml, 2.0), constant=(constant, 0.5))
    state = both.init(jax.random.key(0), params, data[0])
    assert set(state) == {"ml", "constant"} and state["constant"] is None
    value, (aux, new_state) = both.loss(params, data[:16], jax.random.key(1), state)
    assert float(value) == pytest.approx(2.0 * float(aux["ml/loss"]) + 0.5 * 3.0, rel=1e-5)
    assert {"ml/energy_pos", "ml/acceptance", "constant/c", "constant/loss"} <= set(aux)
    assert new_state["ml"].positions.shape == (8, 8, 2)
    assert both.options["ml"]["weight"] == 2.0 and both.name == "combine"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: training.combine(), "at least one term"),
        (lambda: training.combine(a=(1, 2)), "must be an \\(Objective, weight\\) pair"),
        (
            lambda: training.combine(a=(training.dsm(mixture_energy, 0.1), -1.0)),
            "the weight of 'a'",
        ),
        (lambda: training.replica_exchange_pcd(mixture_energy, step_size=0.0), "step_size"),
        (lambda: training.replica_exchange_pcd(mixture_energy, num_chains=0), "num_chains"),
        (
            lambda: training.replica_exchange_pcd(mixture_energy, temperatures=[2.0, 3.0]),
            "starting at exactly 1",
        ),
        (
            lambda: training.replica_exchange_pcd(mixture_energy, target_acceptance_rate=1.5),
            "target_acceptance_rate",
        ),
        (lambda: training.replica_exchange_pcd(mixture_energy, data_noise=-0.1), "data_noise"),
        (
            lambda: training.replica_exchange_pcd(
                mixture_energy, num_chains=4, init_positions=np.zeros((3, 2))
            ),
            "num_chains=4 rows",
        ),
    ],
)
def test_bad_options_are_refused_in_our_words(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_grid_quadrature_and_mode_weights_of_a_known_density():
    def energy(x):
        return -datasets.ring_mixture_log_prob(x, W.weights, W.radius, W.std, 0.05)

    # a normalized density: log Z = 0 (the box [-4, 4]^2 holds all but ~1e-20 of the mass)
    assert exact.grid_log_partition(energy, [-4, -4], [4, 4], 256) == pytest.approx(0, abs=1e-4)
    weights = metrics.density_mode_weights(energy, W.centers, [-4, -4], [4, 4])
    np.testing.assert_allclose(weights, W.weights, atol=1e-4)
    draws = datasets.ring_mixture(jax.random.key(3), 20_000, W.weights, W.radius, W.std)
    counted = metrics.mode_weights(np.asarray(draws).reshape(20, 1000, 2), W.centers)
    z = (counted.weights - np.asarray(W.weights)) / counted.standard_error
    # six z-scores, Bonferroni at a 1e-3 family-wise false-failure rate: |z| < 4.0
    assert np.all(np.abs(z) < 4.0), z


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.mode_weights(np.zeros((10, 3)), W.centers), "draws must have shape"),
        (lambda: metrics.mode_weights(np.full((10, 2), np.nan), W.centers), "draws"),
        (lambda: metrics.mode_weights(np.zeros((10, 2)), np.zeros(2)), "centers must"),
        (lambda: exact.grid([0, 0], [1], 10), "one bound per dimension"),
        (lambda: exact.grid([0], [0], 10), "upper > lower"),
        (lambda: exact.grid_log_partition(lambda x: jnp.nan * x[0], [0], [1]), "grid"),
        (lambda: datasets.ring_mixture(jax.random.key(0), 5, [0.5, 0.6], 2, 0.1), "sum to 1"),
    ],
)
def test_bad_inputs_of_the_weight_metrics_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_default_training_gets_the_mode_weights_right(seed, tmp_path):
    # the workflow at reduced size (narrower net, fewer steps); the full size is in
    # benchmarks/bench_mode_weights.py
    key = jax.random.key(seed)
    data = np.asarray(datasets.toy("weighted_ring", jax.random.fold_in(key, 1), 5000))
    settings = workflow.TrainSettings(
        num_steps=3000, hidden=(64, 64, 64), likelihood_steps=600, likelihood_chains=256
    )
    trained, _ = workflow.train(data, settings, key=key, out_dir=tmp_path, progress=False)
    weights = metrics.density_mode_weights(workflow.energy_of(trained), W.centers, [-4, -4], [4, 4])
    assert np.max(np.abs(weights - np.asarray(W.weights))) < 0.03, weights
    held_out = trained.metadata["held_out"]
    # AIS agrees with quadrature within 4 of its standard errors
    gap = held_out["log_z"] - held_out["log_z_quadrature"]
    assert abs(gap) < 4 * held_out["log_z_standard_error"] + 0.02, held_out


def test_data_the_model_cannot_take_are_refused_before_compiling():
    # probe row: data of the wrong width for the net in fit() gave JAX's dot_general error
    from flax import nnx

    import numpyro_ebm as ne

    apply, params = ne.as_pure(ne.MLPEnergy((2,), hidden=(8,), rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match=r"examples of shape \(3,\)\); does the model take"):
        training.fit(
            training.dsm(apply, 0.1),
            params,
            np.zeros((10, 3), np.float32),
            key=jax.random.key(0),
            optimizer=optax.adam(1e-3),
            num_steps=2,
            batch_size=4,
            progress=False,
        )


@pytest.mark.parametrize(
    "model, error, message",
    [
        ({"score_fn": lambda x: x}, TypeError, "must take \\(x, sigma\\)"),
        ({"score_fn": lambda x, s: jnp.sum(x)}, ValueError, "an array of x's shape"),
        ({"energy_fn": lambda x, s: x}, ValueError, "must return a scalar"),
    ],
)
def test_flow_refuses_models_of_another_signature_in_our_words(model, error, message):
    # probe rows: a one-argument score, a scalar score, a vector energy gave JAX's errors
    from numpyro_ebm.evidence import flow

    with pytest.raises(error, match=message):
        flow.probability_flow_log_likelihood(
            jax.random.key(0), np.zeros((5, 2), np.float32), sigma_min=0.01, sigma_max=1.0, **model
        )
