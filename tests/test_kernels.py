"""Statistical tests of annealed Langevin dynamics and replica exchange.

Every statistical test runs many independent chains under ``vmap`` and keeps the last draw of
each, so the draws are iid and the Monte Carlo standard error (MCSE) of a mean is
``sd / sqrt(n)``; tolerances are ``Z`` MCSEs. Keys are fixed.
"""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ebm.kernels import annealed_langevin, replica_exchange, ula

Z = 4.0  # two-sided z of every tolerance: a false alarm per statistic has probability 6e-5

# A correlated 2-D Gaussian N(MU, S); perturbed by noise sigma it is N(MU, S + sigma^2 I).
MU = np.array([1.0, -2.0])
S = np.array([[1.0, 0.5], [0.5, 2.0]])
_S_EIGVALS, _S_EIGVECS = np.linalg.eigh(S)
GAUSSIAN_SIGMAS = np.geomspace(10.0, 0.5, 8)
GAUSSIAN_STEPS_PER_LEVEL = 100
GAUSSIAN_STEP_SIZE = 0.5


def gaussian_score(x, sigma):
    return -(_S_EIGVECS / (_S_EIGVALS + sigma**2)) @ (_S_EIGVECS.T @ (x - MU))


def gaussian_energy(x, sigma):
    y = _S_EIGVECS.T @ (x - MU)
    return 0.5 * jnp.sum(y**2 / (_S_EIGVALS + sigma**2))


def ula_sweep_moments(sigmas, step_size, num_steps, denoise):
    """Exact mean and covariance after one unadjusted sweep on the Gaussian from
    N(0, sigma_1^2 I): every step x <- A x + (alpha/2) P mu + sqrt(alpha) z is linear."""
    mean, cov = np.zeros(2), sigmas[0] ** 2 * np.eye(2)
    for sigma in sigmas:
        precision = np.linalg.inv(S + sigma**2 * np.eye(2))
        alpha = step_size * sigma**2 / sigmas[-1] ** 2
        a = np.eye(2) - 0.5 * alpha * precision
        for _ in range(num_steps):
            mean = a @ mean + 0.5 * alpha * precision @ MU
            cov = a @ cov @ a.T + alpha * np.eye(2)
    if denoise:
        shrink = sigmas[-1] ** 2 * precision
        mean = (np.eye(2) - shrink) @ mean + shrink @ MU
        cov = (np.eye(2) - shrink) @ cov @ (np.eye(2) - shrink).T
    return mean, cov


def covariance_errors(sample_cov, cov, n):
    """z-scores of a sample covariance's upper triangle from ``n`` Gaussian draws, with the
    exact MCSE Var(C^_ij) = (C_ij^2 + C_ii C_jj) / (n - 1)."""
    var = np.diag(cov)
    z = (sample_cov - cov) / np.sqrt((cov**2 + np.outer(var, var)) / (n - 1))
    return z[np.triu_indices(2)]


def gaussian_moment_errors(x, mean, cov):
    """z-scores of the sample mean (MCSE sqrt(C_ii / n)) and covariance of the draws ``x``."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    z_mean = (x.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
    return z_mean, covariance_errors(np.cov(x.T), cov, n)


def run_sweep(algorithm, start, seed):
    """One sweep of ``algorithm`` for every row of ``start``."""
    keys = jax.random.split(jax.random.key(seed), start.shape[0])
    state, info = jax.jit(jax.vmap(algorithm.step))(keys, jax.vmap(algorithm.init)(start))
    assert bool(jnp.all(info.is_finite))
    return np.asarray(state.position), info


def wide_noise(seed, num_chains, scale):
    return scale * jax.random.normal(jax.random.key(seed), (num_chains, 2))


@pytest.mark.parametrize("denoise", [False, True])
def test_annealed_langevin_step_sizes_follow_schedule(denoise):
    """With the score s(x, sigma) = c sigma, a sweep from 0 with one step per level is
    Gaussian with mean sum_i (alpha_i / 2) c sigma_i (+ sigma_L^2 c sigma_L when denoising) and
    covariance sum_i alpha_i I, alpha_i = eps sigma_i^2 / sigma_L^2: drift alpha/2, noise
    variance alpha, levels in order."""
    sigmas, step_size, drift = np.array([2.0, 0.5]), 0.25, np.array([3.0, -1.0])
    algorithm = annealed_langevin.as_top_level_api(
        sigmas,
        step_size,
        1,
        score_fn=lambda x, sigma: drift * sigma,
        denoise=denoise,
    )
    x, _ = run_sweep(algorithm, jnp.zeros((8000, 2)), seed=7)
    alphas = step_size * sigmas**2 / sigmas[-1] ** 2
    mean = np.sum(0.5 * alphas * sigmas) * drift + denoise * sigmas[-1] ** 3 * drift
    z_mean, z_cov = gaussian_moment_errors(x, mean, np.sum(alphas) * np.eye(2))
    assert np.all(np.abs(z_mean) < Z), z_mean
    assert np.all(np.abs(z_cov) < Z), z_cov


@pytest.mark.parametrize("denoise", [False, True])
def test_annealed_langevin_matches_exact_ula_sweep(denoise):
    """Unadjusted sweeps with the exact perturbed Gaussian score: mean and covariance match the
    closed-form propagation of the ULA recursion (ULA bias and unfinished mixing included), and
    the Tweedie step's closed form when ``denoise``."""
    algorithm = annealed_langevin.as_top_level_api(
        GAUSSIAN_SIGMAS,
        GAUSSIAN_STEP_SIZE,
        GAUSSIAN_STEPS_PER_LEVEL,
        score_fn=gaussian_score,
        denoise=denoise,
    )
    x, info = run_sweep(algorithm, wide_noise(0, 8000, GAUSSIAN_SIGMAS[0]), seed=1)
    mean, cov = ula_sweep_moments(
        GAUSSIAN_SIGMAS, GAUSSIAN_STEP_SIZE, GAUSSIAN_STEPS_PER_LEVEL, denoise
    )
    z_mean, z_cov = gaussian_moment_errors(x, mean, cov)
    assert np.all(np.abs(z_mean) < Z), z_mean
    assert np.all(np.abs(z_cov) < Z), z_cov
    assert np.all(np.asarray(info.acceptance_rate) == 1.0)


