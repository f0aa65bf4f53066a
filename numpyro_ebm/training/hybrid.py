r"""A classifier trained as an energy-based model: the joint energy-based model (JEM).

A classifier's logits :math:`f_\theta(x) \in \mathbb{R}^K` define a joint energy
:math:`E_\theta(x, y) = -f_\theta(x)[y]` (Grathwohl et al. 2020), so that

.. math::

    p_\theta(y \mid x) = \mathrm{softmax}(f_\theta(x))_y, \qquad
    p_\theta(x) \propto e^{-E_\theta(x)}, \quad
    E_\theta(x) = -\log \sum_y e^{f_\theta(x)[y]}.

The classifier's own cross-entropy fits :math:`p_\theta(y \mid x)`, which leaves the logits'
shift in :math:`x` free; the maximum-likelihood gradient of :math:`\log p_\theta(x)` fits
that shift, with negatives drawn from :math:`p_\theta(x)` by stochastic-gradient Langevin
dynamics from a replay buffer (persistent contrastive divergence,
:func:`~numpyro_ebm.training.pcd`).

References
----------
W. Grathwohl, K.-C. Wang, J.-H. Jacobsen, D. Duvenaud, M. Norouzi and K. Swersky (2020). Your
classifier is secretly an energy based model and you should treat it like one. ICLR.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MappingProxyType

import jax
import jax.numpy as jnp

from numpyro_ebm._checks import check_positive
from numpyro_ebm.kernels import ula
from numpyro_ebm.training import buffer as replay
from numpyro_ebm.training.objectives import Objective, pcd

__all__ = ["jem", "jem_energy"]


def jem_energy(logits_fn: Callable) -> Callable:
    """The marginal energy :math:`E(x) = -\\log\\sum_y e^{f(x)[y]}` of logits
    ``logits_fn(params, x) -> (K,)``, as ``energy(params, x) -> scalar``."""

    def energy(params, x):
        return -jax.nn.logsumexp(logits_fn(params, x), axis=-1)

    return energy


def _sgld_kernel(logdensity_fn, step_size: float, noise_scale: float):
    """JEM's sampler, :math:`x' = x + \\alpha \\nabla_x \\log p(x) + \\sigma z`: ULA with
    step :math:`\\sigma^2` on :math:`p^{1/T}`, :math:`T = \\sigma^2 / (2\\alpha)`."""
    temperature = noise_scale**2 / (2 * step_size)
    return ula.as_top_level_api(lambda x: logdensity_fn(x) / temperature, noise_scale**2)


def jem(
    logits_fn: Callable,
    k: int = 20,
    step_size: float = 1.0,
    noise_scale: float = 0.01,
    generative_weight: float = 1.0,
    alpha: float = 0.0,
    reinit_fraction: float = 0.05,
    noise: replay.NoiseFn | None = None,
    capacity: int = 10_000,
) -> Objective:
    r"""The JEM objective on labelled data ``{"x": (n, *event_shape), "y": (n,)}``.

    .. math::

        \mathcal{L}(\theta) = -\frac1b \sum_i \log p_\theta(y_i \mid x_i)
        + \lambda \Big[\frac1b \sum_i E_\theta(x_i) - \frac1b \sum_j E_\theta(x^-_j)\Big],

    with :math:`\lambda` = ``generative_weight`` and negatives :math:`x^-` from ``k`` steps of
    JEM's stochastic-gradient Langevin dynamics,
    :math:`x \leftarrow x + \alpha \nabla_x \log p_\theta(x) + \sigma z` (``step_size``
    :math:`\alpha`, ``noise_scale`` :math:`\sigma`; 1 and 0.01 in the paper, for images in
    :math:`[-1, 1]`), started from a replay buffer (``reinit_fraction`` of the starts fresh
    ``noise``) as :func:`~numpyro_ebm.training.pcd` does. That update is Langevin dynamics at
    the temperature :math:`T = \sigma^2 / (2\alpha)`, run here as ULA with step
    :math:`\sigma^2` on :math:`p_\theta^{1/T}`: a cold, short-run sampler, which is what the
    paper trains with.

    Parameters
    ----------
    logits_fn
        ``logits_fn(params, x) -> (K,)`` for one example, e.g. the pure form of
        :class:`~numpyro_ebm.nets.ConvEnergy` with ``num_outputs=K``.
    k, step_size, noise_scale
        The sampler's steps per update, :math:`\alpha` and :math:`\sigma`.
    generative_weight
        :math:`\lambda`, the weight of the generative term (0: a plain classifier, which
        draws no negatives).
    alpha, reinit_fraction, noise, capacity
        As in :func:`~numpyro_ebm.training.pcd` (``alpha`` is its energy-magnitude
        penalty).

    Returns
    -------
    ``Objective`` whose ``init`` fills the replay buffer with noise shaped like one example's
    ``x``, and whose loss gives ``(value, (aux, new_buffer))`` with ``aux`` holding the
    ``cross_entropy``, the batch's ``accuracy`` and :func:`~numpyro_ebm.training.pcd`'s
    ``energy_pos`` and ``energy_neg``.
    """
    if not callable(logits_fn):
        raise TypeError(f"logits_fn must be callable, got {logits_fn!r}")
    check_positive("step_size", step_size)
    check_positive("noise_scale", noise_scale)
    generative_weight = float(generative_weight)
    if not generative_weight >= 0:
        raise ValueError(f"generative_weight must be >= 0, got {generative_weight!r}")
    kernel = functools.partial(
        _sgld_kernel, step_size=float(step_size), noise_scale=float(noise_scale)
    )
    generative = pcd(
        jem_energy(logits_fn),
        k=k,
        alpha=alpha,
        kernel=kernel,
        reinit_fraction=reinit_fraction,
        noise=noise,
        capacity=capacity,
    )

    def split(batch):
        if not (isinstance(batch, dict) and set(batch) == {"x", "y"}):
            raise TypeError(
                "jem needs labelled data {'x': examples, 'y': integer labels}, got "
                + (f"a dict with keys {sorted(batch)}" if isinstance(batch, dict) else "an array")
            )
        return batch["x"], batch["y"]

    def loss(params, batch, key, state):
        x, y = split(batch)
        logits = jax.vmap(logits_fn, (None, 0))(params, x)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        cross_entropy = -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=-1))
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y)
        aux = {"cross_entropy": cross_entropy, "accuracy": accuracy}
        if not generative_weight:  # a plain classifier: no sampling
            return cross_entropy, (aux, state)
        generative_value, (generative_aux, new_state) = generative.loss(params, x, key, state)
        value = cross_entropy + generative_weight * generative_value
        return value, (aux | generative_aux, new_state)

    def init(key, params, example):
        return generative.init(key, params, split(example)[0])

    options = dict(generative.options) | {
        "step_size": float(step_size),
        "noise_scale": float(noise_scale),
        "generative_weight": generative_weight,
    }
    return Objective(init, loss, "jem", MappingProxyType(options))
