r"""Ising-family models on binary configurations: the square-lattice Ising model and the
general pairwise binary model, with Onsager's exact results.

Spins are encoded as :math:`s \in \{-1, +1\}` (``spins="pm1"``) or :math:`x \in \{0, 1\}`
(``spins="01"``), stored as floating-point arrays so that gradients (Gibbs with gradients,
the checkerboard kernel's local fields) are defined. Energies follow the package's sign
convention, :math:`p(x) \propto e^{-E(x)/T}`.

Square-lattice Ising model
--------------------------
On an :math:`L \times L` lattice with periodic boundaries,

.. math::

    E(s) = -J \sum_{\langle ij \rangle} s_i s_j - h \sum_i s_i,
    \qquad p_\beta(s) = \frac{e^{-\beta E(s)}}{Z_\beta},

the sum running over the :math:`2L^2` nearest-neighbour bonds. **Where** :math:`\beta`
**lives**: :meth:`Ising.energy` is the physical energy :math:`E(s)`, without :math:`\beta`;
the model called as a function, ``model(s)`` (its :meth:`Ising.logdensity`), is the log
density :math:`\log p_\beta(s) = -\beta E(s)` up to :math:`\log Z_\beta`, the value every
kernel samples. In the package's energy-temperature language, the energy is :math:`E` and the
temperature :math:`T = 1/\beta`: ``EnergyDistribution(model.energy, (L, L), temperature=1 /
beta)`` is the same density. With ``spins="01"``, :math:`s = 2x - 1` inside the energy.

The model is critical at :math:`\beta_c J = \tfrac12 \ln(1 + \sqrt 2) \approx 0.4407`
(Kramers & Wannier 1941). For :math:`h = 0` on the infinite lattice, Onsager (1944) and Yang
(1952) give the energy per site and the spontaneous magnetization

.. math::

    u(\beta) = -J \coth(2\beta J) \left[1 + \frac{2}{\pi}\left(2\tanh^2(2\beta J) - 1\right)
    K(k)\right], \qquad k = \frac{2\sinh(2\beta J)}{\cosh^2(2\beta J)},

    m(\beta) = \left(1 - \sinh^{-4}(2\beta J)\right)^{1/8} \quad (\beta > \beta_c),
    \qquad m(\beta) = 0 \quad (\beta \le \beta_c),

with :math:`K(k) = \int_0^{\pi/2} (1 - k^2 \sin^2\theta)^{-1/2}\, d\theta` the complete
elliptic integral of the first kind.

Pairwise binary model
---------------------
For a symmetric coupling matrix :math:`W` with zero diagonal and fields :math:`b`,

.. math::

    E(x) = -\tfrac12 x^\top W x - b^\top x = -\sum_{i<j} W_{ij} x_i x_j - \sum_i b_i x_i,
    \qquad \log p(x) = -E(x) + \text{const},

a Boltzmann machine on :math:`\{0,1\}^d` or a spin glass on :math:`\{-1,+1\}^d`; any inverse
temperature is absorbed into :math:`W` and :math:`b`.

Both energies are *affine in each site* (no self-coupling), so the change of log density when
one site flips is exactly its gradient times the change of the site,
:math:`\log p(x^{(i)}) - \log p(x) = (x^{(i)}_i - x_i)\, \partial_i \log p(x)`: the identity
the checkerboard kernel uses.

References
----------
H. A. Kramers and G. H. Wannier (1941). Statistics of the two-dimensional ferromagnet.
Physical Review 60(3).
L. Onsager (1944). Crystal statistics. I. A two-dimensional model with an order-disorder
transition. Physical Review 65(3-4).
C. N. Yang (1952). The spontaneous magnetization of a two-dimensional Ising model. Physical
Review 85(5).
S. Geman and D. Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
restoration of images. IEEE TPAMI 6(6).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.core import Tracer
from scipy.special import ellipk

from numpyro_ebm._checks import check_finite_array, check_int, check_positive, check_real_array
from numpyro_ebm._spins import (
    spin_values,
    to_pm1,
)

__all__ = [
    "Ising",
    "PairwiseBinary",
    "critical_beta",
    "denoising_model",
    "neighbour_sum",
    "onsager_energy",
    "onsager_magnetization",
    "sublattice_masks",
]


def sublattice_masks(shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """The two colours of a hypercubic lattice, ``(even, odd)`` boolean arrays of ``shape``:
    site :math:`(i, j, \\dots)` is even when :math:`i + j + \\dots` is. With periodic
    boundaries no two neighbours share a colour iff every side is even."""
    parity = sum(jnp.indices(shape)) % 2 if len(shape) else jnp.zeros((), int)
    return parity == 0, parity == 1


def neighbour_sum(s: jax.Array) -> jax.Array:
    """The sum of the :math:`2n` periodic nearest neighbours of each site of an n-D array."""
    return sum(jnp.roll(s, shift, axis) for axis in range(s.ndim) for shift in (1, -1))


def _check_scalar(name: str, value) -> None:
    if isinstance(value, Tracer):
        return
    check_real_array(name, value)
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got {value!r}")
    check_finite_array(name, value)


@jax.tree_util.register_pytree_node_class
class Ising:
    r"""The ferromagnetic (or antiferromagnetic) Ising model on an :math:`L \times L` periodic
    square lattice; see the module docstring for the energy and where :math:`\beta` lives.

    Parameters
    ----------
    L
        Side of the lattice, an integer :math:`\ge 2` (with :math:`L = 2` each bond appears
        twice, as periodic boundaries imply).
    J
        Coupling; :math:`J > 0` is ferromagnetic.
    h
        External field.
    beta
        Inverse temperature :math:`\beta > 0`.
    spins
        ``"pm1"`` for :math:`\{-1, +1\}` configurations, ``"01"`` for :math:`\{0, 1\}`.

    Notes
    -----
    ``J``, ``h`` and ``beta`` are pytree leaves (they may be traced, e.g. learned or tempered
    under ``vmap``); ``L`` and ``spins`` are static. Methods act on ONE configuration of shape
    ``(L, L)`` (another shape raises ``ValueError``); batch with ``jax.vmap``.
    """

    def __init__(self, L: int, J=1.0, h=0.0, beta=1.0, spins: str = "pm1"):
        self.L = check_int("L", L, minimum=2)
        _check_scalar("J", J)
        _check_scalar("h", h)
        _check_scalar("beta", beta)
        check_positive("beta", beta)
        spin_values(spins)
        self.J, self.h, self.beta, self.spins = J, h, beta, spins

    @property
    def shape(self) -> tuple[int, int]:
        """The shape ``(L, L)`` of one configuration."""
        return (self.L, self.L)

    def tree_flatten(self):
        return (self.J, self.h, self.beta), (self.L, self.spins)

    @classmethod
    def tree_unflatten(cls, aux, children):
        model = object.__new__(cls)
        model.L, model.spins = aux
        model.J, model.h, model.beta = children
        return model

    def __repr__(self) -> str:
        return (
            f"Ising(L={self.L}, J={self.J!r}, h={self.h!r}, beta={self.beta!r}, "
            f"spins={self.spins!r})"
        )

    def with_beta(self, beta) -> Ising:
        """The same model at inverse temperature ``beta`` (a replica of a tempering ladder:
        ``model.with_beta(model.beta / T)``)."""
        return Ising(self.L, self.J, self.h, beta, self.spins)

    def _configuration(self, x: jax.Array) -> jax.Array:
        """``x`` in the :math:`\\pm 1` encoding, after checking (at trace time: shapes are
        static) that it is one configuration of this lattice: periodic shifts would silently
        give the energy of another lattice."""
        if jnp.shape(x) != self.shape:
            raise ValueError(
                f"Ising(L={self.L}) takes one configuration of shape {self.shape}, got shape "
                f"{jnp.shape(x)}; batch with jax.vmap, or build Ising(L=...) for another lattice"
            )
        return to_pm1(x, self.spins)

    def energy(self, x: jax.Array) -> jax.Array:
        """The physical energy :math:`E(s)` of one configuration (no :math:`\\beta`);
        ``ValueError`` unless ``x`` has the shape ``(L, L)``."""
        s = self._configuration(x)
        bonds = s * (jnp.roll(s, -1, 0) + jnp.roll(s, -1, 1))
        return -self.J * jnp.sum(bonds) - self.h * jnp.sum(s)

    def logdensity(self, x: jax.Array) -> jax.Array:
        """:math:`\\log p_\\beta(x) = -\\beta E(x)`, up to :math:`\\log Z_\\beta`."""
        return -self.beta * self.energy(x)

    __call__ = logdensity

    def local_field(self, x: jax.Array) -> jax.Array:
        r"""The local field of every site, :math:`h_i = J \sum_{j \sim i} s_j + h`, in the
        :math:`\pm 1` encoding: :math:`p(s_i = +1 \mid s_{-i}) = \sigma(2 \beta h_i)`, and
        flipping :math:`s_i` changes the energy by :math:`2 s_i h_i`."""
        return self.J * neighbour_sum(self._configuration(x)) + self.h

    def sublattice_masks(self) -> tuple[jax.Array, jax.Array]:
        """The red-black colouring ``(even, odd)`` of the lattice; see
        :func:`sublattice_masks`."""
        return sublattice_masks(self.shape)

    def magnetization(self, x: jax.Array) -> jax.Array:
        """The magnetization per site :math:`m = \\frac{1}{L^2} \\sum_i s_i` (:math:`\\pm 1`
        encoding)."""
        return jnp.mean(self._configuration(x))


@jax.tree_util.register_pytree_node_class
class PairwiseBinary:
    r"""The pairwise binary model :math:`E(x) = -\frac12 x^\top W x - b^\top x` on
    :math:`\{-1,+1\}^d` or :math:`\{0,1\}^d`; ``model(x)`` is :math:`\log p(x) = -E(x)`.

    Parameters
    ----------
    couplings
        :math:`W`, a symmetric :math:`d \times d` matrix with zero diagonal.
    fields
        :math:`b`, shape ``(d,)``.
    spins
        ``"pm1"`` or ``"01"``.
    """

    symmetry_tolerance: ClassVar[float] = 1e-6

    def __init__(self, couplings, fields, spins: str = "pm1"):
        spin_values(spins)
        if not isinstance(couplings, Tracer):
            check_real_array("couplings", couplings)
            matrix = np.asarray(couplings, dtype=np.float64)
            if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
                raise ValueError(
                    f"couplings must be a square d x d matrix, got shape {matrix.shape}"
                )
            check_finite_array("couplings", matrix)
            if np.max(np.abs(matrix - matrix.T)) > self.symmetry_tolerance:
                raise ValueError("couplings must be symmetric, got W != W.T")
            if np.any(np.diag(matrix) != 0):
                raise ValueError(
                    f"couplings must have a zero diagonal, got diagonal {np.diag(matrix)!r}"
                )
        if not isinstance(fields, Tracer):
            check_real_array("fields", fields)
            vector = np.asarray(fields, dtype=np.float64)
            if vector.shape != (np.shape(couplings)[0],):
                raise ValueError(
                    f"fields must have shape ({np.shape(couplings)[0]},) to match couplings, "
                    f"got shape {vector.shape}"
                )
            check_finite_array("fields", vector)
        self.couplings = jnp.asarray(couplings, dtype=jnp.result_type(float))
        self.fields = jnp.asarray(fields, dtype=jnp.result_type(float))
        self.spins = spins

    @property
    def shape(self) -> tuple[int]:
        """The shape ``(d,)`` of one configuration."""
        return (self.fields.shape[0],)

    def tree_flatten(self):
        return (self.couplings, self.fields), (self.spins,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        model = object.__new__(cls)
        (model.spins,) = aux
        model.couplings, model.fields = children
        return model

    def energy(self, x: jax.Array) -> jax.Array:
        """:math:`E(x) = -\\frac12 x^\\top W x - b^\\top x` of one configuration."""
        return -0.5 * x @ self.couplings @ x - self.fields @ x

    def logdensity(self, x: jax.Array) -> jax.Array:
        """:math:`\\log p(x) = -E(x)`, up to :math:`\\log Z`."""
        return -self.energy(x)

    __call__ = logdensity

    def local_field(self, x: jax.Array) -> jax.Array:
        """:math:`W x + b = -\\nabla E(x)`: flipping site :math:`i` changes :math:`\\log p` by
        :math:`(x^{(i)}_i - x_i)(Wx + b)_i`."""
        return self.couplings @ x + self.fields


def denoising_model(model: Ising, noise_scale: float = 1.0):
    r"""The NumPyro model of image denoising with an Ising prior and an unknown noise level
    (Geman & Geman 1984): spins :math:`s` on the lattice of ``model``,

    .. math::

        p(s) \propto e^{-\beta E(s)}, \quad \sigma \sim \text{HalfNormal}(\text{noise\_scale}),
        \quad y_i \mid s, \sigma \sim \mathcal N(s_i, \sigma^2),

    returned as ``denoise(y)`` for an observed image ``y`` of shape ``(L, L)``. The spins are
    the latent site ``"s01"`` of bits, :math:`s = 2b - 1` (a ``Bernoulli(1/2)`` in two plates),
    with the prior as the factor ``"prior"`` (``model.logdensity``; its :math:`\log Z_\beta` is
    a constant): the form that NumPyro's ``DiscreteHMCGibbs`` can run as well as
    :func:`~numpyro_ebm.samplers.hmc_gibbs`, so that both sample the same model. The spins are
    also recorded as the deterministic site ``"s"``."""
    check_positive("noise_scale", noise_scale)
    L = model.L

    def denoise(y):
        sigma = numpyro.sample("sigma", dist.HalfNormal(noise_scale))
        with numpyro.plate("rows", L, dim=-2), numpyro.plate("columns", L, dim=-1):
            bits = numpyro.sample("s01", dist.Bernoulli(0.5))
            s = numpyro.deterministic("s", 2.0 * bits - 1.0)
            numpyro.sample("y", dist.Normal(s, sigma), obs=y)
        numpyro.factor("prior", model.logdensity(s if model.spins == "pm1" else bits))

    return denoise


def critical_beta(J: float = 1.0) -> float:
    """The critical inverse temperature :math:`\\beta_c = \\ln(1 + \\sqrt 2) / (2J)` of the
    square-lattice Ising model (Kramers & Wannier 1941)."""
    check_positive("J", J)
    return float(np.log1p(np.sqrt(2.0)) / (2.0 * J))


def onsager_magnetization(beta, J: float = 1.0) -> np.ndarray:
    r"""Spontaneous magnetization per site of the infinite lattice at :math:`h = 0` (Onsager
    1944, Yang 1952): :math:`(1 - \sinh^{-4}(2\beta J))^{1/8}` above :math:`\beta_c`, 0
    below. Vectorized over ``beta`` (NumPy, float64)."""
    check_positive("beta", beta)
    check_positive("J", J)
    beta = np.asarray(beta, dtype=np.float64)
    inside = 1.0 - np.sinh(2.0 * beta * J) ** -4.0
    return np.where(beta > critical_beta(J), np.abs(inside) ** 0.125, 0.0)


def onsager_energy(beta, J: float = 1.0) -> np.ndarray:
    r"""Energy per site :math:`u(\beta)` of the infinite lattice at :math:`h = 0` (Onsager
    1944); see the module docstring. At :math:`\beta_c` the product :math:`(2\tanh^2 - 1) K`
    vanishes and :math:`u = -\sqrt 2 J`. Vectorized over ``beta`` (NumPy, float64)."""
    check_positive("beta", beta)
    check_positive("J", J)
    beta = np.asarray(beta, dtype=np.float64)
    two_k = 2.0 * beta * J
    modulus = 2.0 * np.sinh(two_k) / np.cosh(two_k) ** 2
    at_critical = np.isclose(beta, critical_beta(J), rtol=1e-12, atol=0.0)
    safe_m = np.where(at_critical, 0.0, np.minimum(modulus**2, 1.0))
    bracket = 1.0 + (2.0 / np.pi) * (2.0 * np.tanh(two_k) ** 2 - 1.0) * ellipk(safe_m)
    bracket = np.where(at_critical, 1.0, bracket)
    return -J / np.tanh(two_k) * bracket
