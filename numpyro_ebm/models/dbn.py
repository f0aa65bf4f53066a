r"""Deep belief nets: stacked RBMs trained greedily, layer by layer (Hinton, Osindero & Teh
2006).

A DBN with layers :math:`v = h^0, h^1, \dots, h^L` is a top RBM on :math:`(h^{L-1}, h^L)`
under a directed sigmoid belief net:

.. math::

    p(v, h^1, \dots, h^L) = p_L(h^{L-1}, h^L) \prod_{l=1}^{L-1} p(h^{l-1} \mid h^l),
    \qquad p(h^{l-1}_i = 1 \mid h^l) = \sigma\big(b^l_i + (W^l h^l)_i\big),

where layer :math:`l` is the RBM :math:`(W^l, b^l, c^l)` on :math:`(h^{l-1}, h^l)`.

**Greedy training** (:func:`numpyro_ebm.training.rbm.fit_dbn`). Layer 1 is an RBM fit to the
data; layer :math:`l + 1` is an RBM fit to the representations of the data at layer :math:`l`,
obtained by passing the data up through the trained layers with :math:`p(h^l \mid h^{l-1}) =
\sigma(c^l + W^{l\top} h^{l-1})`. By default (``propagate="samples"``) the representation is
one binary sample :math:`h^l \sim p(h^l \mid h^{l-1})` per example, drawn once, so that each
layer is an RBM on binary data with a proper likelihood, as in Hinton et al. (2006);
``"probabilities"`` passes the probabilities themselves (lower variance; Hinton's guide, sec.
3.2).

**The bound.** For two layers, with the recognition distribution
:math:`q(h^1 \mid v) = \prod_j \sigma(c^1_j + (W^{1\top} v)_j)` of the first RBM,

.. math::

    \log p(v) \ge \sum_{h^1} q(h^1 \mid v) \left[\log p(v \mid h^1) + \log p_2(h^1)\right]
    + \mathcal{H}(q(\cdot \mid v)),

with equality when the top RBM is the first one "unrolled" (:math:`W^2 = W^{1\top}`, swapped
biases); training the top RBM raises the bound's second term. :meth:`DBN.log_likelihood_bound`
computes it exactly for small layers, and :meth:`DBN.log_likelihood` the exact
:math:`\log p(v) = \log \sum_{h^1} p(v \mid h^1) p_2(h^1)`.

**Sampling.** Block Gibbs sweeps of the top RBM (its own conditionals) on
:math:`h^{L-1}`, then one top-down pass :math:`h^{l-1} \sim p(h^{l-1} \mid h^l)` to the
visible layer.

References
----------
G. E. Hinton, S. Osindero and Y.-W. Teh (2006). A fast learning algorithm for deep belief
nets. Neural Computation 18(7).

G. E. Hinton (2010). A practical guide to training restricted Boltzmann machines. UTML TR
2010-003.

R. Salakhutdinov and I. Murray (2008). On the quantitative analysis of deep belief networks.
ICML.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from numpyro_ebm._checks import check_int
from numpyro_ebm.models.rbm import (
    MAX_ENUMERATION_STATES,
    BernoulliRBM,
    RBMParams,
    _bits,
    _check_enumerable,
    check_binary,
    check_params,
)

__all__ = ["DBN"]


@dataclass(frozen=True)
class DBN:
    """A deep belief net with binary layers of sizes ``layer_sizes`` (visible first).

    Parameters
    ----------
    layer_sizes
        ``(n_visible, n_hidden_1, ..., n_hidden_L)``: at least two sizes, each >= 1. Layer
        :math:`l` is the :class:`~.rbm.BernoulliRBM` ``(layer_sizes[l-1], layer_sizes[l])``.
    """

    layer_sizes: tuple[int, ...]

    def __post_init__(self):
        sizes = tuple(self.layer_sizes)
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least two sizes, got {self.layer_sizes!r}")
        sizes = tuple(check_int(f"layer_sizes[{i}]", n) for i, n in enumerate(sizes))
        object.__setattr__(self, "layer_sizes", sizes)

    @property
    def layers(self) -> tuple[BernoulliRBM, ...]:
        """The RBMs, bottom first."""
        sizes = self.layer_sizes
        return tuple(BernoulliRBM(a, b) for a, b in itertools.pairwise(sizes))

    def init(self, key: jax.Array, scale: float = 0.01) -> tuple[RBMParams, ...]:
        """Every layer's :meth:`~.rbm.BernoulliRBM.init`, with independent keys."""
        keys = jax.random.split(key, len(self.layers))
        return tuple(rbm.init(k, scale) for rbm, k in zip(self.layers, keys, strict=True))

    def _check_params(self, params) -> None:
        """One :class:`~.rbm.RBMParams` per layer, each of its layer's shapes and finite
        (``ValueError`` naming the layer and both shapes otherwise)."""
        if len(params) != len(self.layers):
            raise ValueError(
                f"params must hold {len(self.layers)} layers' RBMParams, got {len(params)}"
            )
        for i, (rbm, layer) in enumerate(zip(self.layers, params, strict=True)):
            check_params(rbm, layer, f"params[{i}]")

    def sample(
        self,
        rng_key: jax.Array,
        params: Sequence[RBMParams],
        num_samples: int,
        num_steps: int = 1000,
    ) -> jax.Array:
        """``num_samples`` independent draws of the visible layer, shape
        ``(num_samples, layer_sizes[0])``.

        Each comes from its own chain: ``num_steps`` block Gibbs sweeps of the top RBM from
        Bernoulli(1/2) noise on :math:`h^{L-1}`, then one top-down pass of
        :math:`p(h^{l-1} \\mid h^l)` samples. ``ValueError`` if ``params`` do not fit the
        layers (one :class:`~.rbm.RBMParams` per layer, of its shapes, finite).
        """
        self._check_params(params)
        num_samples = check_int("num_samples", num_samples)
        num_steps = check_int("num_steps", num_steps)
        top, top_params = self.layers[-1], params[-1]

        def sweep(v, step_key):
            key_h, key_v = jax.random.split(step_key)
            h = top.sample_hidden(key_h, top_params, v)
            return top.sample_visible(key_v, top_params, h), None

        def one(key):
            key_start, key_chain, key_down = jax.random.split(key, 3)
            start = jax.random.bernoulli(key_start, 0.5, (top.n_visible,))
            start = start.astype(top_params.W.dtype)
            h, _ = jax.lax.scan(sweep, start, jax.random.split(key_chain, num_steps))
            down_keys = jax.random.split(key_down, len(self.layers) - 1)
            for rbm, layer, down_key in zip(
                self.layers[-2::-1], params[-2::-1], down_keys, strict=True
            ):
                h = rbm.sample_visible(down_key, layer, h)
            return h

        return jax.vmap(one)(jax.random.split(rng_key, num_samples))

    def _two_layers(self, params, data, max_states):
        if len(self.layers) != 2:
            raise ValueError(
                f"the exact likelihood and bound are for two-layer DBNs, this one has "
                f"{len(self.layers)} layers (layer_sizes={self.layer_sizes})"
            )
        self._check_params(params)
        bottom, top = self.layers
        data = jnp.asarray(check_binary("data", data), params[0].W.dtype)
        if data.ndim != 2 or data.shape[1] != bottom.n_visible:
            raise ValueError(
                f"data must have shape (n, {bottom.n_visible}), got shape {data.shape}"
            )
        _check_enumerable(bottom.n_hidden, "first hidden", max_states)
        states = _bits(jnp.arange(2**bottom.n_hidden), bottom.n_hidden)  # (S, n_h1)
        log_prior = -jax.vmap(top.free_energy, (None, 0))(params[1], states)
        log_prior = log_prior - top.log_partition(params[1], max_states=max_states)
        W, b = params[0].W, params[0].b
        logits = b + states @ W.T  # (S, n_v)
        # log p(v | h1) for every data row and state: (n, S)
        log_lik = data @ jax.nn.log_sigmoid(logits).T + (1.0 - data) @ jax.nn.log_sigmoid(-logits).T
        return bottom, data, states, log_prior, log_lik

    def log_likelihood(self, params, data, max_states: int = MAX_ENUMERATION_STATES) -> jax.Array:
        r"""Exact mean :math:`\log p(v) = \log \sum_{h^1} p(v \mid h^1)\, p_2(h^1)` over the
        rows of ``data``, for a two-layer DBN (enumerating :math:`h^1` and the top RBM's
        smaller layer)."""
        _, _, _, log_prior, log_lik = self._two_layers(params, data, max_states)
        return jnp.mean(jax.nn.logsumexp(log_lik + log_prior, axis=1))

    def log_likelihood_bound(
        self, params, data, max_states: int = MAX_ENUMERATION_STATES
    ) -> jax.Array:
        r"""The variational lower bound on the mean :math:`\log p(v)` of a two-layer DBN with
        :math:`q(h^1 \mid v)` the first RBM's posterior (module docstring), exact (sums over
        the :math:`2^{n_{h^1}}` states)."""
        _, data, states, log_prior, log_lik = self._two_layers(params, data, max_states)
        field = params[0].c + data @ params[0].W  # (n, n_h1)
        log_q = jax.nn.log_sigmoid(field) @ states.T + jax.nn.log_sigmoid(-field) @ (1.0 - states).T
        return jnp.mean(jnp.sum(jnp.exp(log_q) * (log_lik + log_prior - log_q), axis=1))
