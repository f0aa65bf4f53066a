"""Kernel Stein discrepancy, nested R-hat and Pareto k-hat of ``numpyro_ebm.diagnostics``:
against direct float64 formulas from the papers (and ArviZ's ``psislw``), under ``jit``, and
their input checks."""

import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from numpyro_ebm import diagnostics

# --------------------------------------------------------------------------- references


def ksd_reference(x, score, c=1.0, beta=-0.5):
    """Gorham & Mackey's (2017) V-statistic, written directly: the full n x n Langevin Stein
    kernel of the IMQ kernel in float64, from explicit gradients of k."""
    x = np.asarray(x, np.float64)
    s = np.asarray(score, np.float64)
    d = x.shape[1]
    r = x[:, None, :] - x[None, :, :]
    r2 = np.sum(r**2, axis=-1)
    q = c**2 + r2
    k = q**beta
    grad_x = 2 * beta * q[..., None] ** (beta - 1) * r  # d k / d x
    grad_y = -grad_x  # d k / d y
    trace = -2 * beta * d * q ** (beta - 1) - 4 * beta * (beta - 1) * q ** (beta - 2) * r2
    k_p = (
        (s @ s.T) * k
        + np.einsum("id,ijd->ij", s, grad_y)
        + np.einsum("jd,ijd->ij", s, grad_x)
        + trace
    )
    return np.sqrt(k_p.mean())


def nested_rhat_reference(x, labels):
    """Margossian et al. (2024), equations 4 to 8, one superchain at a time, in float64."""
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    n = x.shape[1]
    means, between_chain, within_chain = [], [], []
    for label in np.unique(labels):
        chains = x[labels == label]
        m = chains.shape[0]
        chain_means = chains.mean(axis=1)
        means.append(chain_means.mean())
        between_chain.append(
            np.sum((chain_means - chain_means.mean()) ** 2) / (m - 1) if m > 1 else 0.0
        )
        within_chain.append(
            np.mean([np.sum((c - c.mean()) ** 2) / (n - 1) for c in chains]) if n > 1 else 0.0
        )
    means = np.array(means)
    between = np.sum((means - means.mean()) ** 2) / (len(means) - 1)
    within = np.mean(np.array(between_chain) + np.array(within_chain))
    return np.sqrt(1.0 + between / within)


def psis_khat(log_weights, reff=1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(az.psislw(np.array(log_weights, np.float64), reff=reff)[1])


def gpd_log_weights(k, n=2000, seed=0):
    return np.log(stats.genpareto.rvs(c=k, size=n, random_state=np.random.default_rng(seed)))


# --------------------------------------------------------------------------- KSD

STANDARD = np.asarray(jax.random.normal(jax.random.key(0), (200, 3)))


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (2.0, 0.0), (1.0, 1.0)])
def test_ksd_matches_the_direct_formula(scale, shift):
    x = STANDARD * scale + shift
    expected = ksd_reference(x, -x)
    from_score = float(diagnostics.ksd(x, -x))
    from_energy = float(diagnostics.ksd(x, energy=lambda z: 0.5 * jnp.sum(z**2)))
    assert from_score == pytest.approx(expected, rel=1e-3)
    assert from_energy == pytest.approx(expected, rel=1e-3)


def test_ksd_other_kernel_parameters_match_the_direct_formula():
    x = STANDARD
    expected = ksd_reference(x, -x, c=0.5, beta=-0.3)
    assert float(diagnostics.ksd(x, -x, c=0.5, beta=-0.3)) == pytest.approx(expected, rel=1e-3)


def test_ksd_chunked_equals_unchunked_and_chains_pool():
    x = STANDARD * 1.5
    whole = float(diagnostics.ksd(x, -x, block_size=200))
    for block in (1, 7, 64):  # 7 does not divide 200: the last block is padded
        assert float(diagnostics.ksd(x, -x, block_size=block)) == pytest.approx(whole, rel=1e-5)
    chains = x.reshape(4, 50, 3)
    assert float(diagnostics.ksd(chains, -chains)) == pytest.approx(whole, rel=1e-5)