def test_annealed_langevin_metropolis_targets_perturbed_gaussian():
    """MALA sweeps with the exact perturbed energy end at N(MU, S + sigma_L^2 I), while the
    unadjusted sweep's exact covariance misses it by more than the tolerance."""
    algorithm = annealed_langevin.as_top_level_api(
        GAUSSIAN_SIGMAS,
        GAUSSIAN_STEP_SIZE,
        GAUSSIAN_STEPS_PER_LEVEL,
        energy_fn=gaussian_energy,
        metropolis=True,
    )
    x, info = run_sweep(algorithm, wide_noise(2, 8000, GAUSSIAN_SIGMAS[0]), seed=3)
    target = S + GAUSSIAN_SIGMAS[-1] ** 2 * np.eye(2)
    z_mean, z_cov = gaussian_moment_errors(x, MU, target)
    assert np.all(np.abs(z_mean) < Z), z_mean
    assert np.all(np.abs(z_cov) < Z), z_cov
    acceptance = float(jnp.mean(info.acceptance_rate))
    assert 0.5 < acceptance < 1.0, acceptance

    _, ula_cov = ula_sweep_moments(
        GAUSSIAN_SIGMAS, GAUSSIAN_STEP_SIZE, GAUSSIAN_STEPS_PER_LEVEL, denoise=False
    )
    z_ula_bias = covariance_errors(ula_cov, target, x.shape[0])
    assert np.max(np.abs(z_ula_bias)) > Z, z_ula_bias


# A well-separated two-mode mixture with unequal weights; perturbed by noise sigma every
# component's sd becomes sqrt(sd^2 + sigma^2).
WEIGHTS = np.array([0.8, 0.2])
ANNEALED_MEANS = np.array([[4.0, 4.0], [-4.0, -4.0]])
ANNEALED_SIGMAS = np.geomspace(12.0, 0.3, 10)
ANNEALED_STEP_SIZE = 0.5 * ANNEALED_SIGMAS[-1] ** 2
NUM_MIXTURE_CHAINS = 4000
WEIGHT_TOLERANCE = Z * np.sqrt(WEIGHTS[0] * WEIGHTS[1] / NUM_MIXTURE_CHAINS)  # binomial MCSE


def mixture_logdensity(x, means, sd):
    sq_dist = jnp.sum((x - means) ** 2, axis=-1)
    return jax.nn.logsumexp(np.log(WEIGHTS) - 0.5 * sq_dist / sd**2 - 2 * jnp.log(sd))


def perturbed_mixture_energy(x, sigma):
    return -mixture_logdensity(x, ANNEALED_MEANS, jnp.sqrt(1.0 + sigma**2))


def perturbed_mixture_score(x, sigma):
    return -jax.grad(perturbed_mixture_energy)(x, sigma)


def first_mode_fraction(x, means):
    """Fraction of draws on the first mode's side of the bisecting hyperplane."""
    direction = means[0] - means[1]
    return float(np.mean((x - means.mean(0)) @ direction > 0))


