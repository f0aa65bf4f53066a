"""Flax NNX networks for energies and scores, and the bridge to pure functions.

Every sampler and objective in this library consumes *pure* functions of a parameter
pytree. A Flax NNX module becomes one through :func:`as_pure`::

    net = MLPEnergy(event_shape=(2,), rngs=nnx.Rngs(0))
    apply, params = as_pure(net)          # apply(params, x) -> scalar energy
    energy = functools.partial(apply, params)   # E(x), ready for sampling

``params`` is an ``nnx.State`` (a pytree of arrays) that ``jax.jit``, ``jax.vmap``,
``jax.grad`` and optax accept as is.

Networks take one configuration ``x`` of shape ``event_shape`` and return a scalar (an energy)
or an ``event_shape`` array (a score). Leading batch dimensions are also accepted, but the
library itself batches with ``jax.vmap``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "ACTIVATIONS",
    "ConvEnergy",
    "MLPEnergy",
    "NoiseConditionalMLP",
    "activation",
    "as_pure",
    "spectral_normalized",
]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    name: getattr(nnx, name)
    for name in (
        "celu",
        "elu",
        "gelu",
        "hard_tanh",
        "leaky_relu",
        "relu",
        "selu",
        "sigmoid",
        "silu",
        "soft_sign",
        "softplus",
        "swish",
        "tanh",
    )
}
"""The elementwise nonlinearities a saved network may name (``flax.nnx`` functions of the same
name). Nothing else is looked up by name, so a saved file cannot call another attribute."""


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called ``name`` in :data:`ACTIVATIONS`; ``ValueError`` for any other."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def _event_size(event_shape: Sequence[int]) -> int:
    event_shape = tuple(event_shape)
    if not event_shape or any(int(d) < 1 for d in event_shape):
        raise ValueError(
            f"event_shape must be a non-empty tuple of positive sizes, got {event_shape}"
        )
    return math.prod(event_shape)


class _MLP(nnx.Module):
    """Dense layers with an activation between them (none after the last)."""

    def __init__(self, sizes: Sequence[int], activation: Callable, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        self.activation = activation

    def __call__(self, h: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)


class MLPEnergy(nnx.Module):
    r"""A multilayer-perceptron energy :math:`E_\theta(x) \in \mathbb{R}`.

    The configuration is flattened, passed through ``len(hidden)`` dense layers with the given
    activation (SiLU by default: smooth, so that :math:`\nabla_x E` is continuous, which
    Langevin and HMC need), and a final linear layer to one output.

    Parameters
    ----------
    event_shape
        Shape of one configuration ``x``.
    hidden
        Widths of the hidden layers.
    activation
        Elementwise nonlinearity.
    rngs
        ``nnx.Rngs`` for the initial weights.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128),
        activation: Callable = nnx.silu,
        *,
        rngs: nnx.Rngs,
    ):
        self.event_shape = tuple(int(d) for d in event_shape)
        size = _event_size(self.event_shape)
        self.mlp = _MLP([size, *hidden, 1], activation, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        batch = x.shape[: x.ndim - len(self.event_shape)]
        return self.mlp(x.reshape(*batch, -1))[..., 0]


class NoiseConditionalMLP(nnx.Module):
    r"""A noise-conditional network: an energy :math:`E_\theta(x, \sigma)` or a score
    :math:`s_\theta(x, \sigma)`.

    The noise level enters through fixed Gaussian Fourier features of :math:`\log\sigma`
    (Tancik et al. 2020; Song et al. 2021), concatenated with the flattened :math:`x`. The
    output is divided by :math:`\sigma`, following the NCSNv2 parameterization
    :math:`s_\theta(x, \sigma) = f_\theta(x, \sigma) / \sigma` (Song & Ermon 2020, technique 3):
    the true score of data perturbed by :math:`\mathcal{N}(0, \sigma^2 I)` has magnitude of
    order :math:`1/\sigma`, so the network itself only has to produce order-one outputs.

    * ``output="energy"``: :math:`E_\theta(x, \sigma) = f_\theta(x, \sigma) / \sigma`, a scalar;
      the score is :math:`-\nabla_x E_\theta`, and an energy permits Metropolis corrections.
    * ``output="score"``: :math:`s_\theta(x, \sigma) = f_\theta(x, \sigma) / \sigma`, shaped
      like ``x`` (Song & Ermon 2019).

    Parameters
    ----------
    event_shape
        Shape of one configuration ``x``.
    hidden
        Widths of the hidden layers.
    output
        ``"energy"`` or ``"score"``.
    num_features
        Number of Fourier feature pairs embedding :math:`\log\sigma`.
    activation
        Elementwise nonlinearity.
    rngs
        ``nnx.Rngs`` for the initial weights and the (fixed) Fourier frequencies.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128),
        output: str = "energy",
        num_features: int = 16,
        activation: Callable = nnx.silu,
        *,
        rngs: nnx.Rngs,
    ):
        if output not in ("energy", "score"):
            raise ValueError(f"output must be 'energy' or 'score', got {output!r}")
        self.event_shape = tuple(int(d) for d in event_shape)
        self.output = output
        size = _event_size(self.event_shape)
        # Fixed (not trained) frequencies: stored outside nnx.Param so optimizers skip them.
        self.frequencies = nnx.Variable(jax.random.normal(rngs.params(), (num_features,)) * 4.0)
        out = 1 if output == "energy" else size
        self.mlp = _MLP([size + 2 * num_features, *hidden, out], activation, rngs)

    def __call__(self, x: jax.Array, sigma: jax.Array) -> jax.Array:
        batch = x.shape[: x.ndim - len(self.event_shape)]
        sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), batch)
        angles = jnp.log(sigma)[..., None] * self.frequencies[...]
        features = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
        h = self.mlp(jnp.concatenate([x.reshape(*batch, -1), features], axis=-1))
        h = h / sigma[..., None]
        if self.output == "energy":
            return h[..., 0]
        return h.reshape(x.shape)


# The power-iteration steps of spectral normalization, from a fixed start at every call.
_POWER_STEPS = 5


def spectral_normalized(kernel: jax.Array, start: jax.Array, steps: int = _POWER_STEPS):
    r"""``kernel`` divided by its spectral norm :math:`\sigma(W)` (Miyato et al. 2018), the
    kernel read as the matrix :math:`W` of shape ``(prod(kernel.shape[:-1]), out)``.

    :math:`\sigma(W)` is estimated by ``steps`` power iterations from the vector ``start``
    (shape ``(out,)``): :math:`v \propto W u`, :math:`u \propto W^\top v`,
    :math:`\sigma \approx v^\top W u`, the vectors held constant under differentiation as in
    the paper. Flax's ``nnx.SpectralNorm`` keeps :math:`u` as state updated during the forward
    pass; the energies here are pure functions of their parameters (:func:`as_pure`), which
    would drop that update, so the iteration restarts from the same fixed vector at every
    call and runs a few steps more than the paper's one.
    """
    matrix = kernel.reshape(-1, kernel.shape[-1])
    u = start / jnp.linalg.norm(start)
    for _ in range(steps):
        v = matrix @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = matrix.T @ v
        u = u / (jnp.linalg.norm(u) + 1e-12)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    return kernel / (v @ matrix @ u)


class _Affine(nnx.Module):
    """A convolution (kernel ``(3, 3, in, out)``, "SAME" padding) or a dense map (kernel
    ``(in, out)``) with a bias, its kernel optionally spectrally normalized."""

    def __init__(self, kernel_shape, stride: int, spectral_norm: bool, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), kernel_shape))
        self.bias = nnx.Param(jnp.zeros(kernel_shape[-1]))
        self.stride = stride
        # Fixed (not trained) start of the power iteration: outside nnx.Param.
        self.start = (
            nnx.Variable(jax.random.normal(rngs.params(), (kernel_shape[-1],)))
            if spectral_norm
            else None
        )

    def __call__(self, h: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.start is not None:
            kernel = spectral_normalized(kernel, self.start[...])
        if kernel.ndim == 2:
            return h @ kernel + self.bias[...]
        out = jax.lax.conv_general_dilated(
            h, kernel, (self.stride,) * 2, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return out + self.bias[...]


class ConvEnergy(nnx.Module):
    r"""A convolutional energy :math:`E_\theta(x) \in \mathbb{R}` of images, or with
    ``num_outputs=K`` the logits :math:`f_\theta(x) \in \mathbb{R}^K` of a classifier read as
    a joint energy (JEM, Grathwohl et al. 2020): :math:`E_\theta(x, y) = -f_\theta(x)[y]`,
    :math:`E_\theta(x) = -\log\sum_y e^{f_\theta(x)[y]}`.

    ``len(channels)`` 3x3 convolutions, the first with stride 1 and each next one with stride 2
    (halving the image), the activation after each; then the flattened features through dense
    layers of widths ``hidden`` and a final dense layer to ``num_outputs``. With
    ``spectral_norm=True`` every kernel is divided by its spectral norm
    (:func:`spectral_normalized`, Miyato et al. 2018), which bounds the network's Lipschitz
    constant and, with it, how steep the energy can get: a common stabilizer of EBM training.

    Parameters
    ----------
    event_shape
        ``(height, width)`` or ``(height, width, channels)`` of one image.
    channels
        Output channels of the convolutions.
    hidden
        Widths of the dense layers after them.
    num_outputs
        1 for an energy (returned as a scalar), :math:`K` for logits (returned with a trailing
        axis of size :math:`K`).
    spectral_norm
        Whether to normalize every kernel.
    activation
        Elementwise nonlinearity (SiLU by default: smooth, as Langevin dynamics needs).
    rngs
        ``nnx.Rngs`` for the initial weights.

    References
    ----------
    T. Miyato, T. Kataoka, M. Koyama and Y. Yoshida (2018). Spectral normalization for
    generative adversarial networks. ICLR.

    W. Grathwohl, K.-C. Wang, J.-H. Jacobsen, D. Duvenaud, M. Norouzi and K. Swersky (2020).
    Your classifier is secretly an energy based model and you should treat it like one. ICLR.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        hidden: Sequence[int] = (128,),
        num_outputs: int = 1,
        spectral_norm: bool = False,
        activation: Callable = nnx.silu,
        *,
        rngs: nnx.Rngs,
    ):
        self.event_shape = tuple(int(d) for d in event_shape)
        _event_size(self.event_shape)
        if len(self.event_shape) not in (2, 3) or not channels:
            raise ValueError(
                "ConvEnergy needs event_shape (height, width) or (height, width, channels) and "
                f"at least one convolution, got event_shape={self.event_shape}, "
                f"channels={tuple(channels)}"
            )
        if not isinstance(spectral_norm, bool):
            raise ValueError(f"spectral_norm must be True or False, got {spectral_norm!r}")
        height, width, depth = (*self.event_shape, 1)[:3]
        self.num_outputs = int(num_outputs)
        self.activation = activation
        convs = []
        for i, out in enumerate(channels):
            stride = 1 if i == 0 else 2
            convs.append(_Affine((3, 3, depth, out), stride, spectral_norm, rngs))
            height, width, depth = -(-height // stride), -(-width // stride), out
        self.convs = nnx.List(convs)
        sizes = [height * width * depth, *hidden, self.num_outputs]
        self.dense = nnx.List(
            [_Affine((a, b), 1, spectral_norm, rngs) for a, b in itertools.pairwise(sizes)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        batch = x.shape[: x.ndim - len(self.event_shape)]
        h = x.reshape(-1, *self.event_shape[:2], (self.event_shape[2:] or (1,))[0])
        for conv in self.convs:
            h = self.activation(conv(h))
        h = h.reshape(h.shape[0], -1)
        for layer in self.dense[:-1]:
            h = self.activation(layer(h))
        out = self.dense[-1](h).reshape(*batch, self.num_outputs)
        return out[..., 0] if self.num_outputs == 1 else out


def as_pure(module: nnx.Module) -> tuple[Callable[..., jax.Array], Any]:
    """Split an NNX module into a pure function and its trainable parameters.

    Returns ``(apply, params)`` with ``apply(params, *args) == module(*args)``. ``params``
    holds the ``nnx.Param`` leaves only; everything else (such as fixed Fourier frequencies)
    is closed over as a constant. ``apply`` is pure: jit, vmap, grad and optax all accept it.
    Call ``nnx.update(module, params)`` to write trained parameters back into the module.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def apply(params, *args):
        return nnx.merge(graphdef, params, rest)(*args)

    return apply, params