def test_ksd_ranks_exact_draws_first():
    x = STANDARD
    exact = float(diagnostics.ksd(x, -x))
    wide = float(diagnostics.ksd(2.0 * x, -2.0 * x))
    shifted = float(diagnostics.ksd(x + 1.0, -(x + 1.0)))
    assert exact < wide and exact < shifted
    assert exact < 0.5 * min(wide, shifted)


def test_ksd_is_blind_to_mixing_proportions():
    """Wenliang & Kanagawa (2020): draws from one mode of two far-apart modes score about as
    well as (here better than) correct draws; only the score near the draws is seen."""

    def energy(z):
        return -jnp.logaddexp(-0.5 * jnp.sum((z - 8.0) ** 2), -0.5 * jnp.sum((z + 8.0) ** 2))

    z = jax.random.normal(jax.random.key(0), (400, 1))
    side = jnp.where(jax.random.bernoulli(jax.random.key(1), 0.5, (400, 1)), 1.0, -1.0)
    both_modes = float(diagnostics.ksd(z + 8.0 * side, energy=energy))
    one_mode = float(diagnostics.ksd(z + 8.0, energy=energy))
    assert one_mode < 2.0 * both_modes


def test_ksd_jits_with_an_energy():
    x = STANDARD
    eager = float(diagnostics.ksd(x, energy=lambda z: 0.5 * jnp.sum(z**2)))
    jitted = jax.jit(lambda d: diagnostics.ksd(d, energy=lambda z: 0.5 * jnp.sum(z**2)))
    assert float(jitted(x)) == pytest.approx(eager, rel=1e-6)
    traced_beta = jax.jit(lambda d, b: diagnostics.ksd(d, -d, beta=b))
    assert float(traced_beta(x, -0.5)) == pytest.approx(eager, rel=1e-5)


def test_ksd_input_checks():
    x = STANDARD
    with pytest.raises(ValueError, match=r"draws must have shape \(n, d\)"):
        diagnostics.ksd(x[:, 0], -x[:, 0])
    with pytest.raises(ValueError, match="draws must have shape"):
        diagnostics.ksd(np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"score must have the shape of draws \(200, 3\)"):
        diagnostics.ksd(x, -x[:, :2])
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"draws holds 1 non-finite.*\(5, 1\)"):
        diagnostics.ksd(bad, -x)
    with pytest.raises(ValueError, match="draws holds 1 non-finite"):
        diagnostics.ksd(bad, energy=lambda z: 0.5 * jnp.sum(z**2))
    with pytest.raises(ValueError, match="score holds 1 non-finite"):
        diagnostics.ksd(x, -bad)
    for c in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match=r"c must be a finite number in \(0.0, inf\)"):
            diagnostics.ksd(x, -x, c=c)
    for beta in (0.0, -1.0, 0.5):
        with pytest.raises(ValueError, match=r"beta must be a finite number in \(-1.0, 0.0\)"):
            diagnostics.ksd(x, -x, beta=beta)
    with pytest.raises(TypeError, match="exactly one of score"):
        diagnostics.ksd(x)
    with pytest.raises(TypeError, match="exactly one of score"):
        diagnostics.ksd(x, -x, energy=lambda z: 0.5 * jnp.sum(z**2))
    with pytest.raises(TypeError, match="energy must be a callable"):
        diagnostics.ksd(x, energy=3.0)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        diagnostics.ksd(x, -x, block_size=0)


# --------------------------------------------------------------------------- nested R-hat


