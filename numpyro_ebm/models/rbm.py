r"""Restricted Boltzmann machines: Bernoulli-Bernoulli and Gaussian-Bernoulli.

A restricted Boltzmann machine (RBM; Smolensky 1986, Hinton 2002) is a bipartite energy-based
model over visible units :math:`v \in \{0,1\}^{n_v}` and hidden units
:math:`h \in \{0,1\}^{n_h}`, with parameters :class:`RBMParams` ``(W, b, c)``:

.. math::

    E(v, h) = -b^\top v - c^\top h - v^\top W h, \qquad
    p(v, h) = \frac{e^{-E(v, h)}}{Z}.

Summing out the hidden units gives the **free energy**, the energy of the visible marginal
:math:`p(v) = e^{-F(v)}/Z`,

.. math::

    F(v) = -b^\top v - \sum_{j=1}^{n_h} \operatorname{softplus}\!\left(c_j + (W^\top v)_j\right),

and both conditionals factorize: :math:`p(h_j = 1 \mid v) = \sigma(c_j + (W^\top v)_j)`,
:math:`p(v_i = 1 \mid h) = \sigma(b_i + (W h)_i)`, which is what block Gibbs sampling
(:mod:`numpyro_ebm.kernels.block_gibbs`) exploits.

Every function takes the parameters and **one** configuration (``rbm.free_energy(params, v)``);
batching is ``jax.vmap``'s job. The free energy is an energy in the sense of
:mod:`numpyro_ebm.energy`, so the contrastive objectives train an RBM as they train any
energy: ``training.cd(rbm.free_energy, k=1, kernel=block_gibbs.kernel_factory(rbm))``. Its
gradient, :math:`\nabla_\theta F(v) = -\left(v\, \hat h(v)^\top,\ v,\ \hat h(v)\right)` with
:math:`\hat h(v) = p(h = 1 \mid v)`, is the Rao-Blackwellized ("mean-field") statistic of
Hinton's practical guide for both phases: the hidden units are summed out exactly, so the
estimator of the log-likelihood gradient stays unbiased given its negative samples and has a
lower variance than one using sampled hidden states. The visible negatives are samples, never
probabilities.

For small RBMs the log partition function is exact (:meth:`BernoulliRBM.log_partition`, a sum
over the smaller layer); for large ones :meth:`BernoulliRBM.ais_log_partition` estimates it
by annealed importance sampling from the base-rate RBM of Salakhutdinov & Murray (2008).

The Gaussian-Bernoulli RBM (:class:`GaussianBernoulliRBM`) models real-valued data with the
parameterization of Cho, Raiko & Ilin (2011).

:func:`train_rbm`, :func:`save_rbm`, :func:`load_rbm` and :func:`check_binary` are what the
command line needs: training on a binary ``(n, n_visible)`` array, and an RBM on disk as JSON
plus ``.npz`` arrays (no pickle).

References
----------
P. Smolensky (1986). Information processing in dynamical systems: foundations of harmony
theory. In Parallel Distributed Processing, vol. 1.

G. E. Hinton (2002). Training products of experts by minimizing contrastive divergence.
Neural Computation 14(8).

G. E. Hinton (2010). A practical guide to training restricted Boltzmann machines. UTML TR
2010-003.

T. Tieleman (2008). Training restricted Boltzmann machines using approximations to the
likelihood gradient. ICML.

R. Salakhutdinov and I. Murray (2008). On the quantitative analysis of deep belief networks.
ICML.

K. Cho, T. Raiko and A. Ilin (2011). Improved learning of Gaussian-Bernoulli restricted
Boltzmann machines. ICANN.
"""

from __future__ import annotations

import functools
import json
import math
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.core import Tracer

from numpyro_ebm._checks import check_finite_array, check_int, check_positive

__all__ = [
    "MAX_ENUMERATION_STATES",
    "AISResult",
    "BernoulliRBM",
    "GaussianBernoulliRBM",
    "GaussianRBMParams",
    "RBMFit",
    "RBMParams",
    "binary_noise",
    "check_binary",
    "fit_rbm",
    "load_rbm",
    "rbm_optimizer",
    "save_rbm",
    "train_rbm",
]

#: The most states :meth:`BernoulliRBM.log_partition` enumerates (the smaller layer's
#: :math:`2^{20}`).
MAX_ENUMERATION_STATES = 2**20
_CHUNK_LOG2 = 12  # states per lax.map chunk of the enumeration: 2^12


class RBMParams(NamedTuple):
    """Parameters of a Bernoulli RBM: ``W`` of shape ``(n_visible, n_hidden)``, visible biases
    ``b`` ``(n_visible,)``, hidden biases ``c`` ``(n_hidden,)``. A pytree (optax takes it)."""

    W: jax.Array
    b: jax.Array
    c: jax.Array


class GaussianRBMParams(NamedTuple):
    r"""Parameters of a Gaussian-Bernoulli RBM: ``W``, ``b``, ``c`` as in :class:`RBMParams`
    and ``log_var`` :math:`= \log \sigma_i^2`, shape ``(n_visible,)``."""

    W: jax.Array
    b: jax.Array
    c: jax.Array
    log_var: jax.Array


