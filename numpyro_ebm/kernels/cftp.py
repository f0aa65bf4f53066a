r"""Coupling from the past (Propp & Wilson 1996): exact draws from a ferromagnetic Ising model.

On a periodic hypercubic lattice with every side even, take

.. math::

    \log p(s) = K \sum_{\langle ij \rangle} s_i s_j + H \sum_i s_i + \text{const},
    \qquad s \in \{-1, +1\}^{d}, \quad K \ge 0,

(:class:`~numpyro_ebm.models.ising.Ising` at inverse temperature :math:`\beta` has
:math:`K = \beta J`, :math:`H = \beta h`). A heat-bath checkerboard sweep sets each site of one
colour to :math:`+1` iff its uniform :math:`u_i < \sigma(2 (K \sum_{j \sim i} s_j + H))`, then the
other colour. With :math:`K \ge 0` the update is monotone: two configurations ordered site by
site stay ordered when swept with the same uniforms. Chains started at time :math:`-T` from the
all-up and the all-down configurations therefore sandwich every other chain; if they agree at
time 0, so does a chain started at :math:`-\infty`, and their common value is an exact draw.
Otherwise :math:`T` doubles, the sweeps of times :math:`-T/2, \dots, -1` keeping their uniforms
(the uniforms of time :math:`-t` come from ``fold_in(rng_key, t)``), until coalescence or
``max_doublings``.

The expected number of sweeps grows with the mixing time: fast above the critical
temperature, slow near and below it (critical slowing down), where a draw that has not
coalesced within ``max_doublings`` is reported as such.

References
----------
J. G. Propp and D. B. Wilson (1996). Exact sampling with coupled Markov chains and
applications to statistical mechanics. Random Structures & Algorithms 9(1-2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm._checks import check_finite_array, check_int
from numpyro_ebm.models.ising import neighbour_sum

__all__ = ["ising_cftp"]


def ising_cftp(
    rng_key: jax.Array, shape: tuple[int, ...], coupling, field=0.0, max_doublings: int = 16
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One exact draw of the Ising model above (see the module docstring).

    Parameters
    ----------
    rng_key
        The key of the draw (the uniforms of every time step derive from it).
    shape
        The lattice, every side even.
    coupling, field
        :math:`K \\ge 0` and :math:`H` (traced values allowed; :math:`K < 0` breaks the
        monotone coupling and gives no exact draw).
    max_doublings
        Stop after starting from :math:`T = 2^{\\text{max\\_doublings} - 1}`.

    Returns
    -------
    ``(spins, coalesced, num_sweeps)``: the draw in :math:`\\{-1, +1\\}`, whether the two
    chains met (the draw is exact only then), and the sweeps of the longest run.
    """
    shape = tuple(int(side) for side in shape)
    if not shape or any(side < 2 or side % 2 for side in shape):
        raise ValueError(f"ising_cftp needs a lattice whose every side is even, got {shape}")
    max_doublings = check_int("max_doublings", max_doublings)
    # NaN made every comparison false: both chains fell to -1 and "met", an exact-looking draw
    check_finite_array("coupling", coupling)
    check_finite_array("field", field)
    parity = np.indices(shape).sum(0) % 2
    colours = (jnp.asarray(parity == 0), jnp.asarray(parity == 1))
    dtype = jnp.result_type(float)
    coupling = jnp.asarray(coupling, dtype)
    field = jnp.asarray(field, dtype)

    def sweep(x, key):
        uniforms = jax.random.uniform(key, (2, *shape), dtype)
        for colour, u in zip(colours, uniforms, strict=True):
            up = u < jax.nn.sigmoid(2.0 * (coupling * neighbour_sum(x) + field))
            x = jnp.where(colour, jnp.where(up, 1.0, -1.0).astype(dtype), x)
        return x

    def from_the_past(start):
        def body(i, chains):
            key = jax.random.fold_in(rng_key, start - i)  # the uniforms of time -(start - i)
            return sweep(chains[0], key), sweep(chains[1], key)

        ones = jnp.ones(shape, dtype)
        return jax.lax.fori_loop(0, start, body, (ones, -ones))

    def keep_going(state):
        _, coalesced, _, doublings = state
        return ~coalesced & (doublings < max_doublings)

    def double(state):
        start, _, _, doublings = state
        top, bottom = from_the_past(start)
        return 2 * start, jnp.all(top == bottom), top, doublings + 1

    start = jnp.asarray(1, jnp.int32)
    init = (start, jnp.asarray(False), jnp.zeros(shape, dtype), jnp.asarray(0, jnp.int32))
    start, coalesced, spins, _ = jax.lax.while_loop(keep_going, double, init)
    return spins, coalesced, start // 2