def test_nested_rhat_matches_the_paper_on_random_superchains():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10, 2))
    consecutive = np.repeat(np.arange(4), 8)
    for j in range(2):
        assert float(diagnostics.nested_rhat(x, 4)[j]) == pytest.approx(
            nested_rhat_reference(x[..., j], consecutive), abs=1e-4
        )
    labels = rng.permutation(consecutive) + 10  # any integer labels, in any order
    ours = diagnostics.nested_rhat(x, labels)
    assert ours.shape == (2,)
    for j in range(2):
        assert float(ours[j]) == pytest.approx(nested_rhat_reference(x[..., j], labels), abs=1e-4)


def test_nested_rhat_one_draw_per_chain_and_shifted_superchains():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(8), 16)
    x = rng.normal(size=(128, 1))
    stationary = float(diagnostics.nested_rhat(x, 8))
    assert stationary == pytest.approx(nested_rhat_reference(x, labels), abs=1e-4)
    threshold = diagnostics.nested_rhat_threshold(16)
    assert threshold == pytest.approx(np.sqrt(1 + 1 / 16 + 1e-4))
    # superchains stuck near their starting points: far above the threshold
    shifted = x + 2.0 * rng.normal(size=(8, 1, 1)).repeat(16, axis=0).reshape(128, 1)
    stuck = float(diagnostics.nested_rhat(shifted, 8))
    assert stuck == pytest.approx(nested_rhat_reference(shifted, labels), rel=1e-4)
    assert stuck > threshold + 0.25
    assert stationary < threshold + 0.05 < stuck


