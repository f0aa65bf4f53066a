r"""Exact normalizing constants and expectations of binary models, by enumeration and by
transfer matrix; of low-dimensional continuous energies, by quadrature on a grid.

For a log density :math:`\log \tilde p(x)` on :math:`\{a, b\}^d`,

.. math::

    \log Z = \log \sum_{x \in \{a, b\}^d} e^{\log \tilde p(x)}, \qquad
    \mathbb{E}_p[f] = \sum_x e^{\log \tilde p(x) - \log Z} f(x),

summed over all :math:`2^d` states, state :math:`k` having site :math:`i` (row-major) high
iff bit :math:`i` of :math:`k` is set. States are visited in chunks (``lax.map`` over chunks,
``vmap`` inside one), with a streaming log-sum-exp, so memory is that of one chunk;
enumeration refuses more than :math:`2^{20}` states.

For the :math:`R \times C` periodic Ising lattice with :math:`R` up to about 12,
:func:`transfer_matrix_log_partition` computes :math:`\log Z = \log \operatorname{tr} T^C`
from the :math:`2^R \times 2^R` row-to-row transfer matrix (Kramers & Wannier 1941), in
float64 NumPy, for any number of columns.

For a continuous energy in one or two dimensions, :func:`grid_log_partition` integrates
:math:`e^{-E}` on a regular grid (the midpoint rule: error :math:`O(h^2)` for a smooth
integrand, negligible once the grid resolves the narrowest mode and the box holds all but a
negligible tail), the ground truth of a learned 2-D density's :math:`\log Z` and mode
weights.

References
----------
H. A. Kramers and G. H. Wannier (1941). Statistics of the two-dimensional ferromagnet.
Physical Review 60(3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from numpyro_ebm._checks import check_finite_array, check_int, check_positive

__all__ = [
    "MAX_STATES",
    "expectation",
    "grid",
    "grid_log_partition",
    "log_partition",
    "states",
    "transfer_matrix_log_partition",
]

MAX_STATES = 2**20
"""The largest number of states enumeration accepts."""


def _check_enumeration(shape, values, chunk_size) -> tuple[tuple[int, ...], tuple, int]:
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
    if any(d < 1 for d in shape):
        raise ValueError(f"shape must have positive sides, got {shape!r}")
    num_sites = math.prod(shape)
    if num_sites > 20:
        raise ValueError(
            f"shape={shape} has 2^{num_sites} states, more than the 2^20 = {MAX_STATES} that "
            "exact enumeration accepts"
        )
    try:
        numbers = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"values must be two numbers, got {values!r}") from None
    if numbers.shape != (2,) or not np.all(np.isfinite(numbers)) or numbers[0] == numbers[1]:
        raise ValueError(f"values must be two distinct finite numbers, got {values!r}")
    chunk_size = min(check_int("chunk_size", chunk_size), 2**num_sites)
    return shape, (float(values[0]), float(values[1])), chunk_size


def states(indices: jax.Array, shape: Sequence[int], values=(-1, 1)) -> jax.Array:
    """The configurations numbered ``indices`` (any integer array), shape
    ``(*indices.shape, *shape)``: site :math:`i` (row-major) takes ``values[1]`` iff bit
    :math:`i` of the index is set."""
    num_sites = math.prod(shape)
    bits = (jnp.asarray(indices)[..., None] >> jnp.arange(num_sites)) & 1
    low, high = values
    configurations = low + (high - low) * bits.astype(jnp.result_type(float))
    return configurations.reshape((*jnp.shape(indices), *shape))


def _chunk_logdensities(logdensity_fn, shape, values, chunk_size, chunk) -> jax.Array:
    indices = chunk * chunk_size + jnp.arange(chunk_size)
    valid = indices < 2 ** math.prod(shape)
    logdensity = jax.vmap(logdensity_fn)(states(indices, shape, values))
    return jnp.where(valid, logdensity, -jnp.inf), indices


def _num_chunks(shape, chunk_size) -> int:
    return -(-(2 ** math.prod(shape)) // chunk_size)


def log_partition(
    logdensity_fn: Callable,
    shape: Sequence[int],
    values=(-1, 1),
    chunk_size: int = 4096,
) -> jax.Array:
    """:math:`\\log Z` of ``logdensity_fn`` by enumerating :math:`\\{a, b\\}^d`.

    Parameters
    ----------
    logdensity_fn
        :math:`\\log \\tilde p(x)` of one configuration of ``shape``.
    shape
        Shape of one configuration; at most 20 sites (:math:`2^{20}` states).
    values
        The two values a site takes, ``(-1, 1)`` or ``(0, 1)``.
    chunk_size
        States evaluated together (memory: one chunk of configurations).

    Raises
    ------
    TypeError
        If ``values`` are not numbers, or ``logdensity_fn`` does not return a scalar.
    ValueError
        If ``shape`` has more than 20 sites, or ``values`` are not two distinct numbers; after
        the enumeration (where it is not traced), if ``logdensity_fn`` is NaN or
        :math:`+\\infty` at some state, or :math:`-\\infty` at every state.
    """
    shape, values, chunk_size = _check_enumeration(shape, values, chunk_size)
    out = jax.eval_shape(logdensity_fn, jax.ShapeDtypeStruct(shape, jnp.result_type(float)))
    if getattr(out, "shape", None) != ():
        raise TypeError(
            "logdensity_fn must return a scalar for one configuration of shape "
            f"{shape}, got {out}; batch with jax.vmap instead of inside the function"
        )

    def chunk_logsumexp(chunk):
        logdensity, _ = _chunk_logdensities(logdensity_fn, shape, values, chunk_size, chunk)
        undefined = jnp.stack([jnp.isnan(logdensity).sum(), (logdensity == jnp.inf).sum()])
        return jax.nn.logsumexp(logdensity), undefined

    per_chunk, undefined = jax.lax.map(chunk_logsumexp, jnp.arange(_num_chunks(shape, chunk_size)))
    log_z = jax.nn.logsumexp(per_chunk)
    if not isinstance(log_z, Tracer):
        _check_log_partition(log_z, undefined.sum(0), 2 ** math.prod(shape))
    return log_z


def _check_log_partition(log_z, undefined, num_states: int) -> None:
    r"""Refuse a :math:`\log Z` that is NaN or infinite, naming the states at fault."""
    nan, infinite = (int(count) for count in undefined)
    if nan or infinite:
        where = [f"NaN at {nan}"] * bool(nan) + [f"+inf at {infinite}"] * bool(infinite)
        raise ValueError(
            f"logdensity_fn is {' and '.join(where)} of the {num_states} states: log Z is "
            "undefined; check the log density there"
        )
    if float(log_z) == -math.inf:
        raise ValueError(
            f"logdensity_fn is -inf (zero density) at every one of the {num_states} states: "
            "log Z is -inf"
        )


def expectation(
    logdensity_fn: Callable,
    statistic: Callable,
    shape: Sequence[int],
    values=(-1, 1),
    chunk_size: int = 4096,
):
    """Exact :math:`\\mathbb{E}_p[f(x)]` by enumeration, for ``statistic(x)`` returning an
    array or a pytree of arrays (e.g. ``lambda s: (jnp.abs(s.mean()), energy(s) / s.size)``).
    Arguments and errors as in :func:`log_partition`."""
    shape, values, chunk_size = _check_enumeration(shape, values, chunk_size)
    log_z = log_partition(logdensity_fn, shape, values, chunk_size)

    def chunk_sum(chunk):
        logdensity, indices = _chunk_logdensities(logdensity_fn, shape, values, chunk_size, chunk)
        weights = jnp.exp(logdensity - log_z)
        stats = jax.vmap(statistic)(states(indices, shape, values))
        return jax.tree.map(lambda f: jnp.tensordot(weights, f, axes=1), stats)

    sums = jax.lax.map(chunk_sum, jnp.arange(_num_chunks(shape, chunk_size)))
    return jax.tree.map(lambda s: jnp.sum(s, axis=0), sums)


def transfer_matrix_log_partition(
    rows: int, cols: int, beta: float, J: float = 1.0, h: float = 0.0
) -> float:
    r""":math:`\log Z` of the periodic :math:`R \times C` Ising lattice (``rows`` :math:`R`,
    ``cols`` :math:`C`, energy of :class:`~numpyro_ebm.models.ising.Ising` with :math:`\pm 1`
    spins), exactly, as :math:`\log \sum_k \lambda_k^C` over the eigenvalues of the symmetric
    transfer matrix

    .. math::

        T_{\sigma\sigma'} = \exp\Big(\beta J \sum_i \sigma_i \sigma'_i
        + \tfrac12 w(\sigma) + \tfrac12 w(\sigma')\Big), \qquad
        w(\sigma) = \beta J \sum_i \sigma_i \sigma_{i+1} + \beta h \sum_i \sigma_i,

    :math:`\sigma` a column of :math:`R` spins (:math:`2^R` states; ``rows`` at most 12).
    float64 NumPy; returns a Python float.
    """
    rows = check_int("rows", rows, minimum=2)
    cols = check_int("cols", cols, minimum=2)
    if rows > 12:
        raise ValueError(f"rows must be at most 12 (a 2^rows square transfer matrix), got {rows}")
    check_positive("beta", beta)
    for name, value in (("J", J), ("h", h)):
        check_finite_array(name, value)
    bits = (np.arange(2**rows)[:, None] >> np.arange(rows)) & 1
    sigma = 2.0 * bits - 1.0
    within = beta * J * np.sum(sigma * np.roll(sigma, -1, axis=1), axis=1)
    within += beta * h * np.sum(sigma, axis=1)
    between = beta * J * sigma @ sigma.T
    log_t = between + 0.5 * within[:, None] + 0.5 * within[None, :]
    shift = np.max(log_t)
    eigenvalues = np.linalg.eigvalsh(np.exp(log_t - shift))
    largest = np.max(np.abs(eigenvalues))
    return float(cols * (shift + np.log(largest)) + np.log(np.sum((eigenvalues / largest) ** cols)))


class Grid(NamedTuple):
    """The midpoints ``points`` ``(num**d, d)`` of a regular grid of ``num`` cells a side on
    the box ``[lower, upper]^d``, each cell of volume ``cell_volume``."""

    points: jax.Array
    cell_volume: float


def grid(lower: Sequence[float], upper: Sequence[float], num: int = 256) -> Grid:
    """The midpoint grid of ``num`` cells a side on the box from ``lower`` to ``upper`` (one
    bound per dimension, 1 or 2 dimensions)."""
    lower = np.atleast_1d(np.asarray(lower, np.float64))
    upper = np.atleast_1d(np.asarray(upper, np.float64))
    num = check_int("num", num, minimum=2)
    if lower.shape != upper.shape or lower.ndim != 1 or lower.size not in (1, 2):
        raise ValueError(
            f"lower and upper must give one bound per dimension (1 or 2 dimensions), got "
            f"{lower.tolist()} and {upper.tolist()}"
        )
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(upper > lower)):
        raise ValueError(f"need finite bounds with upper > lower, got {lower} and {upper}")
    width = (upper - lower) / num
    axes = [lo + width_i * (np.arange(num) + 0.5) for lo, width_i in zip(lower, width, strict=True)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, lower.size)
    return Grid(jnp.asarray(mesh, jnp.result_type(float)), float(np.prod(width)))


def grid_log_partition(
    energy: Callable, lower: Sequence[float], upper: Sequence[float], num: int = 256
) -> float:
    r""":math:`\log Z = \log \int e^{-E(x)} dx` over the box ``[lower, upper]`` by the
    midpoint rule on :func:`grid`: :math:`\log \sum_j e^{-E(x_j)} + \log h^d`.

    ``energy`` takes one configuration of shape ``(d,)``, ``d`` = 1 or 2. Raises
    ``ValueError`` if an energy on the grid is not finite (a NaN would poison the sum).
    """
    cells = grid(lower, upper, num)
    log_density = -grid_energies(energy, cells.points).astype(np.float64)
    peak = log_density.max()
    return float(peak + np.log(np.exp(log_density - peak).sum()) + math.log(cells.cell_volume))


#: Grid points evaluated together.
_GRID_CHUNK = 8192


def grid_energies(energy: Callable, points: jax.Array) -> np.ndarray:
    """``energy`` at each of ``points`` (shape ``(n, d)``), as a NumPy array ``(n,)``."""
    # op by op, a chunk at a time: under jit XLA would constant-fold an energy's parameters
    # against the broadcast grid, which takes longer than evaluating it
    values = np.concatenate(
        [
            np.asarray(jax.vmap(energy)(points[start : start + _GRID_CHUNK]))
            for start in range(0, points.shape[0], _GRID_CHUNK)
        ]
    )
    check_finite_array("the energy on the grid", values)
    return values
