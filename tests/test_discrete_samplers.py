"""Discrete samplers through sample(): every one against exact enumeration, the mismatches of
discrete and continuous samplers and targets refused in our words, RBMs by block Gibbs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from stats import assert_mean_close

import numpyro_ebm as ne
from numpyro_ebm.models.ising import Ising

BETA = 0.3
MODEL = Ising(4, beta=BETA)


def statistics(s):
    return jnp.stack([jnp.abs(jnp.mean(s)), MODEL.energy(s) / s.size])


TRUTH = np.asarray(ne.evidence.exact.expectation(MODEL, statistics, (4, 4)))


@pytest.mark.parametrize(
    "sampler",
    [
        "gibbs",
        "checkerboard",
        "gibbs_with_gradients",
        "swendsen_wang",
        ne.samplers.parallel_tempering(inner=ne.samplers.gibbs(), temperatures=[1.0, 1.5, 2.5]),
        ne.samplers.parallel_tempering(
            inner=ne.samplers.swendsen_wang(), temperatures=[1.0, 1.5, 2.5]
        ),
    ],
    ids=["gibbs", "checkerboard", "gibbs_with_gradients", "swendsen_wang", "pt_gibbs", "pt_sw"],
)
def test_every_discrete_sampler_matches_exact_enumeration(sampler):
    idata = ne.sample(MODEL.energy, sampler, key=jax.random.key(0), temperature=1 / BETA,
                      support="pm1", event_shape=(4, 4), num_chains=32, num_samples=400,
                      num_warmup=100)
    spins = idata.posterior["x"].values
    draws = np.asarray(jax.vmap(jax.vmap(statistics))(spins))
    assert_mean_close(draws, TRUTH)
    # the reported potential is beta * E
    np.testing.assert_allclose(
        idata.sample_stats.potential_energy.values, BETA * 16 * draws[..., 1], rtol=1e-5
    )


def test_block_gibbs_samples_an_rbm_from_its_bound_free_energy():
    from numpyro_ebm.models.rbm import BernoulliRBM

    rbm = BernoulliRBM(5, 3)
    params = rbm.init(jax.random.key(0), scale=1.0)
    energy = ne.BoundEnergy(rbm.free_energy, params)
    truth = ne.evidence.exact.expectation(lambda v: -energy(v), lambda v: v, (5,), values=(0, 1))
    idata = ne.sample(energy, "block_gibbs", key=jax.random.key(1), support="01",
                      event_shape=(5,), num_chains=16, num_samples=500, num_warmup=50)
    assert_mean_close(idata.posterior["x"].values, np.asarray(truth))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ne.sample(MODEL.energy, "mala", key=jax.random.key(0), support="pm1",
                           event_shape=(4, 4)), "not a discrete target.*use gibbs"),
        (lambda: ne.sample(MODEL.energy, "gibbs", key=jax.random.key(0), event_shape=(4, 4)),
         "give support='01' or 'pm1'"),
        (lambda: ne.sample(MODEL.energy, "gibbs", key=jax.random.key(0), support="pm1",
                           init_position=jnp.zeros((4, 4, 4))), "must hold only -1 and 1"),
        (lambda: ne.sample(MODEL.energy, "gibbs", key=jax.random.key(0), support="spins",
                           event_shape=(4, 4)), "support must be one of"),
        (lambda: ne.sample(lambda s: -jnp.sum(s * jnp.roll(s, 2, 0)), "swendsen_wang",
                           key=jax.random.key(0), support="pm1", event_shape=(4, 4)),
         "swendsen_wang needs an Ising model in a field.*couples sites"),
        (lambda: ne.sample(lambda s: -jnp.sum(jnp.arange(16.0).reshape(4, 4) * s
                                              * jnp.roll(s, 1, 1)),
                           "swendsen_wang", key=jax.random.key(0), support="pm1",
                           event_shape=(4, 4)), "one coupling K between nearest neighbours"),
        (lambda: ne.sample(lambda s: -MODEL.energy(s), "swendsen_wang",
                           key=jax.random.key(0), support="pm1", event_shape=(4, 4)),
         "ferromagnetic coupling K >= 0"),
        (lambda: ne.sample(lambda v: jnp.sum(v), "block_gibbs", key=jax.random.key(0),
                           support="01", event_shape=(4,)), "block_gibbs samples a bipartite"),
    ],
)
def test_mismatched_samplers_and_targets_are_refused_before_compiling(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def quadratic_in_sites(s):
    """The Ising energy plus a term quadratic in each spin: on {-1, +1} it is a field,
    0.3 (s - 0.5)^2 = 0.3 (1.25 - s), but its gradient is not the flip log ratio."""
    return MODEL.energy(s) + 0.3 * jnp.sum((s - 0.5) ** 2)


def test_checkerboard_curvature_samples_a_log_density_quadratic_in_each_site():
    truth = ne.evidence.exact.expectation(
        lambda s: -BETA * quadratic_in_sites(s), lambda s: s.ravel(), (4, 4)
    )
    with pytest.raises(ValueError, match=r"not affine in site.*flip_ratio='curvature'"):
        ne.sample(quadratic_in_sites, "checkerboard", key=jax.random.key(0), support="pm1",
                  temperature=1 / BETA, event_shape=(4, 4))
    idata = ne.sample(
        quadratic_in_sites,
        ne.samplers.checkerboard(flip_ratio="curvature"),
        key=jax.random.key(1),
        temperature=1 / BETA,
        support="pm1",
        event_shape=(4, 4),
        num_chains=32,
        num_samples=400,
        num_warmup=100,
    )
    spins = idata.posterior["x"].values.reshape(32, 400, 16)
    assert_mean_close(spins, np.asarray(truth), z=4.5)  # 16 components: 4.5 MCSE each
    assert float(np.abs(np.asarray(truth)).mean()) > 0.05  # the field the quadratic hides


@pytest.mark.parametrize(
    ("energy", "message"),
    [
        (lambda s: MODEL.energy(s) + 0.3 * jnp.sum(jnp.exp(s)), "degree at most two"),
        (lambda s: MODEL.energy(s) + 0.3 * s[0, 0] * s[0, 2], r"couples sites \(0, 0\) and"),
    ],
    ids=["cubic", "same-colour"],
)
def test_checkerboard_curvature_refuses_what_it_cannot_sample(energy, message):
    with pytest.raises(ValueError, match=message):
        ne.sample(energy, ne.samplers.checkerboard(flip_ratio="curvature"),
                  key=jax.random.key(0), support="pm1", event_shape=(4, 4))


def test_swendsen_wang_reads_an_ising_model_in_a_field_off_any_log_density():
    """A log density that is an Ising model with a field varying by site, written without the
    Ising class: the cluster sweeps read its coupling and fields at every sweep."""
    field = 0.3 * jnp.sin(jnp.arange(16.0)).reshape(4, 4)

    def logdensity(s):
        return -BETA * MODEL.energy(s) + jnp.sum(field * s) - 0.7 * jnp.sum(s**2)

    def energy(s):
        return -logdensity(s)

    truth = np.asarray(ne.evidence.exact.expectation(logdensity, lambda s: s.ravel(), (4, 4)))
    idata = ne.sample(energy, "swendsen_wang", key=jax.random.key(3), support="pm1",
                      event_shape=(4, 4), num_chains=32, num_samples=400, num_warmup=100)
    assert_mean_close(idata.posterior["x"].values.reshape(32, 400, 16), truth)
