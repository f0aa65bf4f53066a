r"""Energies learned from pairwise preferences: the Bradley-Terry reward model.

A reward model :math:`r_\theta(x)` is an energy :math:`E_\theta(x) = -r_\theta(x)`. Under the
Bradley-Terry model (Bradley & Terry 1952) a judge prefers :math:`a` to :math:`b` with
probability

.. math::

    P(a \succ b) = \sigma\big(r_\theta(a) - r_\theta(b)\big)
                 = \sigma\big(E_\theta(b) - E_\theta(a)\big),

the model of the reward models of RLHF (Christiano et al. 2017; Ouyang et al. 2022). Only
differences of the reward enter, so it is identified up to an additive constant, as an energy
is. The KL-regularized optimum of a policy against the reward,
:math:`\arg\max_q \mathbb{E}_q[r] - \beta\, \mathrm{KL}(q \,\|\, p_0)`, is the tilted density
:math:`p_0(x)\, e^{r(x)/\beta} / Z`: in a NumPyro model, a ``p_0`` prior plus
``ne.energy_factor("reward", energy, x, temperature=beta)``, which our samplers draw from.

References
----------
R. A. Bradley and M. E. Terry (1952). Rank analysis of incomplete block designs: I. The method
of paired comparisons. *Biometrika* 39(3/4), 324-345.

P. Christiano, J. Leike, T. Brown, M. Martic, S. Legg and D. Amodei (2017). Deep reinforcement
learning from human preferences. NeurIPS.

L. Ouyang et al. (2022). Training language models to follow instructions with human feedback.
NeurIPS.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from numpyro_ebm.training.objectives import Objective, from_loss

__all__ = ["bradley_terry"]


def bradley_terry(energy_fn: Callable) -> Objective:
    r"""The Bradley-Terry negative log-likelihood of pairwise preferences.

    A batch holds ``(batch_size, 2, *event_shape)`` pairs, the preferred item first (the data
    :func:`~numpyro_ebm.training.fit` receives is ``(n, 2, *event_shape)``). With
    :math:`(w_i, l_i)` the preferred and the other item of pair :math:`i`,

    .. math::

        \mathcal{L}(\theta) = -\frac1b \sum_{i=1}^{b}
            \log\sigma\big(E_\theta(l_i) - E_\theta(w_i)\big),

    the logistic regression of the preference on the energy difference, whose minimizer is
    the maximum-likelihood reward :math:`r_\theta = -E_\theta` (up to a constant).

    Parameters
    ----------
    energy_fn
        ``energy_fn(params, x) -> scalar``, the negative reward of one item.

    Returns
    -------
    ``Objective`` (stateless) whose loss gives ``(value, ({"accuracy", "margin"}, None))``:
    the fraction of pairs whose preferred item has the lower energy, and the mean energy
    difference :math:`E(l) - E(w)`.
    """
    if not callable(energy_fn):
        raise TypeError(f"energy_fn must be callable, got {energy_fn!r}")

    def loss(params, batch, key):
        del key
        if batch.ndim < 2 or batch.shape[1] != 2:
            raise ValueError(
                "bradley_terry needs pairs of shape (batch, 2, *event_shape), the preferred "
                f"item first, got a batch of shape {batch.shape}"
            )
        energies = jax.vmap(jax.vmap(energy_fn, (None, 0)), (None, 0))(params, batch)
        margin = energies[:, 1] - energies[:, 0]
        value = -jnp.mean(jax.nn.log_sigmoid(margin))
        return value, {"accuracy": jnp.mean(margin > 0), "margin": jnp.mean(margin)}

    return from_loss(loss, "bradley_terry")