@pytest.mark.parametrize(
    "model",
    [
        {"score_fn": perturbed_mixture_score},
        {"energy_fn": perturbed_mixture_energy, "metropolis": True},
    ],
    ids=["unadjusted-score", "metropolis-energy"],
)
def test_annealed_langevin_recovers_mixture_weights(model):
    algorithm = annealed_langevin.as_top_level_api(
        ANNEALED_SIGMAS, ANNEALED_STEP_SIZE, 200, **model
    )
    start = wide_noise(4, NUM_MIXTURE_CHAINS, ANNEALED_SIGMAS[0])
    x, _ = run_sweep(algorithm, start, seed=5)
    weight = first_mode_fraction(x, ANNEALED_MEANS)
    assert abs(weight - WEIGHTS[0]) < WEIGHT_TOLERANCE, (weight, WEIGHT_TOLERANCE)


def test_single_level_langevin_misses_mixture_weights():
    """Song & Ermon's motivation: Langevin at the smallest noise only, from the same wide
    noise and with as many steps, splits the chains by basin, not by weight."""
    algorithm = annealed_langevin.as_top_level_api(
        ANNEALED_SIGMAS[-1:],
        ANNEALED_STEP_SIZE,
        200 * ANNEALED_SIGMAS.size,
        score_fn=perturbed_mixture_score,
    )
    start = wide_noise(4, NUM_MIXTURE_CHAINS, ANNEALED_SIGMAS[0])
    x, _ = run_sweep(algorithm, start, seed=5)
    weight = first_mode_fraction(x, ANNEALED_MEANS)
    assert abs(weight - WEIGHTS[0]) > WEIGHT_TOLERANCE, (weight, WEIGHT_TOLERANCE)


# The replica-exchange target: modes 10 apart with sd 0.5, a 50-nat barrier MALA cannot cross.
TEMPERING_MEANS = np.array([[5.0, 0.0], [-5.0, 0.0]])
MALA_STEP_SIZE = 0.1
NUM_TEMPERING_STEPS = 800


def tempering_logdensity(x):
    return mixture_logdensity(x, TEMPERING_MEANS, 0.5)


def run_chains(algorithm, num_steps, seed):
    """Run NUM_MIXTURE_CHAINS chains from the minority mode; return the final states and the
    per-step infos averaged over chains."""
    start = jnp.broadcast_to(jnp.asarray(TEMPERING_MEANS[1]), (NUM_MIXTURE_CHAINS, 2))

    def one_step(states, key):
        keys = jax.random.split(key, NUM_MIXTURE_CHAINS)
        states, infos = jax.vmap(algorithm.step)(keys, states)
        return states, jax.tree.map(lambda x: jnp.mean(x, axis=0), infos)

    @jax.jit
    def run(key):
        keys = jax.random.split(key, num_steps)
        return jax.lax.scan(one_step, jax.vmap(algorithm.init)(start), keys)

    return run(jax.random.key(seed))


@pytest.mark.slow
def test_replica_exchange_recovers_mixture_weights():
    temperatures = replica_exchange.geometric_ladder(8, 50.0)
    algorithm = replica_exchange.as_top_level_api(
        tempering_logdensity,
        temperatures,
        lambda logdensity, t: blackjax.mala(logdensity, MALA_STEP_SIZE * t),
    )
    states, infos = run_chains(algorithm, NUM_TEMPERING_STEPS, seed=6)
    cold = np.asarray(states.inner_states.position[:, 0])
    weight = first_mode_fraction(cold, TEMPERING_MEANS)
    assert abs(weight - WEIGHTS[0]) < WEIGHT_TOLERANCE, (weight, WEIGHT_TOLERANCE)
    # Swap acceptance of each pair, averaged over the steps on which it was attempted.
    swap_acceptance = np.nanmean(np.asarray(infos.swap_acceptance), axis=0)
    assert np.all((swap_acceptance > 0.0) & (swap_acceptance < 1.0)), swap_acceptance
    assert np.all(np.asarray(infos.is_finite) == 1.0)


def test_mala_alone_stays_in_start_mode():
    algorithm = blackjax.mala(tempering_logdensity, MALA_STEP_SIZE)
    states, _ = run_chains(algorithm, NUM_TEMPERING_STEPS, seed=6)
    weight = first_mode_fraction(np.asarray(states.position), TEMPERING_MEANS)
    assert abs(weight - WEIGHTS[0]) > WEIGHT_TOLERANCE, (weight, WEIGHT_TOLERANCE)


def _annealed(**kwargs):
    arguments = {
        "sigmas": np.array([1.0, 0.1]),
        "step_size": 0.01,
        "num_steps_per_level": 2,
        "energy_fn": gaussian_energy,
    }
    return annealed_langevin.as_top_level_api(**(arguments | kwargs))