class AISResult(NamedTuple):
    r"""What :meth:`BernoulliRBM.ais_log_partition` returns.

    ``log_z``: the estimate :math:`\log \hat Z` (log-mean-exp of all importance weights plus
    :math:`\log Z_A`); ``stderr``: its standard error, the standard deviation of the
    independent runs' estimates over :math:`\sqrt{\text{runs}}`; ``run_log_z``: each run's
    estimate, shape ``(num_runs,)``; ``log_weights``: the log importance weights, shape
    ``(num_runs, num_chains)``; ``log_z_base``: :math:`\log Z_A` of the base-rate RBM."""

    log_z: jax.Array
    stderr: jax.Array
    run_log_z: jax.Array
    log_weights: jax.Array
    log_z_base: jax.Array


# --------------------------------------------------------------------------------------------
# input checks


def check_binary(name: str, data) -> np.ndarray:
    """Return ``data`` as a NumPy array after checking that every entry is 0 or 1.

    Raises
    ------
    TypeError
        If ``data`` is not numeric or boolean.
    ValueError
        If an entry is neither 0 nor 1 (the message names ``name``, how many entries and the
        first one with its index), or ``data`` is empty.
    """
    array = np.asarray(data)
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(
            f"{name} must be a numeric or boolean array of 0/1, got dtype {array.dtype}"
        )
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    bad = (array != 0) & (array != 1)
    if np.any(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be binary (every entry 0 or 1), got {int(bad.sum())} other value(s), "
            f"first {array[first].item()!r} at index {first}; binarize it first, e.g. "
            f"({name} >= threshold).astype('float32')"
        )
    return array


def _check_rows(name: str, data, n_visible: int, binary: bool) -> jax.Array:
    """``data`` as a float array of shape ``(n, n_visible)``, checked (traced data, under
    ``jit``, for its shape only)."""
    if isinstance(data, Tracer):
        if data.ndim != 2 or data.shape[1] != n_visible:
            raise ValueError(
                f"{name} must have shape (n, n_visible={n_visible}), got shape {data.shape}"
            )
        return data.astype(jnp.result_type(float))
    array = check_binary(name, data) if binary else np.asarray(data)
    if not binary:
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
        check_finite_array(name, array)
    if array.ndim != 2 or array.shape[1] != n_visible:
        raise ValueError(
            f"{name} must have shape (n, n_visible={n_visible}), got shape {array.shape}"
        )
    return jnp.asarray(array, jnp.result_type(float))


def binary_noise(p: float = 0.5) -> Callable:
    """``noise(key, shape)``: independent Bernoulli(``p``) 0/1 floats, the chain starts of a
    persistent-CD replay buffer for binary visible units (see
    :func:`numpyro_ebm.training.objectives.pcd`'s ``init``)."""
    if not 0.0 < float(p) < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p!r}")

    def noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.bernoulli(key, p, shape).astype(jnp.result_type(float))

    return noise


# --------------------------------------------------------------------------------------------
# enumeration


def _bits(indices: jax.Array, m: int) -> jax.Array:
    """The binary states numbered ``indices``: rows of ``m`` bits, least significant first."""
    return ((indices[:, None] >> jnp.arange(m)) & 1).astype(jnp.result_type(float))


def _logsumexp_over_states(fn: Callable, m: int) -> jax.Array:
    r""":math:`\log \sum_{s \in \{0,1\}^m} e^{fn(s)}`, ``fn`` mapping a block of states
    ``(k, m)`` to their values ``(k,)``; in chunks of :math:`2^{12}` states with ``lax.map``
    so that memory stays bounded."""
    chunk_log2 = min(m, _CHUNK_LOG2)
    chunk = 2**chunk_log2

    def one(start):
        return jax.nn.logsumexp(fn(_bits(start + jnp.arange(chunk), m)))

    starts = jnp.arange(2 ** (m - chunk_log2)) * chunk
    return jax.nn.logsumexp(jax.lax.map(one, starts))


def _check_enumerable(m: int, layer: str, max_states: int) -> None:
    max_states = check_int("max_states", max_states)
    if max_states > MAX_ENUMERATION_STATES:
        raise ValueError(
            f"max_states must be at most 2**20 = {MAX_ENUMERATION_STATES}, got {max_states}"
        )
    if 2**m > max_states:
        raise ValueError(
            f"exact enumeration over the {layer} layer needs 2**{m} states, beyond "
            f"max_states={max_states} (at most 2**20 are supported); use ais_log_partition "
            "for a model this large"
        )


# --------------------------------------------------------------------------------------------
# models


def _check_sizes(n_visible, n_hidden) -> tuple[int, int]:
    return check_int("n_visible", n_visible), check_int("n_hidden", n_hidden)


def _check_params(model, params, name: str = "params") -> None:
    """Raise ``ValueError`` unless ``params`` has the fields and shapes that ``model.init``
    gives (shapes are static, so this holds under ``jit`` too) and, where concrete, only
    finite values: another RBM's parameters would otherwise be read silently (an enumeration
    over this model's layer with that RBM's weights), and one NaN makes every result NaN."""
    expected = jax.eval_shape(functools.partial(model.init, scale=0.01), jax.random.key(0))
    for field, want in zip(expected._fields, expected, strict=True):
        if not hasattr(params, field):
            raise ValueError(
                f"{name} must be the {type(expected).__name__} of {model!r}, got a "
                f"{type(params).__name__} (no field {field!r})"
            )
        got = getattr(params, field)
        if jnp.shape(got) != want.shape:
            raise ValueError(
                f"{name}.{field} has shape {jnp.shape(got)}, but {model!r} needs {want.shape}: "
                "the parameters of another model?"
            )
        check_finite_array(f"{name}.{field}", got)


