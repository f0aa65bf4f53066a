"""Statistical tests of the embedded data sets.

Every test uses fixed keys. Frequencies are compared with their expectation within four
binomial standard errors (a false alarm rate of about 6e-5 per comparison); goodness of fit
uses a chi-square test at level 1e-3.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from numpyro_ebm import datasets

N = 20_000


def _draw(fn, seed=0, n=N, **kwargs):
    x = np.asarray(fn(jax.random.key(seed), n, **kwargs))
    assert x.shape == (n, 2)
    assert x.dtype == np.float32
    assert np.all(np.isfinite(x))
    return x.astype(np.float64)


def _assert_frequencies(labels, num_classes):
    """Each class has frequency 1/num_classes within 4 binomial standard errors."""
    p = 1.0 / num_classes
    freq = np.bincount(labels, minlength=num_classes) / labels.size
    se = math.sqrt(p * (1 - p) / labels.size)
    np.testing.assert_array_less(np.abs(freq - p), 4 * se)


def _assert_mean(values, expected, sd):
    """The sample mean of ``values`` is within 4 standard errors of ``expected``."""
    assert abs(np.mean(values) - expected) < 4 * sd / math.sqrt(values.size)


# --------------------------------------------------------------------------------------------
# gaussian_mixture


def test_gaussian_mixture_modes_are_equally_likely_and_gaussian():
    x = _draw(datasets.gaussian_mixture)
    centers = datasets.GAUSSIAN_MIXTURE_CENTERS.astype(np.float64)
    d2 = np.sum((x[:, None, :] - centers) ** 2, axis=-1)
    # The components are 2 r sin(pi/8) / s = 7.7 standard deviations apart: assigning each
    # point to its nearest center misclassifies ~1e-4 of them, far below the tolerance.
    _assert_frequencies(np.argmin(d2, axis=1), 8)
    # ||x - mu||^2 / s^2 is chi-square with 2 degrees of freedom: mean 2, sd 2.
    _assert_mean(np.min(d2, axis=1) / datasets.GAUSSIAN_MIXTURE_STD**2, 2.0, 2.0)
    # The radius |x| follows a Rice distribution about r = 2.
    r, s = datasets.GAUSSIAN_MIXTURE_RADIUS, datasets.GAUSSIAN_MIXTURE_STD
    rice = stats.rice(b=r / s, scale=s)
    _assert_mean(np.linalg.norm(x, axis=1), rice.mean(), rice.std())
    assert abs(rice.mean() - 2.0) < 0.02


def _grid_probabilities(log_prob_fn, edges):
    """Probability of each cell of a square grid, by the midpoint rule on a 10x finer grid."""
    fine = np.linspace(edges[0], edges[-1], 10 * (edges.size - 1) + 1)
    mid = 0.5 * (fine[1:] + fine[:-1])
    xx, yy = np.meshgrid(mid, mid, indexing="ij")
    density = np.exp(np.asarray(log_prob_fn(jnp.asarray(np.stack([xx, yy], -1), jnp.float32))))
    cell = density * (fine[1] - fine[0]) ** 2
    m = edges.size - 1
    return cell.reshape(m, 10, m, 10).sum(axis=(1, 3))


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_gaussian_mixture_log_prob_is_the_density_of_the_samples(sigma):
    x = _draw(datasets.gaussian_mixture, seed=1)
    x = x + sigma * np.asarray(jax.random.normal(jax.random.key(2), x.shape))
    edges = np.linspace(-4.0, 4.0, 17)
    probs = _grid_probabilities(lambda y: datasets.gaussian_mixture_log_prob(y, sigma), edges)
    # the density integrates to one (the grid holds all but a negligible tail)
    assert abs(probs.sum() - 1.0) < 2e-3
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])
    expected = probs * x.shape[0]
    keep = expected >= 5
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


def test_gaussian_mixture_log_prob_gradient_is_the_mixture_score():
    # The score of a Gaussian mixture is the responsibility-weighted sum of the components'
    # scores: sum_k w_k(x) (mu_k - x) / v, with w = softmax_k(-|x - mu_k|^2 / (2 v)).
    x = np.asarray(jax.random.normal(jax.random.key(3), (50, 2)), np.float64) * 2.0
    centers = datasets.GAUSSIAN_MIXTURE_CENTERS.astype(np.float64)
    for sigma in (0.0, 0.3, 1.0):
        v = datasets.GAUSSIAN_MIXTURE_STD**2 + sigma**2
        logits = -0.5 * np.sum((x[:, None] - centers) ** 2, -1) / v
        w = np.exp(logits - logits.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        expected = np.einsum("nk,nkd->nd", w, centers - x[:, None]) / v
        log_prob = lambda y, s=sigma: datasets.gaussian_mixture_log_prob(y, s)
        score = jax.vmap(jax.grad(log_prob))(jnp.asarray(x, jnp.float32))
        np.testing.assert_allclose(score, expected, rtol=1e-3, atol=1e-3 / v)


def test_gaussian_mixture_log_prob_checks_its_arguments():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        datasets.gaussian_mixture_log_prob(jnp.zeros(3))
    with pytest.raises(ValueError, match="sigma must be finite and >= 0, got -1"):
        datasets.gaussian_mixture_log_prob(jnp.zeros(2), sigma=-1.0)


# --------------------------------------------------------------------------------------------
# rings, two_moons, checkerboard, swiss_roll


def test_rings_are_four_equally_likely_noisy_circles():
    x = _draw(datasets.rings)
    radius = np.linalg.norm(x, axis=1)
    radii = np.array([0.75, 1.5, 2.25, 3.0])
    ring = np.argmin(np.abs(radius[:, None] - radii), axis=1)
    # rings are 0.75 = 9 noise sds apart: the nearest ring is the true one but for ~1e-5
    _assert_frequencies(ring, 4)
    # The radial residual of isotropic noise of sd 0.08 has sd 0.08 (to O(0.08 / r)).
    residual = radius - radii[ring]
    assert abs(np.std(residual) - 0.08) < 0.004
    # angles uniform: E[cos] = E[sin] = 0 with sd 1/sqrt(2)
    theta = np.arctan2(x[:, 1], x[:, 0])
    _assert_mean(np.cos(theta), 0.0, math.sqrt(0.5))
    _assert_mean(np.sin(theta), 0.0, math.sqrt(0.5))


def _moon_coordinates(x):
    """Undo FFJORD's affine map: back to scikit-learn's unit-circle coordinates."""
    return (x - np.array([-1.0, -0.2])) / 2.0


def test_two_moons_without_noise_lie_on_the_unit_half_circles():
    u = _moon_coordinates(_draw(datasets.two_moons, noise=0.0))
    upper = np.abs(np.linalg.norm(u, axis=1) - 1.0) < 1e-5
    lower = np.abs(np.linalg.norm(u - np.array([1.0, 0.5]), axis=1) - 1.0) < 1e-5
    # upper moon: the upper half of the circle about (0, 0); lower moon: the lower half of the
    # circle about (1, 1/2) (the two circles cross, so check the half too)
    upper &= u[:, 1] >= -1e-6
    lower &= u[:, 1] <= 0.5 + 1e-6
    assert np.all(upper | lower)
    _assert_frequencies(lower.astype(int), 2)
    # the angle along each arc is uniform on [0, pi]: mean pi/2, sd pi/sqrt(12)
    t_upper = np.arctan2(u[upper, 1], u[upper, 0])
    _assert_mean(t_upper, math.pi / 2, math.pi / math.sqrt(12))


def test_two_moons_noise_has_the_stated_scale():
    u = _moon_coordinates(_draw(datasets.two_moons))
    d_upper = np.linalg.norm(u, axis=1) - 1.0
    d_lower = np.linalg.norm(u - np.array([1.0, 0.5]), axis=1) - 1.0
    # The radial residual to the nearer circle has sd ~ 0.1 (in the unit-circle coordinates);
    # points near where the circles cross are ambiguous, hence the loose tolerance.
    residual = np.where(np.abs(d_upper) < np.abs(d_lower), d_upper, d_lower)
    assert 0.08 < np.std(residual) < 0.11


def test_checkerboard_is_uniform_on_the_black_squares():
    x = _draw(datasets.checkerboard)
    assert np.all((x >= -4.0) & (x < 4.0))
    square = np.floor(x / 2.0).astype(int)  # (i, j) in {-2, ..., 1}^2
    assert np.all((square.sum(axis=1) % 2) == 0), "a point lies in a white square"
    # the eight black squares are equally likely
    black = [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0]
    index = np.array([black.index(tuple(s)) for s in square])
    _assert_frequencies(index, 8)
    # uniform inside a square: the offset from its corner is U[0, 2) in each coordinate
    offset = x - 2.0 * square
    for k in range(2):
        _assert_mean(offset[:, k], 1.0, 2.0 / math.sqrt(12))


def test_swiss_roll_without_noise_lies_on_its_spiral():
    x = _draw(datasets.swiss_roll, noise=0.0)
    t = 5.0 * np.linalg.norm(x, axis=1)  # the spiral (t cos t, t sin t) / 5 has radius t / 5
    assert np.all((t > 1.5 * math.pi - 1e-3) & (t < 4.5 * math.pi + 1e-3))
    # the angle of each point is t modulo 2 pi
    angle_error = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - t)))
    np.testing.assert_allclose(angle_error, 0.0, atol=1e-3)
    # t is uniform on [1.5 pi, 4.5 pi]
    _assert_mean(t, 3.0 * math.pi, 3.0 * math.pi / math.sqrt(12))


def test_swiss_roll_has_roughly_unit_spread():
    x = _draw(datasets.swiss_roll)
    assert np.all((np.std(x, axis=0) > 1.0) & (np.std(x, axis=0) < 1.6))


# --------------------------------------------------------------------------------------------
# determinism, the registry, argument checks


@pytest.mark.parametrize("name", sorted(datasets.TOY_DATASETS))
def test_toy_is_a_function_of_the_key(name):
    a = datasets.toy(name, jax.random.key(7), 100)
    b = datasets.toy(name, jax.random.key(7), 100)
    c = datasets.toy(name, jax.random.key(8), 100)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # a raw PRNGKey is the same key as jax.random.key with the same seed
    np.testing.assert_array_equal(a, datasets.toy(name, jax.random.PRNGKey(7), 100))
    np.testing.assert_array_equal(a, datasets.TOY_DATASETS[name](jax.random.key(7), 100))


def test_toy_rejects_an_unknown_name_listing_the_known_ones():
    with pytest.raises(ValueError, match="unknown toy data set 'spiral'") as info:
        datasets.toy("spiral", jax.random.key(0), 10)
    for name in datasets.TOY_DATASETS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", sorted(datasets.TOY_DATASETS))
@pytest.mark.parametrize(
    ("n", "error", "message"),
    [
        (0, ValueError, "n must be an integer >= 1, got 0"),
        (-5, ValueError, "n must be an integer >= 1, got -5"),
        (2.5, TypeError, "n must be an integer, got 2.5"),
        (True, TypeError, "n must be an integer, got True"),
        ("10", TypeError, "n must be an integer, got '10'"),
    ],
)
def test_toy_rejects_a_bad_n(name, n, error, message):
    with pytest.raises(error, match=message):
        datasets.toy(name, jax.random.key(0), n)


def test_toy_rejects_a_bad_key():
    with pytest.raises(TypeError, match=r"key must be a jax.random.key \(e.g."):
        datasets.gaussian_mixture(0, 10)
    with pytest.raises(ValueError, match="key must be a single PRNG key"):
        datasets.rings(jax.random.split(jax.random.key(0), 2), 10)


def test_noise_must_be_non_negative():
    with pytest.raises(ValueError, match=r"noise must be finite and >= 0, got -0\.1"):
        datasets.two_moons(jax.random.key(0), 10, noise=-0.1)
    with pytest.raises(ValueError, match="noise must be finite and >= 0, got nan"):
        datasets.swiss_roll(jax.random.key(0), 10, noise=float("nan"))


# --------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_range_and_labels():
    images, labels = datasets.digits()
    assert images.shape == (1797, 64) and images.dtype == jnp.float32
    assert labels.shape == (1797,) and labels.dtype == jnp.int32
    images, labels = np.asarray(images), np.asarray(labels)
    assert images.min() == 0.0 and images.max() == 1.0
    # pixel counts are integers 0..16: scaled pixels are multiples of 1/16
    np.testing.assert_array_equal(images * 16, np.round(images * 16))
    counts = np.bincount(labels, minlength=10)
    assert counts.size == 10 and counts.min() >= 170 and counts.max() <= 185
    # the images are centered digits: the ink sits in the middle columns, not on the border
    grid = images.reshape(-1, 8, 8)
    assert grid[:, :, 0].mean() < 0.05 and grid[:, :, 3:5].mean() > 0.3


def test_digits_unscaled_are_the_pixel_counts():
    scaled, _ = datasets.digits()
    counts, _ = datasets.digits(scale=False)
    assert counts.dtype == jnp.float32 and float(counts.max()) == 16.0
    np.testing.assert_array_equal(np.asarray(counts) / 16.0, np.asarray(scaled))
    with pytest.raises(TypeError, match="scale must be a bool, got 'yes'"):
        datasets.digits(scale="yes")
