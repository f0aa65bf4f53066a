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
over the smaller layer); for large ones :func:`numpyro_ebm.evidence.rbm_ais.rbm_ais` estimates
it by annealed importance sampling from the base-rate RBM of Salakhutdinov & Murray (2008).

The Gaussian-Bernoulli RBM (:class:`GaussianBernoulliRBM`) models real-valued data with the
parameterization of Cho, Raiko & Ilin (2011).

This module holds the models and what is exact about them; training is in
:mod:`numpyro_ebm.training.rbm` (CD-k, PCD-k, greedy DBN training), files in
:mod:`numpyro_ebm.storage` (``save_rbm``/``load_rbm``: JSON plus ``.npz``, no pickle).

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
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from numpyro_ebm._checks import check_finite_array, check_int, check_positive

__all__ = [
    "MAX_ENUMERATION_STATES",
    "BernoulliRBM",
    "GaussianBernoulliRBM",
    "GaussianRBMParams",
    "RBMParams",
    "base_rate_bias",
    "binary_noise",
    "check_binary",
    "check_params",
    "check_rows",
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


def check_rows(name: str, data, n_visible: int, binary: bool) -> jax.Array:
    """``data`` as a float array of shape ``(n, n_visible)``, checked (traced data, under
    ``jit``, for its shape only)."""
    if isinstance(data, Tracer):
        if data.ndim != 2 or data.shape[1] != n_visible:
            raise ValueError(
                f"{name} must have shape (n, n_visible={n_visible}), got shape {data.shape}"
            )
        return data.astype(jnp.result_type(float))
    array = check_binary(name, data) if binary else np.asarray(data)
    if array.dtype == bool:
        array = array.astype(np.float32)
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
            f"max_states={max_states} (at most 2**20 are supported); use "
            "numpyro_ebm.evidence.rbm_ais.rbm_ais for a model this large"
        )


# --------------------------------------------------------------------------------------------
# models


def _check_sizes(n_visible, n_hidden) -> tuple[int, int]:
    return check_int("n_visible", n_visible), check_int("n_hidden", n_hidden)


def check_params(model, params, name: str = "params") -> None:
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
            b = base_rate_bias(check_rows("data", data, self.n_visible, False))
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

    def tempered(self, params: RBMParams, temperature) -> RBMParams:
        r"""The parameters of the RBM whose joint density is :math:`p(v, h)^{1/T}`: the energy
        is linear in the parameters, so :math:`E(v, h) / T` is the energy of ``params / T``
        (the tempered joint of replica exchange for RBMs, Desjardins et al. 2010)."""
        return jax.tree.map(lambda p: p / temperature, params)

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
            computed; use :func:`numpyro_ebm.evidence.rbm_ais.rbm_ais` then), or ``params`` do
            not have this model's shapes or hold a NaN or an infinity.
        """
        check_params(self, params)
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
        data = check_rows("data", data, self.n_visible, self.binary_visible)
        log_z = self.log_partition(params, max_states=max_states)
        return -jnp.mean(jax.vmap(self.free_energy, (None, 0))(params, data)) - log_z


def base_rate_bias(data: jax.Array) -> jax.Array:
    r"""The visible biases :math:`\log(\bar v_i / (1 - \bar v_i))` of the base-rate RBM
    (Salakhutdinov & Murray 2008): the log-odds of the data's marginals, clipped to
    :math:`[10^{-3}, 1 - 10^{-3}]`."""
    mean = jnp.clip(jnp.mean(data, axis=0), 1e-3, 1.0 - 1e-3)
    return jnp.log(mean) - jnp.log1p(-mean)


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
            b = jnp.mean(check_rows("data", data, self.n_visible, False), axis=0)
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
        check_params(self, params)
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
        data = check_rows("data", data, self.n_visible, self.binary_visible)
        log_z = self.log_partition(params, max_states=max_states)
        return -jnp.mean(jax.vmap(self.free_energy, (None, 0))(params, data)) - log_z
