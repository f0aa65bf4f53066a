r"""Swendsen-Wang cluster updates for the ferromagnetic square-lattice Ising model, in
BlackJAX's form.

The Edwards-Sokal joint law of spins :math:`s` and bonds :math:`b` (Fortuin-Kasteleyn),

.. math::

    p(s, b) \propto e^{\beta h \sum_i s_i} \prod_{\langle ij \rangle}
    \left[(1 - p)\,[b_{ij} = 0] + p\,[b_{ij} = 1]\,[s_i = s_j]\right],
    \qquad p = 1 - e^{-2\beta J},

has the Ising model as its spin marginal (for :math:`J > 0`). One step alternates its two
exact conditionals (Swendsen & Wang 1987):

1. given :math:`s`, each bond between *aligned* neighbours is open with probability
   :math:`p`, every other bond closed;
2. given the bonds, the clusters (connected components of open bonds) take independent
   spins: cluster :math:`c` of size :math:`|c|` becomes :math:`+1` with probability
   :math:`\sigma(2\beta h |c|)`. At :math:`h = 0` this is the classic fair coin per
   cluster; for :math:`h \ne 0` it is the exact heat-bath draw of the cluster's spin in the
   field, so the field is allowed (no ghost spin needed).

Clusters are labelled in JAX by iterated minimum-label propagation over open bonds with
pointer jumping (label :math:`\leftarrow` label of label) under a ``lax.while_loop``, until no
label changes: labels only decrease, always point into the site's own cluster, and at the
fixed point are constant on clusters; each cluster's label is its smallest flat site index.

Near :math:`\beta_c` the dynamical exponent drops from :math:`z \approx 2.17` (local
updates) to :math:`z \approx 0.2`-:math:`0.35`, which is what the cluster move is for.

References
----------
R. H. Swendsen and J.-S. Wang (1987). Nonuniversal critical dynamics in Monte Carlo
simulations. Physical Review Letters 58(2).
R. G. Edwards and A. D. Sokal (1988). Generalization of the Fortuin-Kasteleyn-Swendsen-Wang
representation and Monte Carlo algorithm. Physical Review D 38(6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.types import PRNGKey
from jax.core import Tracer

from numpyro_ebm._checks import structure_checks_skipped
from numpyro_ebm._spins import as_spin_array, from_pm1, to_pm1
from numpyro_ebm.kernels.checkerboard import check_sublattices
from numpyro_ebm.models.ising import Ising, neighbour_sum, sublattice_masks

__all__ = [
    "SwendsenWangInfo",
    "SwendsenWangState",
    "as_top_level_api",
    "build_kernel",
    "check_ising_in_a_field",
    "cluster_labels",
    "cluster_sweep",
    "for_log_density",
    "init",
    "ising_in_a_field",
]


class SwendsenWangState(NamedTuple):
    """The configuration and its log density :math:`-\\beta E`."""

    position: jax.Array
    logdensity: jax.Array


class SwendsenWangInfo(NamedTuple):
    """``acceptance_rate``: 1 (both moves are exact conditional draws); ``is_finite``;
    ``num_grad_evals``: 0; ``num_clusters``: clusters of the bond configuration (isolated
    sites count); ``mean_cluster_size``: :math:`L^2` / ``num_clusters``."""

    acceptance_rate: jax.Array
    is_finite: jax.Array
    num_grad_evals: jax.Array
    num_clusters: jax.Array
    mean_cluster_size: jax.Array


def _check_model(model) -> Ising:
    if not isinstance(model, Ising):
        raise TypeError(
            "swendsen_wang needs an Ising model (it reads J, h, beta and the lattice), got "
            f"{model!r}"
        )
    if not isinstance(model.J, Tracer) and not np.asarray(model.J) > 0:
        raise ValueError(f"swendsen_wang needs a ferromagnetic coupling J > 0, got J={model.J!r}")
    return model


def cluster_labels(right: jax.Array, down: jax.Array) -> jax.Array:
    """Label the connected components of open bonds on a periodic 2-D lattice.

    Parameters
    ----------
    right, down
        Boolean arrays of shape ``(L, M)``: ``right[i, j]`` opens the bond between
        :math:`(i, j)` and :math:`(i, j + 1 \\bmod M)`, ``down[i, j]`` that between
        :math:`(i, j)` and :math:`(i + 1 \\bmod L, j)`.

    Returns
    -------
    int32 array of shape ``(L, M)``: each site's label, the smallest flat (row-major) index
    of a site of its component.
    """
    shape = right.shape
    size = right.size
    left, up = jnp.roll(right, 1, 1), jnp.roll(down, 1, 0)
    none = jnp.int32(size)

    def propagate(labels):
        candidates = jnp.stack(
            [
                labels,
                jnp.where(right, jnp.roll(labels, -1, 1), none),
                jnp.where(left, jnp.roll(labels, 1, 1), none),
                jnp.where(down, jnp.roll(labels, -1, 0), none),
                jnp.where(up, jnp.roll(labels, 1, 0), none),
            ]
        )
        flat = jnp.min(candidates, axis=0).reshape(-1)
        return flat[flat].reshape(shape)  # pointer jumping

    def body(carry):
        labels, _ = carry
        new = propagate(labels)
        return new, jnp.any(new != labels)

    start = jnp.arange(size, dtype=jnp.int32).reshape(shape)
    labels, _ = jax.lax.while_loop(lambda carry: carry[1], body, (start, jnp.array(True)))
    return labels


def init(position, model: Ising) -> SwendsenWangState:
    """Check ``position`` (values of ``model.spins``, shape ``(L, L)``; ``ValueError``
    otherwise), cast it to floats and evaluate its log density."""
    position = as_spin_array("position", position, model.spins)
    if position.shape != model.shape:
        raise ValueError(
            f"position must have the model's shape {model.shape}, got {position.shape}"
        )
    return SwendsenWangState(position, model.logdensity(position))


def cluster_sweep(rng_key: PRNGKey, s: jax.Array, coupling, field) -> tuple[jax.Array, jax.Array]:
    r"""One Swendsen-Wang sweep of :math:`p(s) \propto \exp(K \sum_{\langle ij \rangle} s_i s_j
    + \sum_i f_i s_i)` on :math:`\pm 1` spins ``s`` of a periodic 2-D lattice: ``coupling``
    :math:`K \ge 0` (:math:`\beta J`), ``field`` :math:`f` per site (:math:`\beta h`, any
    shape that broadcasts to ``s``; a cluster :math:`c` becomes :math:`+1` with probability
    :math:`\sigma(2 \sum_{i \in c} f_i)`). Returns the new spins and the number of clusters."""
    size = s.size
    right_key, down_key, spin_key = jax.random.split(rng_key, 3)
    p_open = -jnp.expm1(-2.0 * coupling)
    right = (s == jnp.roll(s, -1, 1)) & (jax.random.uniform(right_key, s.shape) < p_open)
    down = (s == jnp.roll(s, -1, 0)) & (jax.random.uniform(down_key, s.shape) < p_open)
    labels = cluster_labels(right, down).reshape(-1)
    sizes = jax.ops.segment_sum(jnp.ones(size), labels, num_segments=size)
    fields = jax.ops.segment_sum(
        jnp.broadcast_to(field, s.shape).reshape(-1), labels, num_segments=size
    )
    plus = jax.random.uniform(spin_key, (size,)) < jax.nn.sigmoid(2.0 * fields)
    return jnp.where(plus[labels], 1.0, -1.0).reshape(s.shape).astype(s.dtype), jnp.sum(sizes > 0)


def build_kernel():
    """Build ``kernel(rng_key, state, model) -> (state, info)``, one Swendsen-Wang sweep."""

    def kernel(
        rng_key: PRNGKey, state: SwendsenWangState, model: Ising
    ) -> tuple[SwendsenWangState, SwendsenWangInfo]:
        s = to_pm1(state.position, model.spins)
        spins, num_clusters = cluster_sweep(
            rng_key, s, model.beta * model.J, model.beta * model.h
        )
        position = from_pm1(spins, model.spins)
        logdensity = model.logdensity(position)
        info = SwendsenWangInfo(
            jnp.ones(()),
            jnp.isfinite(logdensity),
            jnp.asarray(0, jnp.int32),
            num_clusters,
            s.size / num_clusters,
        )
        return SwendsenWangState(position, logdensity), info

    return kernel


def as_top_level_api(model: Ising) -> SamplingAlgorithm:
    """Swendsen-Wang sweeps as a ``blackjax.SamplingAlgorithm``.

    Parameters
    ----------
    model
        A ferromagnetic :class:`~numpyro_ebm.models.ising.Ising` model (:math:`J > 0`, any
        field :math:`h`). The kernel needs its couplings, not only its log density: inside
        replica exchange pass ``lambda ld, T: as_top_level_api(model.with_beta(model.beta /
        T))``; as the negative phase of ``cd``/``pcd`` with an ``Ising`` as ``params``, pass
        ``lambda ld: as_top_level_api(ld.params)``.

    Examples
    --------
    .. code::

        model = Ising(64, beta=0.44)
        sampler = as_top_level_api(model)
        state = sampler.init(jnp.ones((64, 64)))
        state, info = jax.jit(sampler.step)(key, state)   # one cluster sweep
    """
    _check_model(model)
    kernel = build_kernel()

    def init_fn(position, rng_key: PRNGKey | None = None) -> SwendsenWangState:
        del rng_key
        return init(position, model)

    def step_fn(
        rng_key: PRNGKey, state: SwendsenWangState
    ) -> tuple[SwendsenWangState, SwendsenWangInfo]:
        return kernel(rng_key, state, model)

    return SamplingAlgorithm(init_fn, step_fn)


def ising_in_a_field(logdensity_fn: Callable, s: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""The coupling :math:`K` and fields :math:`f` of a log density of :math:`\pm 1` spins ``s``
    on a periodic 2-D lattice that has the form (checked by :func:`check_ising_in_a_field`)

    .. math::

        \log p(s) = K \sum_{\langle ij \rangle} s_i s_j + \sum_i f_i s_i + \sum_i a_i s_i^2
        + \text{const},

    an Ising model whose field varies by site: the conditional of the spins of a model with an
    Ising prior and a likelihood of each spin on its own (a Gaussian :math:`y_i \sim
    \mathcal N(s_i, \sigma^2)` gives :math:`f_i = y_i / \sigma^2`). :math:`K` is the Hessian
    entry between site :math:`(0, 0)` and its right neighbour, per bond (halved on a side of
    2, where the two sites share two bonds); :math:`f_i = -\tfrac12 s_i r_i -
    K \sum_{j \sim i} s_j` from each site's flip log ratio :math:`r_i = \delta_i g_i +
    \tfrac12 \delta_i^2 H_{ii}` (:math:`\delta_i = -2 s_i`), exact for this form, with the
    Hessian diagonal from one Hessian-vector product per sublattice (no two sites of a colour
    interact). Cost: one gradient and three Hessian-vector products."""
    grad = jax.grad(logdensity_fn)
    g, diagonal = _gradient_and_diagonal(grad, s)
    corner = jnp.zeros_like(s).at[0, 0].set(1.0)
    # a side of 2 joins (0, 0) and (0, 1) by two bonds (right and, around, left)
    bonds = 2 if s.shape[1] == 2 else 1
    coupling = jax.jvp(grad, (s,), (corner,))[1][0, 1] / bonds
    delta = -2.0 * s
    ratio = delta * g + 0.5 * delta**2 * diagonal
    return coupling, -0.5 * s * ratio - coupling * neighbour_sum(s)


