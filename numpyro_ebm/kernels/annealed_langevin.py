r"""Annealed Langevin dynamics (Song & Ermon 2019), in BlackJAX's form.

Given a noise-conditional score :math:`s(x, \sigma) \approx \nabla_x \log p_\sigma(x)`, where
:math:`p_\sigma = p * \mathcal{N}(0, \sigma^2 I)` is the data distribution perturbed by Gaussian
noise, and a schedule :math:`\sigma_1 > \dots > \sigma_L > 0`, one sweep runs :math:`T` Langevin
steps at every level, largest noise first (Song & Ermon 2019, Algorithm 1):

.. math::

    \alpha_i = \epsilon\, \frac{\sigma_i^2}{\sigma_L^2}, \qquad
    x \leftarrow x + \frac{\alpha_i}{2}\, s(x, \sigma_i) + \sqrt{\alpha_i}\, z,
    \qquad z \sim \mathcal{N}(0, I).

The model is either a score ``score_fn(x, sigma)`` or a noise-conditional energy
``energy_fn(x, sigma)`` with :math:`s = -\nabla_x E`. With an energy, ``metropolis=True`` turns
every step into a MALA step (Roberts & Tweedie 1996) targeting
:math:`p_{\sigma_i} \propto \exp(-E(x, \sigma_i))`, which removes the discretization bias of
the unadjusted steps; both variants share BlackJAX's Euler proposal
(``blackjax.mcmc.diffusions.overdamped_langevin`` with step size :math:`\alpha_i / 2`), the
adjusted one adds ``blackjax.mala``'s acceptance test.

``denoise=True`` ends the sweep with one Tweedie step (Efron 2011; Song & Ermon 2020;
Jolicoeur-Martineau et al. 2021),

.. math::

    x \leftarrow x + \sigma_L^2\, s(x, \sigma_L) = \mathbb{E}[x_0 \mid x_{\sigma_L} = x],

and the denoised point is both the draw and the state, so the next sweep starts from it.

One ``step`` is one whole sweep started from ``state.position``: chains started from wide
noise give Song & Ermon's samples after one step, and successive sweeps form a Markov chain.

References
----------
Song, Y. & Ermon, S. (2019). Generative modeling by estimating gradients of the data
distribution. NeurIPS.
Song, Y. & Ermon, S. (2020). Improved techniques for training score-based generative models.
NeurIPS.
Jolicoeur-Martineau, A., Piché-Taillefer, R., Combes, R. T. des & Mitliagkas, I. (2021).
Adversarial score matching and improved sampling for image generation. ICLR.
Roberts, G. O. & Tweedie, R. L. (1996). Exponential convergence of Langevin distributions and
their discrete approximations. Bernoulli 2(4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from blackjax.mcmc import diffusions, mala
from blackjax.types import ArrayLikeTree, ArrayTree, PRNGKey

from numpyro_ebm._checks import all_finite, check_positive, check_strictly_decreasing

__all__ = [
    "AnnealedLangevinInfo",
    "AnnealedLangevinState",
    "as_top_level_api",
    "build_kernel",
    "init",
]


class AnnealedLangevinState(NamedTuple):
    """Position at the end of the last sweep (denoised when ``denoise=True``).

    Nothing else is cached: a sweep starts at :math:`\\sigma_1` and ends at :math:`\\sigma_L`,
    so no score computed during one sweep is valid at the start of the next.
    """

    position: ArrayTree


class AnnealedLangevinInfo(NamedTuple):
    """``acceptance_rate``: mean Metropolis acceptance probability over the :math:`L T` steps
    of the sweep (1 for unadjusted steps); ``is_finite``: whether the final position is finite;
    ``num_grad_evals``: score (gradient) evaluations spent on the sweep, :math:`L (T + 1)`:
    one per step plus one at the start of each level, whose score belongs to the new
    :math:`\\sigma_i`. The Metropolis test reuses those evaluations and the Tweedie step reuses
    the last one, so neither adds to the count."""

    acceptance_rate: jax.Array
    is_finite: jax.Array
    num_grad_evals: jax.Array


def init(position: ArrayLikeTree) -> AnnealedLangevinState:
    """Start a chain at ``position`` (typically wide noise, :math:`\\sigma_1 z`)."""
    return AnnealedLangevinState(position)


def _model(
    score_fn: Callable | None, energy_fn: Callable | None, metropolis: bool
) -> tuple[Callable, Callable | None]:
    """Return ``(score(x, sigma), logdensity(x, sigma))``; the log density is ``None`` for a
    score model. Raise unless exactly one of ``score_fn`` / ``energy_fn`` is given."""
    if (score_fn is None) == (energy_fn is None):
        raise ValueError("pass exactly one of score_fn and energy_fn")
    if score_fn is not None:
        if metropolis:
            raise ValueError(
                "metropolis=True needs energy_fn (the acceptance test evaluates the energy); "
                "got only score_fn"
            )
        return score_fn, None

    def logdensity(x, sigma):
        return -energy_fn(x, sigma)

    return jax.grad(logdensity), logdensity


def _check_num_steps(num_steps_per_level) -> None:
    if (
        isinstance(num_steps_per_level, bool)
        or not isinstance(num_steps_per_level, int | np.integer)
        or num_steps_per_level < 1
    ):
        raise ValueError(
            f"num_steps_per_level must be an integer >= 1, got {num_steps_per_level!r}"
        )


def build_kernel(
    num_steps_per_level: int, metropolis: bool = False, denoise: bool = False
) -> Callable:
    """Build the sweep ``kernel(rng_key, state, sigmas, step_size, *, score_fn=None,
    energy_fn=None)``.

    Parameters
    ----------
    num_steps_per_level
        :math:`T \\ge 1`, Langevin steps at each noise level.
    metropolis
        Accept or reject every step with MALA's test at the level's target (needs
        ``energy_fn``).
    denoise
        End the sweep with the Tweedie step :math:`x + \\sigma_L^2 s(x, \\sigma_L)`.
    """
    _check_num_steps(num_steps_per_level)
    mala_kernel = mala.build_kernel()

    def kernel(
        rng_key: PRNGKey,
        state: AnnealedLangevinState,
        sigmas: jax.Array,
        step_size: float,
        *,
        score_fn: Callable | None = None,
        energy_fn: Callable | None = None,
    ) -> tuple[AnnealedLangevinState, AnnealedLangevinInfo]:
        score, logdensity = _model(score_fn, energy_fn, metropolis)
        sigmas = jnp.asarray(sigmas)
        num_levels = sigmas.shape[0]
        # alpha_i is the noise variance; BlackJAX's Euler step x + h g + sqrt(2h) z has h = alpha/2.
        half_step_sizes = 0.5 * step_size * sigmas**2 / sigmas[-1] ** 2
        keys = jax.random.split(rng_key, (num_levels, num_steps_per_level))

        def level(carry, xs):
            position, _ = carry
            sigma, half_step_size, level_keys = xs
            if metropolis:
                level_logdensity = lambda x: logdensity(x, sigma)
                inner = mala.init(position, level_logdensity)

                def move(inner, key):
                    inner, info = mala_kernel(key, inner, level_logdensity, half_step_size)
                    return inner, info.acceptance_rate

            else:
                euler = diffusions.overdamped_langevin(lambda x: (None, score(x, sigma)))
                inner = diffusions.DiffusionState(position, None, score(position, sigma))

                def move(inner, key):
                    return euler(key, inner, half_step_size), jnp.ones(())

            inner, acceptance = jax.lax.scan(move, inner, level_keys)
            return (inner.position, inner.logdensity_grad), acceptance

        zeros = jax.tree.map(jnp.zeros_like, state.position)
        (position, last_score), acceptance = jax.lax.scan(
            level, (state.position, zeros), (sigmas, half_step_sizes, keys)
        )
        if denoise:
            position = jax.tree.map(lambda x, s: x + sigmas[-1] ** 2 * s, position, last_score)
        info = AnnealedLangevinInfo(
            acceptance_rate=jnp.mean(acceptance),
            is_finite=all_finite(position),
            num_grad_evals=jnp.asarray(num_levels * (num_steps_per_level + 1), jnp.int32),
        )
        return AnnealedLangevinState(position), info

    return kernel


def as_top_level_api(
    sigmas: jax.Array,
    step_size: float,
    num_steps_per_level: int,
    *,
    score_fn: Callable | None = None,
    energy_fn: Callable | None = None,
    metropolis: bool = False,
    denoise: bool = False,
) -> SamplingAlgorithm:
    """Annealed Langevin dynamics as a ``blackjax.SamplingAlgorithm``; one step is one sweep.

    Parameters
    ----------
    sigmas
        Noise schedule :math:`\\sigma_1 > \\dots > \\sigma_L > 0` (1-D).
    step_size
        :math:`\\epsilon > 0`; level :math:`i` uses
        :math:`\\alpha_i = \\epsilon \\sigma_i^2 / \\sigma_L^2`.
    num_steps_per_level
        :math:`T \\ge 1`.
    score_fn
        ``score_fn(x, sigma)``, the score of :math:`p_\\sigma` (same structure as ``x``).
    energy_fn
        ``energy_fn(x, sigma)``, a scalar energy with :math:`p_\\sigma \\propto e^{-E}`. Exactly
        one of ``score_fn`` and ``energy_fn`` must be given.
    metropolis
        MALA steps exact for each :math:`p_{\\sigma_i}` (needs ``energy_fn``).
    denoise
        Apply the Tweedie step to the end of each sweep (the state is the denoised point).

    Examples
    --------
    .. code::

        sampler = as_top_level_api(sigmas, 2e-5, 100, score_fn=score)
        state = jax.vmap(sampler.init)(sigmas[0] * jax.random.normal(key, (n, d)))
        state, info = jax.jit(jax.vmap(sampler.step))(jax.random.split(key2, n), state)
    """
    _model(score_fn, energy_fn, metropolis)
    check_strictly_decreasing("sigmas", sigmas)
    check_positive("step_size", step_size)
    kernel = build_kernel(num_steps_per_level, metropolis, denoise)
    sigmas = jnp.asarray(sigmas)

    def init_fn(position: ArrayLikeTree, rng_key=None) -> AnnealedLangevinState:
        del rng_key
        return init(position)

    def step_fn(
        rng_key: PRNGKey, state: AnnealedLangevinState
    ) -> tuple[AnnealedLangevinState, AnnealedLangevinInfo]:
        return kernel(rng_key, state, sigmas, step_size, score_fn=score_fn, energy_fn=energy_fn)

    return SamplingAlgorithm(init_fn, step_fn)