def _bernoulli(key: jax.Array, probs: jax.Array) -> jax.Array:
    return jax.random.bernoulli(key, probs).astype(probs.dtype)


@dataclass(frozen=True)
class BernoulliRBM:
    r"""A Bernoulli-Bernoulli RBM with ``n_visible`` and ``n_hidden`` binary units.

    The object holds the sizes only (it is hashable and static under ``jit``); parameters are
    an :class:`RBMParams` pytree passed to every method. Energies, conditionals and samplers
    take one configuration. See the module docstring for the model.

    Parameters
    ----------
    n_visible, n_hidden
        Layer sizes, integers >= 1.
    """

    n_visible: int
    n_hidden: int

    def __post_init__(self):
        n_visible, n_hidden = _check_sizes(self.n_visible, self.n_hidden)
        object.__setattr__(self, "n_visible", n_visible)
        object.__setattr__(self, "n_hidden", n_hidden)

    #: Visible units are binary: :func:`check_binary` applies to data.
    binary_visible = True

    def init(self, key: jax.Array, scale: float = 0.01, data=None) -> RBMParams:
        r"""Weights :math:`W_{ij} \sim \mathcal{N}(0, \text{scale}^2)`, hidden biases 0, and
        visible biases 0 or, with ``data``, :math:`b_i = \log(\bar v_i / (1 - \bar v_i))` of
        the data's marginals (clipped to [1e-3, 1 - 1e-3]; Hinton's guide, sec. 8). ``data``
        may hold probabilities (a DBN's propagated layer) as well as 0/1."""
        check_positive("scale", scale)
        dtype = jnp.result_type(float)
        W = scale * jax.random.normal(key, (self.n_visible, self.n_hidden), dtype)
        b = jnp.zeros(self.n_visible, dtype)
        if data is not None:
            b = _base_rate_bias(_check_rows("data", data, self.n_visible, False))
        return RBMParams(W, b, jnp.zeros(self.n_hidden, dtype))

    def energy(self, params: RBMParams, v: jax.Array, h: jax.Array) -> jax.Array:
        r"""The joint energy :math:`E(v, h) = -b^\top v - c^\top h - v^\top W h`."""
        return -(params.b @ v + params.c @ h + v @ params.W @ h)

    def free_energy(self, params: RBMParams, v: jax.Array) -> jax.Array:
        r""":math:`F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + (W^\top v)_j)`,
        so that :math:`p(v) = e^{-F(v)} / Z`."""
        return -(params.b @ v + jnp.sum(jax.nn.softplus(params.c + v @ params.W)))

    def hidden_probs(self, params: RBMParams, v: jax.Array) -> jax.Array:
        r""":math:`p(h_j = 1 \mid v) = \sigma(c_j + (W^\top v)_j)`."""
        return jax.nn.sigmoid(params.c + v @ params.W)

    def visible_probs(self, params: RBMParams, h: jax.Array) -> jax.Array:
        r""":math:`p(v_i = 1 \mid h) = \sigma(b_i + (W h)_i)`, also :math:`\mathbb{E}[v \mid h]`."""
        return jax.nn.sigmoid(params.b + params.W @ h)

    def sample_hidden(self, rng_key: jax.Array, params: RBMParams, v: jax.Array) -> jax.Array:
        """A draw :math:`h \\sim p(h \\mid v)` (0/1 floats)."""
        return _bernoulli(rng_key, self.hidden_probs(params, v))

    def sample_visible(self, rng_key: jax.Array, params: RBMParams, h: jax.Array) -> jax.Array:
        """A draw :math:`v \\sim p(v \\mid h)` (0/1 floats)."""
        return _bernoulli(rng_key, self.visible_probs(params, h))

    # ---- exact normalizer ------------------------------------------------------------------

    def log_partition(
        self, params: RBMParams, over: str = "smaller", max_states: int = MAX_ENUMERATION_STATES
    ) -> jax.Array:
        r"""The exact :math:`\log Z`, by summing over every state of one layer:

        .. math::

            \log Z = \log \sum_{h} \exp\!\Big(c^\top h + \sum_i
            \operatorname{softplus}(b_i + (W h)_i)\Big)
            = \log \sum_v e^{-F(v)}.

        Parameters
        ----------
        params
            The RBM's parameters.
        over
            ``"hidden"``, ``"visible"`` or ``"smaller"`` (default): the layer enumerated.
        max_states
            The most states enumerated (:math:`2^{20}` at most), in chunks of :math:`2^{12}`.

        Raises
        ------
        ValueError
            If the enumerated layer has more than ``max_states`` states (before anything is
            computed; use :meth:`ais_log_partition` then), or ``params`` do not have this
            model's shapes or hold a NaN or an infinity.
        """
        _check_params(self, params)
        layers = {"hidden": self.n_hidden, "visible": self.n_visible}
        if over == "smaller":
            over = "hidden" if self.n_hidden <= self.n_visible else "visible"
        if over not in layers:
            raise ValueError(f"over must be 'hidden', 'visible' or 'smaller', got {over!r}")
        _check_enumerable(layers[over], over, max_states)
        if over == "hidden":

            def values(h):
                return h @ params.c + jnp.sum(jax.nn.softplus(params.b + h @ params.W.T), axis=1)

        else:

            def values(v):
                return -jax.vmap(self.free_energy, (None, 0))(params, v)

        return _logsumexp_over_states(values, layers[over])

    def log_likelihood(
        self, params: RBMParams, data, max_states: int = MAX_ENUMERATION_STATES
    ) -> jax.Array:
        r"""The exact mean log-likelihood :math:`\frac1n \sum_k \log p(v_k) = -\overline{F(v)}
        - \log Z` of the rows of ``data`` (shape ``(n, n_visible)``, binary), in nats.

        Raises
        ------
        ValueError
            For non-binary or mis-shaped ``data`` and for a model too large to enumerate
            (see :meth:`log_partition`).
        """
        data = _check_rows("data", data, self.n_visible, self.binary_visible)
        log_z = self.log_partition(params, max_states=max_states)
        return -jnp.mean(jax.vmap(self.free_energy, (None, 0))(params, data)) - log_z

    # ---- annealed importance sampling ------------------------------------------------------

    def ais_log_partition(
        self,
        rng_key: jax.Array,
        params: RBMParams,
        *,
        data=None,
        num_chains: int = 100,
        num_runs: int = 10,
        betas=None,
        num_betas: int = 1000,
    ) -> AISResult:
        r"""Estimate :math:`\log Z` by annealed importance sampling (Neal 2001) from the
        base-rate RBM of Salakhutdinov & Murray (2008).

        The base RBM :math:`A` has no weights, hidden biases 0 and visible biases
        :math:`b^A_i = \log(\bar v_i / (1 - \bar v_i))` from the marginals of ``data`` (0 when
        no data are given), so :math:`Z_A = 2^{n_h} \prod_i (1 + e^{b^A_i})` and exact samples
        are independent Bernoulli draws. The intermediate distributions

        .. math::

            p_k(v) \propto p_k^*(v) = \exp\!\left(-(1 - \beta_k) F_A(v) - \beta_k F_B(v)\right),
            \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_K = 1,

        are the visible marginals of an RBM with visible biases
        :math:`(1-\beta_k) b^A + \beta_k b`, weights :math:`\beta_k W` and hidden biases
        :math:`\beta_k c`: each transition :math:`T_k` is one block Gibbs sweep of that RBM,
        which leaves :math:`p_k` invariant. A chain :math:`v_0 \sim p_A`,
        :math:`v_k \sim T_k(v_{k-1}, \cdot)` carries the importance weight

        .. math::

            \log w = \sum_{k=1}^{K} \left[\log p_k^*(v_{k-1}) - \log p_{k-1}^*(v_{k-1})\right],
            \qquad \hat Z_B = Z_A \cdot \frac1N \sum_{n=1}^{N} w^{(n)},

        an unbiased estimate of :math:`Z_B`; :math:`\log \hat Z_B` underestimates
        :math:`\log Z_B` on average (Jensen), by little when the weights' variance is small.
        ``num_runs`` independent runs of ``num_chains`` chains give the standard error.

        Parameters
        ----------
        rng_key
            PRNG key; the result is a function of it.
        params
            The RBM :math:`B`; ``ValueError`` if they do not have this model's shapes or hold a
            NaN or an infinity.
        data
            Binary data whose marginals define the base rates (recommended: a base close to
            the data gives far lower-variance weights); ``None``: uniform base.
        num_chains, num_runs
            Chains per run and independent runs (>= 2 for a standard error).
        betas
            The inverse temperatures, increasing from 0 to 1; default ``num_betas`` equally
            spaced values.
        num_betas
            Number of inverse temperatures when ``betas`` is not given (>= 2).

        Returns
        -------
        AISResult

        References
        ----------
        R. M. Neal (2001). Annealed importance sampling. Statistics and Computing 11(2).

        R. Salakhutdinov and I. Murray (2008). On the quantitative analysis of deep belief
        networks. ICML.
        """
        _check_params(self, params)
        num_chains = check_int("num_chains", num_chains)
        num_runs = check_int("num_runs", num_runs, minimum=2)
        betas = _check_betas(betas, check_int("num_betas", num_betas, minimum=2))
        dtype = params.W.dtype
        if data is None:
            base_b = jnp.zeros(self.n_visible, dtype)
        else:
            base_b = _base_rate_bias(_check_rows("data", data, self.n_visible, True))
        log_z_base = self.n_hidden * math.log(2.0) + jnp.sum(jax.nn.softplus(base_b))
        log_w = _ais_log_weights(rng_key, params, base_b, betas, num_runs * num_chains)
        log_w = log_w.reshape(num_runs, num_chains)
        run_log_z = log_z_base + jax.nn.logsumexp(log_w, axis=1) - math.log(num_chains)
        log_z = log_z_base + jax.nn.logsumexp(log_w) - math.log(num_runs * num_chains)
        stderr = jnp.std(run_log_z, ddof=1) / math.sqrt(num_runs)
        return AISResult(log_z, stderr, run_log_z, log_w, log_z_base)