def test_nested_rhat_with_one_chain_per_superchain_is_the_classic_rhat():
    """The paper's footnote 3: with M = 1 it is the classic (non-split) R-hat without the
    (N - 1) / N factor, sqrt(1 + B / (N W)), i.e. nR^2 = R^2 + 1 / N."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 50)) + 0.3 * rng.normal(size=(6, 1))
    n = x.shape[1]
    chain_means = x.mean(axis=1)
    within = x.var(axis=1, ddof=1).mean()
    between = n * chain_means.var(ddof=1)
    classic = np.sqrt(((n - 1) / n * within + between / n) / within)
    ours = float(diagnostics.nested_rhat(x, 6))
    assert ours == pytest.approx(np.sqrt(1 + between / (n * within)), abs=1e-4)
    assert ours**2 == pytest.approx(classic**2 + 1 / n, abs=1e-4)
    assert ours == pytest.approx(float(diagnostics.nested_rhat(x, np.arange(6))), abs=1e-7)


def test_nested_rhat_jits_and_marks_broken_parameters():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5, 3)).astype(np.float32)
    x[:, :, 1] = 2.0  # constant: 0/0
    x[4, 2, 2] = np.nan
    eager = np.asarray(diagnostics.nested_rhat(x, 3))
    jitted = np.asarray(jax.jit(lambda d: diagnostics.nested_rhat(d, 3))(x))
    np.testing.assert_array_equal(np.isnan(eager), [False, True, True])
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)


def test_nested_rhat_input_checks():
    x = np.zeros((12, 5))
    with pytest.raises(ValueError, match="superchains=5 must be at least 2 and divide the 12"):
        diagnostics.nested_rhat(x, 5)
    with pytest.raises(ValueError, match="superchains=1 must be at least 2"):
        diagnostics.nested_rhat(x, 1)
    with pytest.raises(ValueError, match="same number of chains"):
        diagnostics.nested_rhat(x, np.array([0] * 5 + [1] * 7))
    with pytest.raises(ValueError, match=r"one label per chain, shape \(12,\)"):
        diagnostics.nested_rhat(x, np.arange(6))
    with pytest.raises(ValueError, match="at least 2 superchains"):
        diagnostics.nested_rhat(x, np.zeros(12, int))
    with pytest.raises(TypeError, match="labels must be integers"):
        diagnostics.nested_rhat(x, np.linspace(0, 1, 12))
    with pytest.raises(TypeError, match="superchains must be an integer"):
        diagnostics.nested_rhat(x, 2.5)
    with pytest.raises(ValueError, match="at least 2 chains and 1 draw"):
        diagnostics.nested_rhat(np.zeros(12), 2)
    with pytest.raises(ValueError, match="at least 2 chains and 1 draw"):
        diagnostics.nested_rhat(np.zeros((12, 0)), 2)
    with pytest.raises(ValueError, match="needs variance within superchains"):
        diagnostics.nested_rhat(np.zeros((12, 1)), 12)
    with pytest.raises(TypeError, match="superchains must be concrete"):
        jax.jit(lambda d, k: diagnostics.nested_rhat(d, k))(x, np.repeat(np.arange(2), 6))
    with pytest.raises(ValueError, match="chains_per_superchain must be an integer >= 1"):
        diagnostics.nested_rhat_threshold(0)
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        diagnostics.nested_rhat_threshold(4, tau=-1e-4)


# --------------------------------------------------------------------------- Pareto k-hat


@pytest.mark.parametrize("k", [0.3, 0.8])
def test_pareto_khat_matches_arviz_psislw(k):
    rows = np.stack([gpd_log_weights(k, seed=seed) for seed in range(3)])
    expected = psis_khat(rows)
    ours = np.asarray(diagnostics.pareto_khat(rows))
    np.testing.assert_allclose(ours, expected, atol=0.02)
    np.testing.assert_allclose(ours, expected, atol=1e-4)  # in fact float32-close
    # the estimates are near the tail's shape (loose: 134 tail draws)
    assert abs(float(np.median(ours)) - k) < 0.15
    # jax.jit gives the same value
    np.testing.assert_allclose(np.asarray(jax.jit(diagnostics.pareto_khat)(rows)), ours, 1e-6)
    # reff sets the tail length, as in ArviZ
    assert float(diagnostics.pareto_khat(rows[0], reff=0.5)) == pytest.approx(
        float(psis_khat(rows[0], reff=0.5)), abs=1e-4
    )


def test_pareto_khat_with_ties_and_in_float64():
    lw = np.round(gpd_log_weights(0.5, seed=4) * 3) / 3  # ties inside the tail and at its cutoff
    assert float(diagnostics.pareto_khat(lw)) == pytest.approx(float(psis_khat(lw)), abs=1e-4)
    lw = gpd_log_weights(0.8, seed=5)
    with jax.enable_x64(True):
        ours = float(diagnostics.pareto_khat(jnp.asarray(lw, jnp.float64)))
    assert ours == pytest.approx(float(psis_khat(lw)), abs=1e-10)


def test_pareto_khat_threshold():
    assert diagnostics.pareto_khat_threshold(100) == pytest.approx(0.5)
    assert diagnostics.pareto_khat_threshold(1000) == pytest.approx(2 / 3)
    assert diagnostics.pareto_khat_threshold(10**6) == 0.7


def test_pareto_khat_input_checks():
    lw = gpd_log_weights(0.3, n=100)
    with pytest.raises(ValueError, match="got a scalar"):
        diagnostics.pareto_khat(1.0)
    with pytest.raises(ValueError, match="20 draws on its last axis: too few"):
        diagnostics.pareto_khat(lw[:20])
    assert np.isfinite(float(diagnostics.pareto_khat(lw[:21])))
    bad = lw.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match=r"log_weights holds 1 NaN or \+inf.*\(7,\)"):
        diagnostics.pareto_khat(bad)
    bad[7] = np.inf
    with pytest.raises(ValueError, match=r"NaN or \+inf"):
        diagnostics.pareto_khat(bad)
    bad[7] = -np.inf  # a zero weight is fine
    assert float(diagnostics.pareto_khat(bad)) == pytest.approx(float(psis_khat(bad)), abs=1e-4)
    for reff in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="reff must be a positive finite number"):
            diagnostics.pareto_khat(lw, reff=reff)
    with pytest.raises(TypeError, match="log_weights must hold real numbers"):
        diagnostics.pareto_khat(lw.astype(complex))
    with pytest.raises(ValueError, match="num_draws must be an integer >= 2"):
        diagnostics.pareto_khat_threshold(1)