def _tempered(temperatures):
    return replica_exchange.as_top_level_api(
        tempering_logdensity, temperatures, lambda ld, t: blackjax.mala(ld, 0.1 * t)
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _annealed(sigmas=np.array([0.1, 1.0])), "sigmas"),
        (lambda: _annealed(sigmas=np.array([1.0, 1.0])), "sigmas"),
        (lambda: _annealed(sigmas=np.array([1.0, -0.1])), "sigmas"),
        (lambda: _annealed(step_size=0.0), "step_size"),
        (lambda: _annealed(step_size=-1.0), "step_size"),
        (lambda: _annealed(num_steps_per_level=0), "num_steps_per_level"),
        (lambda: _annealed(num_steps_per_level=1.5), "num_steps_per_level"),
        (lambda: annealed_langevin.build_kernel(0), "num_steps_per_level"),
        (lambda: _annealed(score_fn=gaussian_score), "exactly one of score_fn and energy_fn"),
        (lambda: _annealed(energy_fn=None), "exactly one of score_fn and energy_fn"),
        (
            lambda: _annealed(energy_fn=None, score_fn=gaussian_score, metropolis=True),
            "metropolis=True needs energy_fn",
        ),
        (lambda: _tempered(np.array([2.0, 4.0])), "temperatures"),
        (lambda: _tempered(np.array([1.0, 3.0, 2.0])), "temperatures"),
        (lambda: _tempered(np.array([1.0, 1.0])), "temperatures"),
        (lambda: _tempered(np.array([[1.0, 2.0]])), "temperatures"),
        (lambda: replica_exchange.geometric_ladder(1, 10.0), "num_replicas"),
        (lambda: replica_exchange.geometric_ladder(4, 1.0), "max_temperature"),
    ],
)
def test_bad_input_raises_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_geometric_ladder():
    ladder = np.asarray(replica_exchange.geometric_ladder(5, 16.0))
    assert ladder[0] == 1.0
    np.testing.assert_allclose(ladder, [1.0, 2.0, 4.0, 8.0, 16.0], rtol=1e-6)


def _counting(fn):
    """Wrap ``fn`` with a counter of the times JAX traces it."""
    calls = {"traces": 0}

    def counted(*args):
        calls["traces"] += 1
        return fn(*args)

    return counted, calls


def test_annealed_langevin_jit_vmap_no_retrace():
    energy, calls = _counting(gaussian_energy)
    num_levels, num_steps = 3, 4
    algorithm = annealed_langevin.as_top_level_api(
        np.geomspace(2.0, 0.5, num_levels),
        0.01,
        num_steps,
        energy_fn=energy,
        metropolis=True,
        denoise=True,
    )
    step = jax.jit(jax.vmap(algorithm.step))
    states = jax.vmap(algorithm.init)(jnp.zeros((16, 2)))
    states, info = step(jax.random.split(jax.random.key(0), 16), states)
    traces = calls["traces"]
    states, info = step(jax.random.split(jax.random.key(1), 16), states)
    assert calls["traces"] == traces
    assert np.all(np.asarray(info.num_grad_evals) == num_levels * (num_steps + 1))
    assert bool(jnp.all(info.is_finite))


def test_replica_exchange_jit_vmap_no_retrace_and_even_odd_swaps():
    """Any kernel fits, here our own unadjusted Langevin; swaps alternate between even and odd
    pairs, and ``state.position`` is the cold replica's position."""
    logdensity, calls = _counting(tempering_logdensity)
    num_replicas = 5
    algorithm = replica_exchange.as_top_level_api(
        logdensity,
        replica_exchange.geometric_ladder(num_replicas, 20.0),
        lambda ld, t: ula.as_top_level_api(ld, 0.05 * t),
    )
    step = jax.jit(jax.vmap(algorithm.step))
    states = jax.vmap(algorithm.init)(jnp.zeros((16, 2)))
    even = np.arange(num_replicas - 1) % 2 == 0
    for seed, attempted in [(0, even), (1, ~even), (2, even)]:
        states, info = step(jax.random.split(jax.random.key(seed), 16), states)
        if seed == 0:
            traces = calls["traces"]
        np.testing.assert_array_equal(np.asarray(info.swap_attempted), np.tile(attempted, (16, 1)))
        assert np.all(np.isnan(np.asarray(info.swap_acceptance)[:, ~attempted]))
    assert calls["traces"] == traces
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(lambda s: s.position)(states)),
        np.asarray(states.inner_states.position[:, 0]),
    )
    assert np.all(np.asarray(info.num_grad_evals) == num_replicas)
    assert np.all(np.asarray(info.inner_info.num_grad_evals) == 1)