def _base_rate_bias(data: jax.Array) -> jax.Array:
    mean = jnp.clip(jnp.mean(data, axis=0), 1e-3, 1.0 - 1e-3)
    return jnp.log(mean) - jnp.log1p(-mean)


def _check_betas(betas, num_betas: int) -> jax.Array:
    if betas is None:
        return jnp.linspace(0.0, 1.0, num_betas)
    array = np.asarray(betas, np.float64)
    if (
        array.ndim != 1
        or array.size < 2
        or array[0] != 0.0
        or array[-1] != 1.0
        or np.any(np.diff(array) <= 0)
    ):
        raise ValueError(
            f"betas must be a 1-D strictly increasing sequence from 0 to 1, got {betas!r}"
        )
    return jnp.asarray(array, jnp.result_type(float))


def _ais_log_weights(rng_key, params: RBMParams, base_b, betas, num_chains) -> jax.Array:
    """Log importance weights of ``num_chains`` AIS chains (see ``ais_log_partition``), all
    chains advanced together as the rows of one ``(num_chains, n_visible)`` array."""

    def log_p_star(v, beta):
        # -(1 - beta) F_A(v) - beta F_B(v) for each row, dropping F_A's constant n_h log 2
        field = beta * (params.c + v @ params.W)
        return v @ ((1.0 - beta) * base_b + beta * params.b) + jnp.sum(
            jax.nn.softplus(field), axis=1
        )

    def step(carry, inputs):
        v, log_w = carry
        key, beta_prev, beta = inputs
        log_w = log_w + log_p_star(v, beta) - log_p_star(v, beta_prev)
        key_h, key_v = jax.random.split(key)
        h = _bernoulli(key_h, jax.nn.sigmoid(beta * (params.c + v @ params.W)))
        v = _bernoulli(
            key_v, jax.nn.sigmoid((1.0 - beta) * base_b + beta * (params.b + h @ params.W.T))
        )
        return (v, log_w), None

    key_start, key_run = jax.random.split(rng_key)
    v = _bernoulli(
        key_start, jnp.broadcast_to(jax.nn.sigmoid(base_b), (num_chains, base_b.shape[0]))
    )
    keys = jax.random.split(key_run, betas.shape[0] - 1)
    log_w = jnp.zeros(num_chains, v.dtype)
    (_, log_w), _ = jax.lax.scan(step, (v, log_w), (keys, betas[:-1], betas[1:]))
    return log_w


