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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.types import PRNGKey
from jax.core import Tracer

from numpyro_ebm._spins import as_spin_array, from_pm1, to_pm1
from numpyro_ebm.models.ising import Ising

__all__ = [
    "SwendsenWangInfo",
    "SwendsenWangState",
    "as_top_level_api",
    "build_kernel",
    "cluster_labels",
    "init",
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


def build_kernel():
    """Build ``kernel(rng_key, state, model) -> (state, info)``, one Swendsen-Wang sweep."""

    def kernel(
        rng_key: PRNGKey, state: SwendsenWangState, model: Ising
    ) -> tuple[SwendsenWangState, SwendsenWangInfo]:
        s = to_pm1(state.position, model.spins)
        size = s.size
        right_key, down_key, spin_key = jax.random.split(rng_key, 3)
        p_open = -jnp.expm1(-2.0 * model.beta * model.J)
        right = (s == jnp.roll(s, -1, 1)) & (jax.random.uniform(right_key, s.shape) < p_open)
        down = (s == jnp.roll(s, -1, 0)) & (jax.random.uniform(down_key, s.shape) < p_open)
        labels = cluster_labels(right, down).reshape(-1)
        sizes = jax.ops.segment_sum(jnp.ones(size), labels, num_segments=size)
        plus = jax.random.uniform(spin_key, (size,)) < jax.nn.sigmoid(
            2.0 * model.beta * model.h * sizes
        )
        spins = jnp.where(plus[labels], 1.0, -1.0).reshape(s.shape).astype(s.dtype)
        position = from_pm1(spins, model.spins)
        logdensity = model.logdensity(position)
        num_clusters = jnp.sum(sizes > 0)
        info = SwendsenWangInfo(
            jnp.ones(()),
            jnp.isfinite(logdensity),
            jnp.asarray(0, jnp.int32),
            num_clusters,
            size / num_clusters,
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
