r"""Kernel Stein discrepancy of draws against an energy (Gorham & Mackey 2017), computed in
blocks of rows so that no ``n x n`` matrix is ever held (see :func:`ksd`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from numpyro_ebm._checks import check_finite_array, check_int, check_real_array

Array = jax.Array

# Entries of one (rows, n) block of the Stein kernel matrix: 2**20 float32 values are 4 MiB,
# and XLA fuses the elementwise terms, so a block costs a few such buffers.
_BLOCK_ENTRIES = 1 << 20


def _flatten_draws(name: str, value: ArrayLike) -> Array:
    """Draws ``(n, d)`` or ``(chain, draw, d)`` as a float ``(n, d)`` array, checked eagerly."""
    x = check_real_array(name, value)
    if x.ndim not in (2, 3) or x.shape[-1] < 1 or x.size == 0:
        raise ValueError(
            f"{name} must have shape (n, d) or (chain, draw, d) with at least one draw and one "
            f"dimension, got {name}.shape={x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.result_type(float))
    return x.reshape(-1, x.shape[-1])


def _stein_kernel_block(
    xb: Array, sb: Array, x: Array, s: Array, c2: Array, beta: Array, half: bool
) -> Array:
    r"""Row sums of the Langevin Stein kernel of the IMQ kernel, rows ``xb`` against all ``x``.

    With :math:`r = x - y`, :math:`q = c^2 + \|r\|^2` and :math:`k = q^\beta`:
    :math:`\nabla_x k = 2\beta q^{\beta-1} r = -\nabla_y k` and
    :math:`\mathrm{tr}(\nabla_x \nabla_y k) = -2\beta d\, q^{\beta-1}
    - 4\beta(\beta-1) q^{\beta-2} \|r\|^2`, so

    .. math:: k_p(x, y) = s_x \cdot s_y\, q^\beta - 2\beta q^{\beta-1} (s_x - s_y) \cdot r
        - 2\beta d\, q^{\beta-1} - 4\beta(\beta-1) q^{\beta-2} \|r\|^2.

    Every pairwise term is a matrix product or a broadcast of per-row norms, so the block is
    ``(rows, n)`` without any ``(rows, n, d)`` intermediate. With ``half`` (the default
    :math:`\beta = -1/2`), :math:`q^{\beta-1}` is ``rsqrt(q) / q``, about fifteen times cheaper on
    CPU than a general power.
    """
    d = x.shape[-1]
    xx = jnp.sum(x * x, axis=-1)
    sq = jnp.maximum(jnp.sum(xb * xb, axis=-1)[:, None] + xx[None, :] - 2.0 * xb @ x.T, 0.0)
    q = c2 + sq
    # (s_x - s_y) . (x - y) = s_x.x - s_x.y - s_y.x + s_y.y
    sx_dot_r = (
        jnp.sum(sb * xb, axis=-1)[:, None] - sb @ x.T - xb @ s.T + jnp.sum(s * x, axis=-1)[None, :]
    )
    q_beta_1 = jax.lax.rsqrt(q) / q if half else q ** (beta - 1.0)
    k_p = (
        (sb @ s.T) * q_beta_1 * q
        - 2.0 * beta * q_beta_1 * sx_dot_r
        - 2.0 * beta * d * q_beta_1
        - 4.0 * beta * (beta - 1.0) * q_beta_1 / q * sq
    )
    return k_p.sum(axis=-1)


@functools.partial(jax.jit, static_argnames=("block_size", "half"))
def _ksd_squared(x: Array, s: Array, c: Array, beta: Array, block_size: int, half: bool) -> Array:
    """The V-statistic :math:`KSD^2`, one block of ``block_size`` rows after the other."""
    n, d = x.shape
    # The kernel is translation invariant and (s_x - s_y) . r is too: centering the draws keeps
    # the expanded squared distances accurate far from the origin.
    x = x - x.mean(axis=0)
    blocks = -(-n // block_size)
    pad = blocks * block_size - n
    xb = jnp.pad(x, ((0, pad), (0, 0))).reshape(blocks, block_size, d)
    sb = jnp.pad(s, ((0, pad), (0, 0))).reshape(blocks, block_size, d)
    mask = (jnp.arange(blocks * block_size) < n).reshape(blocks, block_size).astype(x.dtype)
    c2 = jnp.asarray(c, x.dtype) ** 2
    beta = jnp.asarray(beta, x.dtype)

    def one(args):
        rows_x, rows_s, rows_mask = args
        return jnp.sum(_stein_kernel_block(rows_x, rows_s, x, s, c2, beta, half) * rows_mask)

    total = jax.lax.map(one, (xb, sb, mask)).sum()
    return total / (float(n) * float(n))


def _check_scalar(name: str, value, low: float, high: float) -> None:
    """Raise ``ValueError`` unless a concrete ``value`` is a finite number in ``(low, high)``."""
    if isinstance(value, jax.core.Tracer):
        return
    array = np.asarray(value)
    if (
        array.ndim != 0
        or not np.issubdtype(array.dtype, np.number)
        or not (np.isfinite(array) and low < array < high)
    ):
        raise ValueError(f"{name} must be a finite number in ({low}, {high}), got {value!r}")


def ksd(
    draws: ArrayLike,
    score: ArrayLike | None = None,
    *,
    energy: Callable[[Array], Array] | None = None,
    c: float = 1.0,
    beta: float = -0.5,
    block_size: int | None = None,
) -> Array:
    r"""Kernel Stein discrepancy of draws from the distribution :math:`p \propto e^{-E}`, with the
    inverse multiquadric (IMQ) kernel (Gorham & Mackey 2017).

    Parameters
    ----------
    draws
        Draws of shape ``(n, d)``, or ``(chain, draw, d)`` (pooled into ``chain * draw`` draws).
        A 2-D array is always ``(n, d)``: pass the draws of a scalar as ``(chain, draw, 1)``.
    score
        The score :math:`s(x) = \nabla \log p(x) = -\nabla E(x)` at every draw, of the same
        shape as ``draws``. Give ``score`` or ``energy``, not both.
    energy
        The energy :math:`E(x)` of one configuration of shape ``(d,)``, a scalar; its score at the
        draws is computed as ``-jax.vmap(jax.grad(energy))``.
    c, beta
        The IMQ kernel :math:`k(x, y) = (c^2 + \|x - y\|^2)^\beta`, with :math:`c > 0` and
        :math:`-1 < \beta < 0` (the range in which Gorham & Mackey prove that the IMQ KSD
        detects non-convergence); the defaults :math:`c = 1`, :math:`\beta = -1/2` are the
        paper's.
    block_size
        Rows of the kernel matrix computed at once; by default as many as keep one block below
        :math:`2^{20}` entries, so memory grows as :math:`n`, never as :math:`n^2`
        (:math:`10^5` draws go in blocks of 10 rows, a few tens of MiB in all). The result
        does not depend on it beyond rounding.

    Returns
    -------
    A scalar array: :math:`\mathrm{KSD} = \sqrt{\mathrm{KSD}^2}` (0 for a perfect sample,
    larger the further the draws are from :math:`p`), in the draws' floating dtype.

    Raises
    ------
    ValueError
        If ``draws`` is not ``(n, d)`` or ``(chain, draw, d)``, ``score`` has another shape,
        ``draws`` or ``score`` holds a NaN or an infinity, ``c`` is not positive or ``beta`` is
        outside :math:`(-1, 0)`.
    TypeError
        If both or neither of ``score`` and ``energy`` are given, or ``energy`` is not callable.

    Notes
    -----
    With the Langevin Stein operator, the Stein kernel of a base kernel :math:`k` is

    .. math:: k_p(x, y) = s(x) \cdot s(y)\, k(x, y) + s(x) \cdot \nabla_y k(x, y)
        + s(y) \cdot \nabla_x k(x, y) + \mathrm{tr}\big(\nabla_x \nabla_y k(x, y)\big),

    whose mean under :math:`p` is zero, and the discrepancy of draws :math:`x_1, \dots, x_n` is
    the V-statistic

    .. math:: \mathrm{KSD}^2 = \frac{1}{n^2} \sum_{i=1}^n \sum_{j=1}^n k_p(x_i, x_j) \ge 0.

    Only the score enters, so the normalizing constant of :math:`p` is never needed. With the
    IMQ kernel and :math:`\beta \in (-1, 0)`, a KSD tending to 0 implies that the draws
    converge weakly to :math:`p` (for distantly dissipative targets with a Lipschitz score,
    such as ones strongly log-concave outside a ball); Gaussian and Matérn kernels can miss
    non-convergence in :math:`d \ge 3`. The cost is :math:`O(n^2 d)`, in blocks of rows
    (:func:`jax.lax.map`); the function runs under :func:`jax.jit` and on any device.

    **KSD is blind to mixing proportions.** A score-based discrepancy cannot tell how much mass
    sits in well-separated modes: draws that all sit in one mode of a two-mode target, or that
    weight the modes wrongly, can have a small KSD (Wenliang & Kanagawa 2020). Report it next
    to a check of the mode weights or an :math:`\hat R` across chains started apart, never alone.

    References
    ----------
    Gorham, J. and Mackey, L. (2017). Measuring sample quality with kernels. *Proceedings of the
    34th International Conference on Machine Learning (ICML)*, PMLR 70, 1292-1301.

    Wenliang, L. K. and Kanagawa, H. (2020). Blindness of score-based methods to isolated
    components and mixing proportions. arXiv preprint.
    """
    x = _flatten_draws("draws", draws)
    if (score is None) == (energy is None):
        raise TypeError("ksd needs exactly one of score= (the scores at the draws) or energy=")
    if energy is not None:
        if not callable(energy):
            raise TypeError(f"energy must be a callable E(x) -> scalar, got {energy!r}")
        check_finite_array("draws", x)
        s = -jax.vmap(jax.grad(energy))(x)
        name = "the score -grad E(draws)"
    else:
        s = check_real_array("score", score)
        if s.shape != jnp.shape(draws):
            raise ValueError(
                f"score must have the shape of draws {tuple(jnp.shape(draws))}, got "
                f"score.shape={s.shape}"
            )
        s = s.reshape(x.shape)
        name = "score"
        check_finite_array("draws", x)
    s = s.astype(x.dtype)
    check_finite_array(name, s)
    _check_scalar("c", c, 0.0, np.inf)
    _check_scalar("beta", beta, -1.0, 0.0)
    n = x.shape[0]
    if block_size is None:
        block_size = max(1, min(n, _BLOCK_ENTRIES // n))
    else:
        block_size = min(check_int("block_size", block_size), n)
    half = not isinstance(beta, jax.core.Tracer) and float(np.asarray(beta)) == -0.5
    squared = _ksd_squared(x, s, c, beta, block_size, half)
    return jnp.sqrt(jnp.maximum(squared, 0.0))