@dataclass(frozen=True)
class GaussianBernoulliRBM:
    r"""A Gaussian-Bernoulli RBM for real-valued data (Cho, Raiko & Ilin 2011).

    With :math:`\sigma_i^2 = e^{z_i}` (``params.log_var``):

    .. math::

        E(v, h) = \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2} - c^\top h
        - \sum_{i,j} \frac{v_i}{\sigma_i^2} W_{ij} h_j,

    so that :math:`p(h_j = 1 \mid v) = \sigma\big(c_j + \sum_i W_{ij} v_i / \sigma_i^2\big)`,
    :math:`p(v_i \mid h) = \mathcal{N}\big(b_i + (W h)_i,\ \sigma_i^2\big)` and

    .. math::

        F(v) = \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2}
        - \sum_j \operatorname{softplus}\!\Big(c_j + \sum_i W_{ij} v_i/\sigma_i^2\Big).

    Cho et al. divide the interaction by :math:`\sigma_i^2` (Hinton's guide divides by
    :math:`\sigma_i`); with it the gradient in :math:`z_i = \log\sigma_i^2` is well scaled and
    the conditional mean of :math:`v` does not depend on :math:`\sigma`. With ``sigma`` a
    number the variances are fixed at :math:`\sigma^2` (``log_var`` carries no gradient;
    standardize the data first, Hinton's guide sec. 13.2); with ``sigma="learned"`` they are
    trained with the other parameters.

    Parameters
    ----------
    n_visible, n_hidden
        Layer sizes, integers >= 1.
    sigma
        A positive standard deviation (fixed), or ``"learned"`` (initialized at 1).
    """

    n_visible: int
    n_hidden: int
    sigma: float | str = 1.0

    binary_visible = False

    def __post_init__(self):
        n_visible, n_hidden = _check_sizes(self.n_visible, self.n_hidden)
        object.__setattr__(self, "n_visible", n_visible)
        object.__setattr__(self, "n_hidden", n_hidden)
        if self.sigma != "learned":
            if isinstance(self.sigma, str):
                raise ValueError(
                    f"sigma must be a positive number or 'learned', got {self.sigma!r}"
                )
            check_positive("sigma", self.sigma)
            object.__setattr__(self, "sigma", float(self.sigma))

    def init(self, key: jax.Array, scale: float = 0.01, data=None) -> GaussianRBMParams:
        r""":math:`W_{ij} \sim \mathcal{N}(0, \text{scale}^2)`, ``c = 0``, ``b`` 0 or the data
        mean, :math:`\log\sigma_i^2` that of ``sigma`` (0 when learned)."""
        check_positive("scale", scale)
        dtype = jnp.result_type(float)
        W = scale * jax.random.normal(key, (self.n_visible, self.n_hidden), dtype)
        b = jnp.zeros(self.n_visible, dtype)
        if data is not None:
            b = jnp.mean(_check_rows("data", data, self.n_visible, False), axis=0)
        sigma = 1.0 if self.sigma == "learned" else self.sigma
        log_var = jnp.full(self.n_visible, 2.0 * math.log(sigma), dtype)
        return GaussianRBMParams(W, b, jnp.zeros(self.n_hidden, dtype), log_var)

    def variance(self, params: GaussianRBMParams) -> jax.Array:
        r""":math:`\sigma_i^2`, without gradient when ``sigma`` is fixed."""
        log_var = params.log_var
        if self.sigma != "learned":
            log_var = jax.lax.stop_gradient(log_var)
        return jnp.exp(log_var)

    def energy(self, params: GaussianRBMParams, v: jax.Array, h: jax.Array) -> jax.Array:
        """The joint energy :math:`E(v, h)` (see the class docstring)."""
        var = self.variance(params)
        return jnp.sum((v - params.b) ** 2 / (2.0 * var)) - params.c @ h - (v / var) @ params.W @ h

    def free_energy(self, params: GaussianRBMParams, v: jax.Array) -> jax.Array:
        """The free energy :math:`F(v)` (see the class docstring)."""
        var = self.variance(params)
        field = params.c + (v / var) @ params.W
        return jnp.sum((v - params.b) ** 2 / (2.0 * var)) - jnp.sum(jax.nn.softplus(field))

    def hidden_probs(self, params: GaussianRBMParams, v: jax.Array) -> jax.Array:
        r""":math:`p(h_j = 1 \mid v)`."""
        return jax.nn.sigmoid(params.c + (v / self.variance(params)) @ params.W)

    def visible_mean(self, params: GaussianRBMParams, h: jax.Array) -> jax.Array:
        r""":math:`\mathbb{E}[v \mid h] = b + W h`."""
        return params.b + params.W @ h

    def sample_hidden(self, rng_key, params: GaussianRBMParams, v: jax.Array) -> jax.Array:
        """A draw :math:`h \\sim p(h \\mid v)` (0/1 floats)."""
        return _bernoulli(rng_key, self.hidden_probs(params, v))

    def sample_visible(self, rng_key, params: GaussianRBMParams, h: jax.Array) -> jax.Array:
        """A draw :math:`v \\sim \\mathcal{N}(b + W h, \\operatorname{diag}\\sigma^2)`."""
        mean = self.visible_mean(params, h)
        noise = jax.random.normal(rng_key, mean.shape, mean.dtype)
        return mean + jnp.sqrt(self.variance(params)) * noise

    def log_partition(
        self, params: GaussianRBMParams, max_states: int = MAX_ENUMERATION_STATES
    ) -> jax.Array:
        r"""The exact :math:`\log Z`, integrating :math:`v` in closed form and summing over
        the :math:`2^{n_h}` hidden states:

        .. math::

            \log Z = \tfrac{n_v}{2}\log 2\pi + \sum_i \log\sigma_i + \log\sum_h
            \exp\!\Big(c^\top h + \sum_i \frac{(b_i + (Wh)_i)^2 - b_i^2}{2\sigma_i^2}\Big).

        Raises ``ValueError`` beyond ``max_states`` hidden states (at most :math:`2^{20}`), or
        if ``params`` do not have this model's shapes or hold a NaN or an infinity.
        """
        _check_params(self, params)
        _check_enumerable(self.n_hidden, "hidden", max_states)
        var = self.variance(params)

        def values(h):
            mean = params.b + h @ params.W.T
            return h @ params.c + jnp.sum((mean**2 - params.b**2) / (2.0 * var), axis=1)

        constant = 0.5 * self.n_visible * math.log(2.0 * math.pi) + 0.5 * jnp.sum(jnp.log(var))
        return constant + _logsumexp_over_states(values, self.n_hidden)

    def log_likelihood(
        self, params: GaussianRBMParams, data, max_states: int = MAX_ENUMERATION_STATES
    ) -> jax.Array:
        r"""The exact mean log density :math:`-\overline{F(v)} - \log Z` of the rows of
        ``data`` (shape ``(n, n_visible)``, finite), in nats."""
        data = _check_rows("data", data, self.n_visible, self.binary_visible)
        log_z = self.log_partition(params, max_states=max_states)
        return -jnp.mean(jax.vmap(self.free_energy, (None, 0))(params, data)) - log_z


