"""Statistical tests of the discrete kernels against exact enumeration and Onsager's solution.

Chains run under ``vmap`` + ``lax.scan`` from random (or ordered) starts; after a burn-in, the
mean of a statistic over chains and draws is compared with the exact value within ``Z`` Monte
Carlo standard errors, the MCSE being sd / sqrt(ESS) with the multi-chain ESS
(``tests/stats.py``). Keys are fixed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ebm.diagnostics import rhat
from numpyro_ebm.evidence import exact
from numpyro_ebm.kernels import (
    checkerboard,
    gibbs,
    gibbs_with_gradients,
    replica_exchange,
    swendsen_wang,
)
from numpyro_ebm.models.ising import Ising, PairwiseBinary, onsager_energy, onsager_magnetization
from tests.stats import assert_mean_close, mcse_mean

Z = 4.0  # two-sided z of every tolerance: a false alarm per statistic has probability 6e-5
L_SMALL = 4  # 2^16 states: exact enumeration
BETAS = (0.3, 0.6)  # either side of beta_c = 0.4407


def random_spins(key, shape, spins="pm1"):
    bits = jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32)
    return 2 * bits - 1 if spins == "pm1" else bits


def run_chains(algorithm, key, starts, num_steps, statistic):
    """``statistic(position)`` after each of ``num_steps`` steps of every chain, shape
    ``(chains, num_steps, ...)``."""

    def one_chain(chain_key, start):
        def step(state, step_key):
            state, _ = algorithm.step(step_key, state)
            return state, statistic(state.position)

        _, stats = jax.lax.scan(step, algorithm.init(start), jax.random.split(chain_key, num_steps))
        return stats

    keys = jax.random.split(key, starts.shape[0])
    return np.asarray(jax.jit(jax.vmap(one_chain))(keys, starts))


def ising_statistics(model):
    return lambda s: jnp.stack([jnp.abs(model.magnetization(s)), model.energy(s) / s.size])


@pytest.fixture(scope="module")
def exact_ising():
    """Exact (mean |m|, energy per site) of the 4x4 periodic lattice at each beta."""
    out = {}
    for beta in BETAS:
        model = Ising(L_SMALL, beta=beta)
        out[beta] = np.asarray(
            exact.expectation(model, ising_statistics(model), model.shape, chunk_size=8192)
        )
    return out


KERNELS = {
    "gibbs_random_heat_bath": (lambda m: gibbs.as_top_level_api(m), 64, 400),
    "gibbs_systematic_metropolis": (
        lambda m: gibbs.as_top_level_api(m, scan="systematic", update="metropolis"),
        64,
        400,
    ),
    "checkerboard_heat_bath": (lambda m: checkerboard.as_top_level_api(m), 64, 800),
    "checkerboard_metropolis": (
        lambda m: checkerboard.as_top_level_api(m, update="metropolis"),
        64,
        800,
    ),
    "gibbs_with_gradients": (lambda m: gibbs_with_gradients.as_top_level_api(m), 64, 4000),
    "swendsen_wang": (lambda m: swendsen_wang.as_top_level_api(m), 64, 400),
}


@pytest.mark.parametrize("beta", [BETAS[0], pytest.param(BETAS[1], marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", list(KERNELS))
def test_every_kernel_matches_exact_magnetization_and_energy_of_4x4_ising(name, beta, exact_ising):
    make, num_chains, num_steps = KERNELS[name]
    model = Ising(L_SMALL, beta=beta)
    key_start, key_run = jax.random.split(jax.random.key(13))
    starts = random_spins(key_start, (num_chains, *model.shape))
    draws = run_chains(make(model), key_run, starts, num_steps, ising_statistics(model))
    assert_mean_close(draws[:, num_steps // 5 :], exact_ising[beta], z=Z)


@pytest.mark.parametrize(
    "name", ["checkerboard", pytest.param("swendsen_wang", marks=pytest.mark.slow)]
)
def test_ordered_32x32_lattice_matches_onsager(name):
    """At beta = 0.6 the correlation length is xi = 1 / (2 (K - K*)) = 1.73 (K* the dual
    coupling, tanh K* = exp(-2K)), so the periodic 32 x 32 lattice's <|m|> and energy per site
    differ from the infinite lattice's by O(exp(-L / xi)) ~ 1e-8: far below the MCSE, and the
    tolerance is Z MCSE alone. Chains start ordered (all up), the equilibrium phase."""
    beta, size, num_chains, num_steps = 0.6, 32, 16, 200
    model = Ising(size, beta=beta)
    algorithm = (
        checkerboard.as_top_level_api(model)
        if name == "checkerboard"
        else swendsen_wang.as_top_level_api(model)
    )
    starts = jnp.ones((num_chains, size, size))
    draws = run_chains(algorithm, jax.random.key(7), starts, num_steps, ising_statistics(model))
    truth = [float(onsager_magnetization(beta)), float(onsager_energy(beta))]
    assert_mean_close(draws[:, num_steps // 5 :], truth, z=Z)


@pytest.mark.slow
def test_parallel_tempering_mixes_the_two_ordered_states_where_gibbs_does_not():
    """4x4 lattice at beta = 0.7: flipping the magnetization costs two domain walls, a barrier
    of 2 * 2L * J * beta = 11.2 nats, so one heat-bath chain never leaves its ordered state in
    300 sweeps (measured R-hat 4.2). Replica exchange over 8 temperatures in [1, 4] (beta 0.7
    .. 0.175) crosses through the hot replicas (measured R-hat 1.003 over 2000 steps). Half of
    the chains start all up, half all down."""
    beta, num_chains, num_steps = 0.7, 8, 2000
    model = Ising(L_SMALL, beta=beta)
    starts = jnp.concatenate(
        [jnp.ones((num_chains // 2, *model.shape)), -jnp.ones((num_chains // 2, *model.shape))]
    )
    magnetization = model.magnetization

    single = run_chains(
        gibbs.as_top_level_api(model), jax.random.key(3), starts, 300, magnetization
    )
    tempered = run_chains(
        replica_exchange.as_top_level_api(
            model,
            replica_exchange.geometric_ladder(8, 4.0),
            lambda logdensity, temperature: checkerboard.as_top_level_api(logdensity),
        ),
        jax.random.key(3),
        starts,
        num_steps,
        magnetization,
    )
    assert float(rhat(single)) > 1.1
    assert float(rhat(tempered)) < 1.01
    assert abs(tempered.mean()) < Z * float(mcse_mean(tempered))  # +m and -m equally often


def pairwise_model(spins):
    key_w, key_b = jax.random.split(jax.random.key(5))
    d = 10
    upper = jnp.triu(jax.random.normal(key_w, (d, d)), k=1) * 0.4
    couplings = upper + upper.T
    fields = jax.random.normal(key_b, (d,)) * 0.5
    return PairwiseBinary(couplings, fields, spins=spins)


def first_and_second_moments(x):
    return jnp.concatenate([x, (x[:, None] * x[None, :])[jnp.triu_indices(x.shape[0], k=1)]])


@pytest.mark.parametrize(
    ("name", "spins"),
    [
        ("gibbs", "pm1"),
        ("gibbs_with_gradients", "01"),
        pytest.param("gibbs", "01", marks=pytest.mark.slow),
        pytest.param("gibbs_with_gradients", "pm1", marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow
def test_pairwise_binary_marginals_and_pair_moments_match_enumeration(name, spins):
    model = pairwise_model(spins)
    values = (-1, 1) if spins == "pm1" else (0, 1)
    truth = exact.expectation(model, first_and_second_moments, model.shape, values)
    if name == "gibbs":
        algorithm, num_steps = gibbs.as_top_level_api(model, spins=spins), 500
    else:
        algorithm, num_steps = gibbs_with_gradients.as_top_level_api(model, spins=spins), 3000
    starts = random_spins(jax.random.key(11), (32, *model.shape), spins)
    draws = run_chains(algorithm, jax.random.key(12), starts, num_steps, first_and_second_moments)
    assert_mean_close(draws[:, num_steps // 5 :], np.asarray(truth), z=Z)


def test_infos_report_acceptance_finiteness_gradient_cost_and_cluster_size():
    model = Ising(L_SMALL, beta=0.3)
    start = jnp.ones(model.shape)
    key = jax.random.key(0)

    def first_info(algorithm):
        return jax.jit(algorithm.step)(key, algorithm.init(start))[1]

    info = first_info(gibbs.as_top_level_api(model))
    assert (float(info.acceptance_rate), int(info.num_grad_evals)) == (1.0, 0)
    info = first_info(checkerboard.as_top_level_api(model, update="metropolis"))
    assert 0 < float(info.acceptance_rate) < 1 and int(info.num_grad_evals) == 2
    info = first_info(gibbs_with_gradients.as_top_level_api(model))
    assert int(info.num_grad_evals) == 1 and bool(info.is_finite)
    info = first_info(swendsen_wang.as_top_level_api(model))
    assert float(info.mean_cluster_size) * int(info.num_clusters) == pytest.approx(16)


@pytest.mark.parametrize("side", [2, 4])
def test_swendsen_wang_reads_the_ising_form_off_a_log_density_per_bond(side):
    # on a side of 2 two bonds join each pair: the coupling was read as 2K and the model
    # refused as "not an Ising model"
    model = Ising(side, J=1.0, h=0.4, beta=0.3)
    spins = jnp.where(jax.random.bernoulli(jax.random.key(0), 0.5, (side, side)), 1.0, -1.0)
    coupling, fields = swendsen_wang.ising_in_a_field(model, spins)
    np.testing.assert_allclose(coupling, 0.3, rtol=1e-5)
    np.testing.assert_allclose(fields, 0.12, rtol=1e-4)
    direct = swendsen_wang.as_top_level_api(model)
    read = swendsen_wang.for_log_density(model, "pm1")
    key = jax.random.key(1)
    np.testing.assert_array_equal(
        direct.step(key, direct.init(spins))[0].position,
        read.step(key, read.init(spins))[0].position,
    )


def test_cluster_labels_are_the_connected_components():
    right = jnp.zeros((4, 4), bool).at[0, 3].set(True).at[2, 1].set(True)
    down = jnp.zeros((4, 4), bool).at[3, 0].set(True)
    labels = np.asarray(swendsen_wang.cluster_labels(right, down))
    # (0,3)-(0,0) across the boundary, (3,0)-(0,0) across the other: one cluster {0, 3, 12}
    assert labels[0, 0] == labels[0, 3] == labels[3, 0] == 0
    assert labels[2, 1] == labels[2, 2] == 9
    assert len(np.unique(labels)) == 16 - 3


@pytest.mark.parametrize(
    ("make", "position", "match"),
    [
        (lambda m: gibbs.as_top_level_api(m), jnp.full((4, 4), 0.5), "position must hold"),
        (lambda m: checkerboard.as_top_level_api(m), jnp.zeros((4, 4)), "position must hold"),
        (lambda m: gibbs_with_gradients.as_top_level_api(m), jnp.eye(4) * 2.0, "position"),
        (lambda m: swendsen_wang.as_top_level_api(m), jnp.full((4, 4), 0.3), "position"),
        (lambda m: checkerboard.as_top_level_api(m), jnp.ones((5, 5)), "every side is even"),
        (lambda m: swendsen_wang.as_top_level_api(m), jnp.ones((3, 3)), "model's shape"),
    ],
)
def test_discrete_kernels_refuse_a_non_binary_or_misshaped_start(make, position, match):
    with pytest.raises(ValueError, match=match):
        make(Ising(4)).init(position)


def test_kernel_options_are_checked_before_anything_compiles():
    model = Ising(4)
    with pytest.raises(ValueError, match="scan must be"):
        gibbs.as_top_level_api(model, scan="diagonal")
    with pytest.raises(ValueError, match="update must be"):
        checkerboard.as_top_level_api(model, update="glauber")
    with pytest.raises(ValueError, match="spins must be"):
        gibbs_with_gradients.as_top_level_api(model, spins="+-")
    with pytest.raises(TypeError, match="logdensity_fn must be callable"):
        gibbs.as_top_level_api("ising")
    with pytest.raises(ValueError, match="J > 0"):
        swendsen_wang.as_top_level_api(Ising(4, J=-1.0))
    with pytest.raises(TypeError, match="needs an Ising model"):
        swendsen_wang.as_top_level_api(lambda s: -jnp.sum(s))
