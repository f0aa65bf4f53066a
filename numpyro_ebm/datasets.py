r"""Embedded data sets: 2-D toy densities and scikit-learn's 8x8 digits (no downloads).

Toy densities
-------------
Each toy density is a pure function ``name(key, n) -> jnp.ndarray`` of shape ``(n, 2)``,
dtype float32, whose every random draw is a function of the PRNG ``key``: the same key gives
the same points. They follow the 2-D benchmarks of the normalizing-flow and score-based
literature, as defined in FFJORD's ``toy_data.py`` (Grathwohl et al. 2019), with two
differences stated where they occur: points are drawn i.i.d. from the density (FFJORD spaces
some of them evenly on a grid of angles), and the eight Gaussians use the radius-2, std-0.2
ring of the score-based literature.

=====================  ===========================================================
``gaussian_mixture``   eight Gaussians on a ring of radius 2, std 0.2 ("8gaussians")
``weighted_ring``      six Gaussians on a ring of radius 2, std 0.15, **unequal** weights
                       0.30, 0.05, 0.20, 0.10, 0.25, 0.10 (a test of learned mode weights)
``rings``              four concentric noisy rings of radii 0.75, 1.5, 2.25, 3
``two_moons``          scikit-learn's two interleaving half circles, FFJORD's scaling
``checkerboard``       uniform on the eight "black" squares of a 4x4 board on [-4, 4]^2
``swiss_roll``         the (x, z) projection of scikit-learn's swiss roll, divided by 5
=====================  ===========================================================

:data:`TOY_DATASETS` maps names to functions and :func:`toy` draws by name.
:func:`gaussian_mixture_log_prob` is the closed-form log density of ``gaussian_mixture``,
also convolved with Gaussian noise, to compare learned (noise-conditional) scores with the
truth. :func:`ring_mixture` and :func:`ring_mixture_log_prob` draw and evaluate any mixture
of isotropic Gaussians on a ring (:func:`ring_centers`), whatever its weights.

Digits
------
:func:`digits` returns scikit-learn's 8x8 handwritten digits (1797 images, shipped inside
scikit-learn: no download), flattened to 64 pixels and scaled to [0, 1].

Binary data
-----------
:func:`binarized_digits` thresholds the digits at half intensity (pixel count >= 8 of 16) into
:math:`\{0, 1\}^{64}`, the data of restricted Boltzmann machines and pairwise binary models.
:func:`ising_configurations` draws periodic Ising configurations with Swendsen-Wang cluster
updates (Swendsen & Wang 1987), for fitting lattice models.

References
----------
R. H. Swendsen and J.-S. Wang (1987). Nonuniversal critical dynamics in Monte Carlo
simulations. Physical Review Letters 58(2).

W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever and D. Duvenaud (2019). FFJORD:
free-form continuous dynamics for scalable reversible generative models. ICLR.

Y. Song and S. Ermon (2019). Generative modeling by estimating gradients of the data
distribution. NeurIPS.

E. Alpaydin and C. Kaynak (1998). Optical recognition of handwritten digits. UCI Machine
Learning Repository.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm._checks import check_int, check_key
from numpyro_ebm._spins import from_pm1
from numpyro_ebm.kernels import swendsen_wang
from numpyro_ebm.models.ising import Ising

__all__ = [
    "GAUSSIAN_MIXTURE_CENTERS",
    "GAUSSIAN_MIXTURE_RADIUS",
    "GAUSSIAN_MIXTURE_STD",
    "TOY_DATASETS",
    "WEIGHTED_RING",
    "binarized_digits",
    "checkerboard",
    "digits",
    "gaussian_mixture",
    "gaussian_mixture_log_prob",
    "ising_configurations",
    "ring_centers",
    "ring_mixture",
    "ring_mixture_log_prob",
    "rings",
    "swiss_roll",
    "toy",
    "toy_log_prob",
    "two_moons",
    "weighted_ring",
]

#: Radius of the ring of ``gaussian_mixture``'s eight centers.
GAUSSIAN_MIXTURE_RADIUS = 2.0
#: Standard deviation of each of ``gaussian_mixture``'s components.
GAUSSIAN_MIXTURE_STD = 0.2
_ANGLES = 2.0 * np.pi * np.arange(8) / 8
#: The eight centers :math:`\mu_k = 2 (\cos(k\pi/4), \sin(k\pi/4))`, shape ``(8, 2)``.
GAUSSIAN_MIXTURE_CENTERS = (
    GAUSSIAN_MIXTURE_RADIUS * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
).astype(np.float32)

# FFJORD's constants (Grathwohl et al. 2019, lib/toy_data.py).
_RING_RADII = (0.75, 1.5, 2.25, 3.0)
_RING_NOISE = 0.08
_MOONS_NOISE = 0.1
_SWISS_ROLL_NOISE = 1.0
_SWISS_ROLL_SCALE = 5.0


# --------------------------------------------------------------------------------------------
# input checks


def _check_n(n) -> int:
    if isinstance(n, bool | np.bool_):
        raise TypeError(f"n must be an integer, got {n!r}")
    return check_int("n", n)


def _check_noise(noise) -> float:
    value = float(noise)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    return value


# --------------------------------------------------------------------------------------------
# toy densities


def gaussian_mixture(key, n: int) -> jax.Array:
    r"""Eight Gaussians on a ring ("8gaussians").

    .. math::

        p(x) = \frac18 \sum_{k=0}^{7} \mathcal{N}\left(x;\ \mu_k,\ s^2 I\right), \qquad
        \mu_k = r\,(\cos\tfrac{k\pi}{4}, \sin\tfrac{k\pi}{4}),\quad r = 2,\ s = 0.2.

    The component of each point is drawn uniformly. FFJORD (Grathwohl et al. 2019) uses the
    same ring scaled to :math:`r = 4/\sqrt2`, :math:`s = 0.5/\sqrt2`; :math:`r = 2` is the
    scale of the score-based literature (e.g. Song & Ermon 2019's toy experiments). The exact
    log density is :func:`gaussian_mixture_log_prob`.

    Parameters
    ----------
    key
        PRNG key.
    n
        Number of points, a positive integer.

    Returns
    -------
    Array of shape ``(n, 2)``, float32.
    """
    key, n = check_key(key), _check_n(n)
    key_component, key_noise = jax.random.split(key)
    component = jax.random.randint(key_component, (n,), 0, 8)
    centers = jnp.asarray(GAUSSIAN_MIXTURE_CENTERS)[component]
    return centers + GAUSSIAN_MIXTURE_STD * jax.random.normal(key_noise, (n, 2), jnp.float32)


def gaussian_mixture_log_prob(x, sigma: float = 0.0) -> jax.Array:
    r"""Exact log density of :func:`gaussian_mixture`, optionally perturbed by Gaussian noise:
    :func:`ring_mixture_log_prob` with eight equal weights, radius 2 and std 0.2.

    Parameters
    ----------
    x
        Points of shape ``(..., 2)``.
    sigma
        Noise standard deviation :math:`\sigma \ge 0` (0: the data density itself).

    Returns
    -------
    Array of shape ``x.shape[:-1]``.
    """
    return ring_mixture_log_prob(
        x, np.full(8, 1 / 8), GAUSSIAN_MIXTURE_RADIUS, GAUSSIAN_MIXTURE_STD, sigma
    )


class RingMixture(NamedTuple):
    """A mixture of isotropic Gaussians centred on a ring: component ``k`` has weight
    ``weights[k]``, centre :func:`ring_centers` ``(len(weights), radius)[k]`` and standard
    deviation ``std``."""

    weights: tuple[float, ...]
    radius: float
    std: float

    @property
    def centers(self) -> np.ndarray:
        return ring_centers(len(self.weights), self.radius)


#: The unequal-weight ring of ``weighted_ring``: six modes, radius 2, std 0.15.
WEIGHTED_RING = RingMixture((0.30, 0.05, 0.20, 0.10, 0.25, 0.10), 2.0, 0.15)


def ring_centers(num: int, radius: float) -> np.ndarray:
    r"""``num`` centres evenly spaced on a circle, :math:`\mu_k = r(\cos\tfrac{2\pi k}{K},
    \sin\tfrac{2\pi k}{K})`, shape ``(num, 2)``, float32."""
    angles = 2.0 * np.pi * np.arange(check_int("num", num)) / num
    return (float(radius) * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)


def _check_weights(weights) -> np.ndarray:
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 1 or weights.size < 1 or not np.all(np.isfinite(weights)):
        raise ValueError(f"weights must be a 1-D array of finite numbers, got {weights!r}")
    if np.any(weights < 0) or abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must be >= 0 and sum to 1, got {weights.tolist()}")
    return weights


def ring_mixture(key, n: int, weights, radius: float, std: float) -> jax.Array:
    r"""``n`` points of the ring mixture :math:`\sum_k w_k \mathcal{N}(\mu_k, s^2 I)`
    (:func:`ring_centers`): each point's component drawn with probabilities ``weights``.
    Returns shape ``(n, 2)``, float32."""
    key, n = check_key(key), _check_n(n)
    weights = _check_weights(weights)
    key_component, key_noise = jax.random.split(key)
    component = jax.random.choice(key_component, weights.size, (n,), p=jnp.asarray(weights))
    centers = jnp.asarray(ring_centers(weights.size, radius))[component]
    return centers + float(std) * jax.random.normal(key_noise, (n, 2), jnp.float32)


def ring_mixture_log_prob(x, weights, radius: float, std: float, sigma: float = 0.0):
    r"""Exact log density of :func:`ring_mixture`, optionally perturbed by Gaussian noise.

    The data convolved with :math:`\mathcal{N}(0, \sigma^2 I)` (the density that denoising
    score matching at level :math:`\sigma` targets, Vincent 2011) is again a mixture, with
    component variance :math:`v = s^2 + \sigma^2`:

    .. math::

        \log p_\sigma(x) = \operatorname{logsumexp}_k\left(\log w_k
        - \frac{\|x - \mu_k\|^2}{2v}\right) - \log(2\pi v).

    Its gradient (``jax.grad``) is the true score :math:`\nabla_x \log p_\sigma(x)`.
    Returns an array of shape ``x.shape[:-1]``.
    """
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError(f"x must have shape (..., 2), got {x.shape}")
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    weights = _check_weights(weights)
    variance = float(std) ** 2 + sigma**2
    centers = jnp.asarray(ring_centers(weights.size, radius))
    d2 = jnp.sum((x[..., None, :] - centers) ** 2, axis=-1)
    log_w = jnp.log(jnp.asarray(weights, jnp.result_type(float)))
    return jax.nn.logsumexp(log_w - 0.5 * d2 / variance, axis=-1) - math.log(
        2.0 * math.pi * variance
    )


def weighted_ring(key, n: int) -> jax.Array:
    """Six Gaussians on a ring of radius 2, std 0.15, with the unequal weights of
    :data:`WEIGHTED_RING`: :func:`ring_mixture` of them. Returns shape ``(n, 2)``, float32."""
    return ring_mixture(key, n, *WEIGHTED_RING)


def rings(key, n: int) -> jax.Array:
    r"""Four concentric noisy rings (FFJORD's "rings", Grathwohl et al. 2019).

    A ring :math:`k` is chosen uniformly among radii :math:`r_k \in \{0.75, 1.5, 2.25, 3\}`,
    an angle :math:`\theta \sim \mathcal{U}[0, 2\pi)`, and

    .. math::

        x = r_k (\cos\theta, \sin\theta) + \epsilon, \qquad
        \epsilon \sim \mathcal{N}(0, 0.08^2 I).

    (FFJORD puts a quarter of the points on each ring at evenly spaced angles; drawing ring
    and angle i.i.d. samples the same density.)

    Parameters
    ----------
    key
        PRNG key.
    n
        Number of points, a positive integer.

    Returns
    -------
    Array of shape ``(n, 2)``, float32.
    """
    key, n = check_key(key), _check_n(n)
    key_ring, key_angle, key_noise = jax.random.split(key, 3)
    radius = jnp.asarray(_RING_RADII, jnp.float32)[jax.random.randint(key_ring, (n,), 0, 4)]
    theta = jax.random.uniform(key_angle, (n,), jnp.float32, 0.0, 2.0 * np.pi)
    circle = radius[:, None] * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
    return circle + _RING_NOISE * jax.random.normal(key_noise, (n, 2), jnp.float32)


def two_moons(key, n: int, noise: float = _MOONS_NOISE) -> jax.Array:
    r"""Two interleaving half circles (scikit-learn's ``make_moons``, FFJORD's "moons").

    Each point picks a moon with probability 1/2 and an angle
    :math:`t \sim \mathcal{U}[0, \pi]`; the upper moon is the upper half of the unit circle
    about :math:`(0, 0)`, the lower moon the lower half of the unit circle about
    :math:`(1, \tfrac12)`:

    .. math::

        u = (\cos t, \sin t) \ \text{or}\ (1 - \cos t, \tfrac12 - \sin t), \qquad
        x = 2\,(u + \epsilon) + (-1, -0.2), \quad \epsilon \sim \mathcal{N}(0, \nu^2 I),

    with :math:`\nu` = ``noise`` (0.1 as in FFJORD) and FFJORD's affine map, which puts the
    moons' mean at :math:`(0, 0.3)`. With ``noise=0`` every point lies exactly on one of the
    two arcs.

    Parameters
    ----------
    key
        PRNG key.
    n
        Number of points, a positive integer.
    noise
        Standard deviation :math:`\nu \ge 0` of the noise, in the unit-circle coordinates.

    Returns
    -------
    Array of shape ``(n, 2)``, float32.
    """
    key, n, noise = check_key(key), _check_n(n), _check_noise(noise)
    key_moon, key_angle, key_noise = jax.random.split(key, 3)
    lower = jax.random.bernoulli(key_moon, 0.5, (n,))
    t = jax.random.uniform(key_angle, (n,), jnp.float32, 0.0, np.pi)
    upper_arc = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    lower_arc = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=1)
    u = jnp.where(lower[:, None], lower_arc, upper_arc)
    u = u + noise * jax.random.normal(key_noise, (n, 2), jnp.float32)
    return 2.0 * u + jnp.asarray([-1.0, -0.2], jnp.float32)


def checkerboard(key, n: int) -> jax.Array:
    r"""Uniform on the eight "black" squares of a 4x4 checkerboard on :math:`[-4, 4]^2`
    (FFJORD's "checkerboard", Grathwohl et al. 2019).

    The squares have side 2; square :math:`(i, j) = (\lfloor x_1/2 \rfloor,
    \lfloor x_2/2 \rfloor)` is black when :math:`i + j` is even, so that the density is

    .. math::

        p(x) = \frac{1}{32}\,
        \mathbb{1}\left[x \in [-4, 4)^2,\ \lfloor x_1/2\rfloor + \lfloor x_2/2\rfloor
        \text{ even}\right].

    FFJORD's construction: :math:`x_1 \sim \mathcal{U}[-2, 2)`, :math:`x_2 = u - 2b +
    (\lfloor x_1 \rfloor \bmod 2)` with :math:`u \sim \mathcal{U}[0, 1)`,
    :math:`b \sim \text{Bernoulli}(1/2)`, then both doubled.

    Parameters
    ----------
    key
        PRNG key.
    n
        Number of points, a positive integer.

    Returns
    -------
    Array of shape ``(n, 2)``, float32.
    """
    key, n = check_key(key), _check_n(n)
    key_1, key_2, key_b = jax.random.split(key, 3)
    x1 = jax.random.uniform(key_1, (n,), jnp.float32, -2.0, 2.0)
    u = jax.random.uniform(key_2, (n,), jnp.float32)
    b = jax.random.bernoulli(key_b, 0.5, (n,)).astype(jnp.float32)
    x2 = u - 2.0 * b + jnp.mod(jnp.floor(x1), 2.0)
    return 2.0 * jnp.stack([x1, x2], axis=1)


def swiss_roll(key, n: int, noise: float = _SWISS_ROLL_NOISE) -> jax.Array:
    r"""The 2-D swiss roll: scikit-learn's ``make_swiss_roll`` projected on its (x, z)
    plane and divided by 5, as in FFJORD (Grathwohl et al. 2019).

    .. math::

        t = \tfrac{3\pi}{2}(1 + 2u),\ u \sim \mathcal{U}[0, 1), \qquad
        x = \frac{(t\cos t,\ t\sin t) + \epsilon}{5}, \quad \epsilon \sim
        \mathcal{N}(0, \nu^2 I),

    a spiral of radius :math:`t/5 \in [0.94, 2.83]` with :math:`\nu` = ``noise`` (1, as in
    FFJORD); each coordinate has standard deviation about 1.4.

    Parameters
    ----------
    key
        PRNG key.
    n
        Number of points, a positive integer.
    noise
        Standard deviation :math:`\nu \ge 0` of the noise, before the division by 5.

    Returns
    -------
    Array of shape ``(n, 2)``, float32.
    """
    key, n, noise = check_key(key), _check_n(n), _check_noise(noise)
    key_t, key_noise = jax.random.split(key)
    t = 1.5 * np.pi * (1.0 + 2.0 * jax.random.uniform(key_t, (n,), jnp.float32))
    spiral = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=1)
    spiral = spiral + noise * jax.random.normal(key_noise, (n, 2), jnp.float32)
    return spiral / _SWISS_ROLL_SCALE


#: Name -> ``fn(key, n)`` of the toy densities.
TOY_DATASETS: dict[str, Callable[..., jax.Array]] = {
    "gaussian_mixture": gaussian_mixture,
    "rings": rings,
    "two_moons": two_moons,
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
    "weighted_ring": weighted_ring,
}


def toy_log_prob(name: str) -> Callable[[jax.Array, float], jax.Array] | None:
    r"""The exact log density ``log_prob(x, sigma)`` of the toy set ``name`` convolved with
    :math:`\mathcal{N}(0, \sigma^2 I)`, where it has a closed form (``gaussian_mixture``,
    ``weighted_ring``); ``None`` for the others."""
    if name == "gaussian_mixture":
        return gaussian_mixture_log_prob
    if name == "weighted_ring":
        return lambda x, sigma=0.0: ring_mixture_log_prob(x, *WEIGHTED_RING, sigma)
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; known: {sorted(TOY_DATASETS)}")
    return None


def toy(name: str, key, n: int) -> jax.Array:
    """Draw ``n`` points of the toy density ``name`` (a key of :data:`TOY_DATASETS`).

    Raises
    ------
    ValueError
        For an unknown ``name`` (the message lists the known ones) or a non-positive ``n``.
    TypeError
        For a non-integer ``n`` or a ``key`` that is not a PRNG key.
    """
    if not isinstance(name, str) or name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; known: {sorted(TOY_DATASETS)}")
    return TOY_DATASETS[name](key, n)


# --------------------------------------------------------------------------------------------
# digits


def digits(scale: bool = True) -> tuple[jax.Array, jax.Array]:
    r"""scikit-learn's 8x8 handwritten digits (Alpaydin & Kaynak 1998), shipped with
    scikit-learn (``sklearn.datasets.load_digits``; no download).

    Parameters
    ----------
    scale
        Divide the pixel counts (integers 0..16) by 16, so that pixels lie in :math:`[0, 1]`;
        ``False`` keeps the counts (as float32).

    Returns
    -------
    images
        float32 array of shape ``(1797, 64)``: each row is an 8x8 image flattened row by row
        (``images.reshape(-1, 8, 8)`` restores them), 0 = background.
    labels
        int32 array of shape ``(1797,)``, the digit 0..9 of each image.
    """
    if not isinstance(scale, bool | np.bool_):
        raise TypeError(f"scale must be a bool, got {scale!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.data, np.float32)
    if scale:
        images = images / np.float32(16.0)
    return jnp.asarray(images), jnp.asarray(bunch.target, jnp.int32)


def binarized_digits() -> tuple[jax.Array, jax.Array]:
    """:func:`digits` thresholded at half intensity: pixel = 1 where its count is at least 8
    (of 16), else 0.

    Returns
    -------
    images
        float32 array of shape ``(1797, 64)`` with values in :math:`\\{0, 1\\}`.
    labels
        int32 array of shape ``(1797,)``.
    """
    counts, labels = digits(scale=False)
    return (counts >= 8).astype(jnp.float32), labels


def ising_configurations(
    key,
    n: int,
    L: int = 16,
    beta: float = 0.4406867935097715,
    J: float = 1.0,
    h: float = 0.0,
    num_sweeps: int = 200,
    spins: str = "pm1",
) -> jax.Array:
    r"""``n`` configurations of the periodic :math:`L \times L` Ising model
    :math:`p(s) \propto e^{-\beta E(s)}` (:class:`~numpyro_ebm.models.ising.Ising`), the last
    states of ``n`` independent Swendsen-Wang chains run for ``num_sweeps`` cluster sweeps from
    uniformly random spins (so the configurations are independent; cluster updates decorrelate
    in a few sweeps even at the default critical :math:`\beta_c`, see ``examples/ising.py``).

    Parameters
    ----------
    key
        PRNG key; the same key gives the same configurations.
    n
        Number of configurations.
    L, beta, J, h, spins
        The model (``J > 0``: cluster updates need a ferromagnet).
    num_sweeps
        Cluster sweeps per chain.

    Returns
    -------
    float32 array of shape ``(n, L, L)`` with values in the encoding ``spins``.
    """
    key = check_key(key)
    n = _check_n(n)
    num_sweeps = check_int("num_sweeps", num_sweeps)
    model = Ising(L, J=J, h=h, beta=beta, spins=spins)
    algorithm = swendsen_wang.as_top_level_api(model)
    start_key, run_key = jax.random.split(key)
    starts = from_pm1(2.0 * jax.random.bernoulli(start_key, 0.5, (n, L, L)) - 1.0, spins)

    def chain(chain_key, start):
        def sweep(state, sweep_key):
            return algorithm.step(sweep_key, state)[0], None

        state, _ = jax.lax.scan(
            sweep, algorithm.init(start), jax.random.split(chain_key, num_sweeps)
        )
        return state.position

    return jax.vmap(chain)(jax.random.split(run_key, n), starts)