# --------------------------------------------------------------------------------------------
# training and storage: what the command line calls


class RBMFit(NamedTuple):
    """What :func:`train_rbm` returns: the ``model``, its trained ``params`` and ``fit``'s
    ``history`` (per-chunk means of the loss, of the free energies of the positive and
    negative samples, with the ``"step"`` ending each chunk)."""

    model: BernoulliRBM
    params: RBMParams
    history: dict[str, np.ndarray]


def rbm_optimizer(
    learning_rate: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    r"""Hinton's guide's update as an optax chain: L2 weight decay on ``W`` only (not the
    biases), then SGD with (heavy-ball) momentum,
    ``optax.chain(optax.add_decayed_weights(weight_decay, mask), optax.sgd(lr, momentum))``."""
    check_positive("learning_rate", learning_rate)
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    if not (math.isfinite(float(weight_decay)) and float(weight_decay) >= 0.0):
        raise ValueError(f"weight_decay must be finite and >= 0, got {weight_decay!r}")

    def weights_only(params):
        return type(params)(*[name == "W" for name in params._fields])

    return optax.chain(
        optax.add_decayed_weights(float(weight_decay), mask=weights_only),
        optax.sgd(learning_rate, momentum=float(momentum) or None),
    )


_METHODS = ("cd", "pcd")


def fit_rbm(
    model,
    params,
    data,
    *,
    key: jax.Array,
    method: str = "pcd",
    k: int = 1,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 3000,
    batch_size: int = 10,
    num_chains: int | None = None,
    steps_per_chunk: int = 100,
    callbacks: Sequence[Callable] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> RBMFit:
    r"""Train an RBM from ``params`` on ``data`` with CD-k or PCD-k.

    The objective is :func:`numpyro_ebm.training.cd` or :func:`~numpyro_ebm.training.pcd` on
    the free energy (the Rao-Blackwellized gradient, see the module docstring), with
    :mod:`~numpyro_ebm.kernels.block_gibbs` as the negative-phase kernel, driven by
    :func:`numpyro_ebm.training.fit`. PCD keeps ``num_chains`` persistent chains (default
    ``batch_size``, Tieleman 2008) in a replay buffer that is never re-initialized (chains start
    at Bernoulli(1/2) noise); each update advances ``batch_size`` of them by ``k`` sweeps.

    Parameters
    ----------
    model
        A :class:`BernoulliRBM` or :class:`GaussianBernoulliRBM`.
    params
        Initial parameters.
    data
        Array of shape ``(n, n_visible)``: 0/1 for a Bernoulli RBM (probabilities in [0, 1]
        are accepted too: the free energy is defined there), finite reals for a Gaussian one.
    key
        PRNG key; the run is a function of it.
    method
        ``"pcd"`` or ``"cd"``.
    k
        Block Gibbs sweeps per update, >= 1.
    optimizer
        Default :func:`rbm_optimizer` ``(0.05)``: plain SGD.
    num_steps, batch_size, steps_per_chunk, callbacks, progress
        As in :func:`numpyro_ebm.training.fit` (minibatches are drawn with replacement).
    checkpoint_dir, checkpoint_every, resume
        As in :func:`numpyro_ebm.training.fit`: Orbax checkpoints of the parameters, the
        optimizer state and PCD's persistent chains; ``resume=True`` continues the latest one
        bit for bit.
    num_chains
        PCD's persistent chains, at least ``batch_size``.

    Returns
    -------
    RBMFit
    """
    from numpyro_ebm.kernels import block_gibbs
    from numpyro_ebm.training import fit, objectives

    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    data = np.asarray(_check_rows("data", data, model.n_visible, False), np.float32)
    optimizer = rbm_optimizer(0.05) if optimizer is None else optimizer
    kernel = block_gibbs.kernel_factory(model)
    if method == "cd":
        objective = objectives.cd(model.free_energy, k=k, kernel=kernel)
    else:
        batch_size = check_int("batch_size", batch_size)
        num_chains = batch_size if num_chains is None else check_int("num_chains", num_chains)
        if num_chains < batch_size:
            raise ValueError(
                f"num_chains ({num_chains}) must be at least batch_size ({batch_size})"
            )
        noise = binary_noise() if model.binary_visible else _normal_noise
        objective = objectives.pcd(
            model.free_energy,
            k=k,
            kernel=kernel,
            reinit_fraction=0.0,
            noise=noise,
            capacity=num_chains,
        )
    result = fit(
        objective,
        params,
        data,
        key=key,
        optimizer=optimizer,
        num_steps=num_steps,
        batch_size=batch_size,
        steps_per_chunk=steps_per_chunk,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
    )
    return RBMFit(model, result.params, result.history)


def _normal_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(key, shape, jnp.result_type(float))


def train_rbm(
    data,
    n_hidden: int,
    *,
    key: jax.Array,
    method: str = "pcd",
    k: int = 1,
    learning_rate: float = 0.05,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    num_steps: int = 3000,
    batch_size: int = 10,
    num_chains: int | None = None,
    init_scale: float = 0.01,
    steps_per_chunk: int = 100,
    callbacks: Sequence[Callable] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = False,
) -> RBMFit:
    r"""Train a :class:`BernoulliRBM` with ``n_hidden`` hidden units on binary ``data``: what
    ``numpyro-ebm train --model rbm`` runs.

    Visible biases start at the data's log-odds, weights at
    :math:`\mathcal{N}(0, \text{init\_scale}^2)` (Hinton's guide, sec. 8); then
    :func:`fit_rbm` with :func:`rbm_optimizer` ``(learning_rate, momentum, weight_decay)``.

    Parameters
    ----------
    data
        Binary array of shape ``(n, n_visible)`` (checked by :func:`check_binary`).
    n_hidden
        Hidden units, >= 1.
    key
        PRNG key; the run is a function of it.
    learning_rate, momentum, weight_decay
        See :func:`rbm_optimizer`.
    init_scale
        Standard deviation of the initial weights.
    method, k, num_steps, batch_size, num_chains, steps_per_chunk, callbacks, progress
        See :func:`fit_rbm`.
    checkpoint_dir, checkpoint_every, resume
        See :func:`fit_rbm`; a resumed run must be given the same ``data`` and ``key``.

    Returns
    -------
    RBMFit
    """
    data = check_binary("data", data)
    if data.ndim != 2:
        raise ValueError(f"data must have shape (n, n_visible), got shape {data.shape}")
    model = BernoulliRBM(data.shape[1], n_hidden)
    key_init, key_fit = jax.random.split(key)
    return fit_rbm(
        model,
        model.init(key_init, init_scale, data=data),
        data,
        key=key_fit,
        method=method,
        k=k,
        optimizer=rbm_optimizer(learning_rate, momentum, weight_decay),
        num_steps=num_steps,
        batch_size=batch_size,
        num_chains=num_chains,
        steps_per_chunk=steps_per_chunk,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
    )


_MODEL_FILE = "rbm.json"
_PARAMS_FILE = "params.npz"
_FORMAT = "numpyro-ebm/rbm"
_KINDS = {
    "BernoulliRBM": (BernoulliRBM, RBMParams),
    "GaussianBernoulliRBM": (GaussianBernoulliRBM, GaussianRBMParams),
}
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number"}


def save_rbm(directory: str | os.PathLike, model, params) -> Path:
    """Write ``model`` and ``params`` to ``directory`` (created): ``rbm.json`` (the kind and
    sizes) and ``params.npz`` (one array per parameter). No pickle. Each file is written under
    a temporary name and renamed (atomic on POSIX), the arrays first, so that a killed run
    leaves whole files. Returns the directory."""
    if not isinstance(model, BernoulliRBM | GaussianBernoulliRBM):
        raise TypeError(f"model must be a BernoulliRBM or GaussianBernoulliRBM, got {model!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {
        "format": _FORMAT,
        "version": 1,
        "kind": type(model).__name__,
        "n_visible": model.n_visible,
        "n_hidden": model.n_hidden,
    }
    if isinstance(model, GaussianBernoulliRBM):
        spec["sigma"] = model.sigma
    arrays = {name: np.asarray(value) for name, value in params._asdict().items()}
    _write_atomically(directory / _PARAMS_FILE, lambda handle: np.savez(handle, **arrays))
    text = json.dumps(spec, indent=2).encode()
    _write_atomically(directory / _MODEL_FILE, lambda handle: handle.write(text))
    return directory


def _write_atomically(path: Path, write: Callable) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        write(handle)
    os.replace(temporary, path)


def load_rbm(directory: str | os.PathLike):
    """Read an RBM written by :func:`save_rbm`: returns ``(model, params)``.

    Raises
    ------
    ValueError
        If the directory holds no ``rbm.json``, or a file that :func:`save_rbm` does not
        write: ``rbm.json`` that is not a JSON object of this format, or names an unknown kind
        or invalid sizes; ``params.npz`` missing, unreadable, without one of the parameters,
        or holding arrays of other shapes than the sizes need, or values that are not finite
        real numbers. The message names the file.
    """
    directory = Path(directory)
    spec_path = directory / _MODEL_FILE
    if not spec_path.is_file():
        raise ValueError(f"{os.fspath(directory)!r} holds no {_MODEL_FILE}: not a saved RBM")
    spec = _read_spec(spec_path)
    cls, params_cls = _KINDS[spec["kind"]]
    extra = {"sigma": spec["sigma"]} if "sigma" in spec else {}
    try:
        model = cls(spec["n_visible"], spec["n_hidden"], **extra)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{spec_path}: {error}") from None
    params_path = directory / _PARAMS_FILE
    params = params_cls(**_read_arrays(params_path, params_cls._fields))
    try:
        _check_params(model, params, name="params")
    except ValueError as error:
        raise ValueError(f"{os.fspath(params_path)!r}: {error}") from None
    return model, params


def _read_spec(path: Path) -> dict:
    """``rbm.json``'s object, its format, kind and sizes present."""
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not JSON ({error})") from None
    if not isinstance(spec, dict):
        found = _JSON_TYPES.get(type(spec), json.dumps(spec))
        raise ValueError(
            f"{path} must hold a JSON object (the RBM's format, kind and sizes), got {found}"
        )
    if spec.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an RBM file (format {spec.get('format')!r})")
    if spec.get("kind") not in _KINDS:
        raise ValueError(f"unknown RBM kind {spec.get('kind')!r} in {path}")
    missing = [name for name in ("n_visible", "n_hidden") if name not in spec]
    if missing:
        raise ValueError(f"{path} gives no {' and no '.join(missing)}")
    return spec


def _read_arrays(path: Path, names: Sequence[str]) -> dict[str, jax.Array]:
    """The arrays ``names`` of ``params.npz``, checked to be finite real numbers."""
    if not path.is_file():
        raise ValueError(f"{path.parent} holds {_MODEL_FILE} but no {_PARAMS_FILE}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            present = list(archive.keys())
            arrays = {name: archive[name] for name in names if name in present}
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile):
        raise ValueError(
            f"{path} is not a NumPy .npz archive of numbers (as save_rbm writes)"
        ) from None
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"{path} holds no array {', '.join(missing)} (it holds {present})")
    for name, array in arrays.items():
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise ValueError(
                f"array {name} in {path} has dtype {array.dtype}: parameters are real numbers"
            )
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(f"array {name} in {path} holds {bad} non-finite value(s)")
    return {name: jnp.asarray(array, jnp.result_type(float)) for name, array in arrays.items()}
