r"""Calibrated pseudo-likelihood (Besag 1975; Stoehr & Friel 2015) for doubly intractable
posteriors: the fast alternative to the exchange algorithm
(:func:`~numpyro_ebm.samplers.exchange`) on a ``"doubly_intractable"`` target, whose observed
energy site has a normalizer that depends on a latent site.

With :math:`\theta` the latent sites (unconstrained, Jacobian included), :math:`\pi(\theta)`
the model's density without the intractable sites' :math:`\log f(x; \theta)` and the observed
configurations :math:`x_1, \dots, x_n`, the true posterior is
:math:`\pi(\theta) \prod_k f(x_k; \theta) / Z(\theta)`. The pseudo-posterior replaces each
:math:`f(x_k; \theta)/Z(\theta)` by a tractable score:

* bits or spins (a :class:`~numpyro_ebm.DiscreteEnergyDistribution`): Besag's pseudo-likelihood,
  the product of the full conditionals, each a two-state normalization,

  .. math::

      \log PL(x; \theta) = \sum_i \log p(x_i \mid x_{-i}; \theta)
      = -\sum_i \log\left(1 + \frac{f(x^{(i)}; \theta)}{f(x; \theta)}\right),

  :math:`x^{(i)}` being :math:`x` with site :math:`i` flipped;
* a continuous :class:`~numpyro_ebm.EnergyDistribution`, whose full conditionals have 1-D
  normalizers that need quadrature, the Hyvärinen score in its place (the scoring rule of score
  matching, Hyvärinen 2005; used as a log-likelihood by Dawid & Musio 2015),
  :math:`-\sum_i \left[\partial_i^2 \log f + \tfrac12 (\partial_i \log f)^2\right]`.

Both need no :math:`Z(\theta)`, and their maximizers are consistent, but the pseudo-posterior is
too narrow (the conditionals count each interaction twice) and centred at the wrong place for
finite :math:`n`. The calibration moves it onto the true posterior's Laplace approximation
(the mode and curvature adjustments of Stoehr & Friel 2015; Ribatet, Cooley & Davison 2012):

1. :math:`\hat\theta`, the pseudo-posterior's mode (L-BFGS), and :math:`S_P`, the Cholesky factor
   of its Laplace covariance (``jax.hessian``);
2. from :math:`\theta_0 = \hat\theta`, ``num_newton_steps`` Newton steps on the true posterior
   (Monte Carlo Newton-Raphson, as in Geyer & Thompson 1992):
   :math:`\theta_{t+1} = \theta_t + H_t^{-1} g_t`, where :math:`g_t` and :math:`H_t = L_t L_t^\top`
   are the true posterior's gradient and negative Hessian at :math:`\theta_t`, estimated from
   ``num_calibration_draws`` auxiliary data sets :math:`w^{(r)}` of the observed size (exact, or
   from a kernel's transitions, as in the exchange algorithm) through the identities
   :math:`\nabla n\log Z = E_w[\nabla F]` and
   :math:`\nabla^2 n\log Z = E_w[\nabla^2 F] + \operatorname{Cov}_w[\nabla F]`, with
   :math:`F(\theta; w) = \sum_k \log f(w_k; \theta)`. One step (the one-step estimator) is not
   enough where the curvature changes fast (an Ising model towards its critical temperature);
3. the mode :math:`\theta^\star = \theta_T`, and the map
   :math:`\theta \mapsto \theta^\star + C (\theta - \hat\theta)` with
   :math:`C = L_{T-1}^{-\top} S_P^{-1}`, which takes the pseudo-posterior's Laplace covariance
   :math:`S_P S_P^\top` to the true one, :math:`H^{-1}` at the last step.

The draws are those of the ``inner`` sampler (NUTS by default) on the pseudo-posterior, mapped:
their mean and covariance are the true posterior's to second order, their shape beyond that
the pseudo-posterior's. Each chain calibrates itself with its own key, so the Monte Carlo error
of the calibration (relative :math:`O(R^{-1/2})` in the scale for :math:`R` draws) shows as
disagreement between chains. A calibration that fails (no proper pseudo-posterior mode, a
curvature estimate that is not positive definite, an exact draw that did not coalesce) is
reported in ``sample_stats.calibration_failed`` and warned about.

References
----------
J. Besag (1975). Statistical analysis of non-lattice data. The Statistician 24(3).
J. Stoehr and N. Friel (2015). Calibration of conditional composite likelihood for Bayesian
inference on Gibbs random fields. AISTATS.
M. Ribatet, D. Cooley and A. C. Davison (2012). Bayesian inference from composite likelihoods,
with an application to spatial extremes. Statistica Sinica 22.
C. J. Geyer and E. A. Thompson (1992). Constrained Monte Carlo maximum likelihood for
dependent data. JRSS B 54(3).
A. Hyvärinen (2005). Estimation of non-normalized statistical models by score matching. JMLR 6.
A. P. Dawid and M. Musio (2015). Bayesian model selection based on proper scoring rules.
Bayesian Analysis 10(2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

from numpyro_ebm._checks import check_int
from numpyro_ebm._spins import flip
from numpyro_ebm.energy import DiscreteEnergyDistribution
from numpyro_ebm.evidence.references import laplace_fit
from numpyro_ebm.model_density import base_distribution
from numpyro_ebm.samplers._intractable import (
    auxiliary_draws,
    check_auxiliary,
    energy_sites,
    log_f,
)
from numpyro_ebm.samplers.base import ChainSampler, Sampler, finite, get_sampler, register_sampler

__all__ = ["PseudoLikelihood", "pseudo_likelihood"]

#: The samplers that can move the pseudo-posterior.
INNER = ("nuts", "hmc", "mala")


class Calibration(NamedTuple):
    """The affine map of one chain, :math:`\\theta \\mapsto` ``mode + matrix @ (theta -
    pseudo_mode)`` on the flattened latent sites, and whether it failed."""

    pseudo_mode: jax.Array
    mode: jax.Array
    matrix: jax.Array
    failed: jax.Array


def log_pseudo_likelihood(fn, x) -> jax.Array:
    """The log pseudo-likelihood of the configurations ``x`` (the site's batch and event) under
    the energy site ``fn``: Besag's for bits or spins, minus the Hyvärinen score for a
    continuous energy (see the module docstring)."""
    site = base_distribution(fn)
    event = site.event_shape
    d = math.prod(event)
    flat = x.reshape((-1, d))
    if isinstance(site, DiscreteEnergyDistribution):
        # every configuration with site i flipped, for each i: (d, n, d)
        flips = jnp.where(jnp.eye(d, dtype=bool)[:, None, :], flip(flat, site.spins), flat)
        here = site.log_prob(flat.reshape((-1, *event)))
        there = site.log_prob(flips.reshape((d, -1, *event)))
        return -jnp.sum(jax.nn.softplus(there - here))

    def score(v):
        return jax.grad(lambda u: site.log_prob(u.reshape(event)))(v)

    def hyvarinen(v):
        return jnp.trace(jax.jacfwd(score)(v)) + 0.5 * jnp.sum(score(v) ** 2)

    return -jnp.sum(jax.vmap(hyvarinen)(flat))


class PseudoLikelihood(Sampler):
    """The calibrated pseudo-likelihood sampler's value (:func:`pseudo_likelihood`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _pseudo_likelihood_chain(target, **self.options)


def _pseudo_likelihood_chain(
    target,
    *,
    inner,
    auxiliary,
    auxiliary_steps,
    num_calibration_draws,
    num_newton_steps,
    num_mode_steps,
):
    logdensity_fn = target.logdensity_fn
    draws, observed = auxiliary_draws(
        target, auxiliary, auxiliary_steps, "calibrated pseudo-likelihood"
    )
    unravel = jax.flatten_util.ravel_pytree(jax.tree.map(lambda x: x[0], target.initial_position))[
        1
    ]

    def pseudo_logdensity(position):
        fns = energy_sites(target, position)
        pseudo = sum(log_pseudo_likelihood(fns[n], observed[n]) for n in fns)
        return logdensity_fn(position) - log_f(fns, observed) + pseudo

    chain = inner.chain_sampler(
        target._replace(logdensity_fn=pseudo_logdensity, kind="model", intractable=())
    )

    def flat(fn):
        return lambda z: fn(unravel(z))

    def calibrate(rng_key, position) -> Calibration:
        z = jax.flatten_util.ravel_pytree(position)[0]
        laplace, valid = laplace_fit(z, flat(pseudo_logdensity), num_mode_steps)
        pseudo_mode = laplace.mean

        def aux(z, w):
            return log_f(energy_sites(target, unravel(z)), w)

        def newton(carry, key):
            z, _, exact = carry
            w, ok = jax.vmap(lambda k: draws(k, energy_sites(target, unravel(z))))(
                jax.random.split(key, num_calibration_draws)
            )
            grads = jax.vmap(jax.grad(aux), (None, 0))(z, w)
            hessians = jax.vmap(jax.hessian(aux), (None, 0))(z, w)
            gradient = jax.grad(flat(logdensity_fn))(z) - grads.mean(0)
            curvature = (
                -jax.hessian(flat(logdensity_fn))(z)
                + hessians.mean(0)
                + jnp.cov(grads, rowvar=False).reshape(hessians.shape[1:])
            )
            factor = jnp.linalg.cholesky(0.5 * (curvature + curvature.T))
            return (z + cho_solve((factor, True), gradient), factor, exact & jnp.all(ok)), None

        eye = jnp.eye(z.shape[0], dtype=z.dtype)
        (mode, factor, exact), _ = jax.lax.scan(
            newton,
            (pseudo_mode, eye, jnp.asarray(True)),
            jax.random.split(rng_key, num_newton_steps),
        )
        matrix = solve_triangular(
            factor.T, solve_triangular(laplace.scale, eye, lower=True), lower=False
        )
        failed = ~(valid & exact & jnp.all(jnp.isfinite(matrix)) & jnp.all(jnp.isfinite(mode)))
        # a failed calibration leaves the pseudo-posterior's draws as they are (and is warned of)
        return Calibration(
            pseudo_mode,
            jnp.where(failed, pseudo_mode, mode),
            jnp.where(failed, eye, matrix),
            failed,
        )

    def calibrated(calibration: Calibration, position):
        z = jax.flatten_util.ravel_pytree(position)[0]
        return unravel(calibration.mode + calibration.matrix @ (z - calibration.pseudo_mode))

    def warmup(rng_key, position, num_warmup):
        calibration_key, warmup_key = jax.random.split(rng_key)
        calibration = calibrate(calibration_key, position)
        z = jax.flatten_util.ravel_pytree(position)[0]
        start = jnp.where(calibration.failed, z, calibration.pseudo_mode)
        state, parameters = chain.warmup(warmup_key, unravel(start), num_warmup)
        return (state, calibration), parameters

    def step(rng_key, state, parameters):
        inner_state, calibration = state
        inner_state, stats = chain.step(rng_key, inner_state, parameters)
        position = calibrated(calibration, chain.position(inner_state))
        logdensity = logdensity_fn(position)
        return (inner_state, calibration), stats | {
            "potential_energy": -jnp.asarray(logdensity, jnp.float32),
            "nonfinite": ~finite(position, logdensity),
            "calibration_failed": calibration.failed,
        }

    return ChainSampler(warmup, step, lambda state: calibrated(state[1], chain.position(state[0])))


@register_sampler("pseudo_likelihood")
def pseudo_likelihood(
    *,
    inner="nuts",
    auxiliary="exact",
    auxiliary_steps: int = 100,
    num_calibration_draws: int = 200,
    num_newton_steps: int = 3,
    num_mode_steps: int = 200,
) -> Sampler:
    """Calibrated pseudo-likelihood (see the module docstring) for a model whose observed
    energy site has a normalizer that depends on its latent sites: the ``inner`` sampler
    (``nuts``, ``hmc`` or ``mala``, a value or a name) on the pseudo-posterior, its draws mapped
    onto the true posterior's Laplace approximation, found by ``num_newton_steps`` Newton steps
    from the pseudo-posterior's mode (itself found in ``num_mode_steps`` L-BFGS steps), each
    with the gradient and curvature estimated from ``num_calibration_draws`` auxiliary data sets
    drawn at its point: exactly (``auxiliary="exact"``: enumeration or coupling
    from the past) or by ``auxiliary_steps`` transitions of a kernel from the observed
    configurations (``auxiliary=`` a sampler value, as for
    :func:`~numpyro_ebm.samplers.exchange`)."""
    inner = get_sampler(inner)
    if inner.name not in INNER:
        raise ValueError(f"inner must be one of {list(INNER)}, got {inner!r}")
    auxiliary = check_auxiliary(auxiliary)
    check_int("auxiliary_steps", auxiliary_steps)
    check_int("num_calibration_draws", num_calibration_draws, minimum=10)
    check_int("num_newton_steps", num_newton_steps)
    check_int("num_mode_steps", num_mode_steps)
    return PseudoLikelihood(
        "pseudo_likelihood",
        {
            "inner": inner,
            "auxiliary": auxiliary,
            "auxiliary_steps": auxiliary_steps,
            "num_calibration_draws": num_calibration_draws,
            "num_newton_steps": num_newton_steps,
            "num_mode_steps": num_mode_steps,
        },
        frozenset({"doubly_intractable"}),
    )