def _gradient_and_diagonal(grad: Callable, s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The gradient at ``s`` and the Hessian's diagonal, from one Hessian-vector product per
    sublattice (exact where no two sites of a colour interact)."""
    even, odd = sublattice_masks(s.shape)
    g, on_even = jax.jvp(grad, (s,), (even.astype(s.dtype),))
    on_odd = jax.jvp(grad, (s,), (odd.astype(s.dtype),))[1]
    return g, jnp.where(even, on_even, on_odd)


def check_ising_in_a_field(logdensity_fn: Callable, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``logdensity_fn`` (of :math:`\\pm 1` spins of ``shape``, a
    periodic 2-D lattice with even sides) has the form of :func:`ising_in_a_field` with
    :math:`K \\ge 0`: of degree at most two in each site (checkerboard's test, which also finds
    couplings within a colour), and a Hessian whose off-diagonal part is :math:`K` times the
    lattice's adjacency, tested with random directions at an all-up and two random
    configurations (from a fixed key). Passes without a word where the values are traced, and
    inside :func:`~numpyro_ebm._checks.structure_checked`."""
    if structure_checks_skipped():
        return
    if len(shape) != 2:
        raise ValueError(f"swendsen_wang needs a 2-D lattice, got positions of shape {shape}")
    try:
        check_sublattices(logdensity_fn, shape, "pm1", "curvature")
    except ValueError as error:
        raise ValueError(
            "swendsen_wang needs an Ising model in a field (nearest-neighbour couplings, of "
            f"degree at most two in each site), and the structure test finds otherwise: {error}"
        ) from error
    grad = jax.grad(logdensity_fn)
    with jax.ensure_compile_time_eval():
        key_x, key_u = jax.random.split(jax.random.key(0))
        random = jnp.where(jax.random.bernoulli(key_x, 0.5, (2, *shape)), 1.0, -1.0)
        xs = jnp.concatenate([jnp.ones((1, *shape)), random])
        us = jax.random.normal(key_u, xs.shape)

        def parts(x, u):
            coupling, _ = ising_in_a_field(logdensity_fn, x)
            hvp = jax.jvp(grad, (x,), (u,))[1]
            diagonal = _gradient_and_diagonal(grad, x)[1]
            return coupling, hvp - diagonal * u, coupling * neighbour_sum(u)

        couplings, off, expected = jax.jit(jax.vmap(parts))(xs, us)
    if isinstance(couplings, Tracer):
        return
    couplings, off, expected = (np.asarray(a, np.float64) for a in (couplings, off, expected))
    miss = np.abs(off - expected)
    scale = 1e-4 * (1.0 + np.abs(off).max())
    if np.any(miss > scale):
        row, *site = np.unravel_index(int(np.argmax(miss)), miss.shape)
        raise ValueError(
            "swendsen_wang needs each conditional to be an Ising model in a field, one "
            "coupling K between nearest neighbours and terms of single sites otherwise, but "
            f"this log density's interactions at site {tuple(int(i) for i in site)} of a test "
            f"configuration miss K times its neighbours (K={couplings[row]:.4g}) by "
            f"{miss[row][tuple(site)]:.3g}; sample it with checkerboard or gibbs"
        )
    if np.any(couplings < 0):
        raise ValueError(
            f"swendsen_wang needs a ferromagnetic coupling K >= 0, got K={couplings.min():.4g}"
        )


def for_log_density(logdensity_fn: Callable, spins: str = "pm1") -> SamplingAlgorithm:
    """Swendsen-Wang sweeps of any log density of ``spins`` with the form of
    :func:`ising_in_a_field` (checked at ``init`` on concrete values): the coupling and fields
    are read from the log density at every sweep, so they may change between sweeps (the
    conditional of the spins of a model, given its continuous sites, in Gibbs within HMC). A
    sweep at a coupling that has turned negative does not move (``acceptance_rate`` 0)."""

    def on_pm1(s):
        return logdensity_fn(from_pm1(s, spins))

    def init_fn(position, rng_key: PRNGKey | None = None) -> SwendsenWangState:
        del rng_key
        position = as_spin_array("position", position, spins)
        check_ising_in_a_field(on_pm1, position.shape)
        return SwendsenWangState(position, logdensity_fn(position))

    def step_fn(rng_key: PRNGKey, state: SwendsenWangState):
        s = to_pm1(state.position, spins)
        coupling, field = ising_in_a_field(on_pm1, s)
        spins_new, num_clusters = cluster_sweep(rng_key, s, coupling, field)
        ferromagnetic = coupling >= 0
        position = jnp.where(ferromagnetic, from_pm1(spins_new, spins), state.position)
        logdensity = logdensity_fn(position)
        info = SwendsenWangInfo(
            ferromagnetic.astype(jnp.float32),
            jnp.isfinite(logdensity),
            jnp.asarray(4, jnp.int32),
            num_clusters,
            s.size / num_clusters,
        )
        return SwendsenWangState(position, logdensity), info

    return SamplingAlgorithm(init_fn, step_fn)
