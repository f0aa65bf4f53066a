r"""Annealed importance sampling of a Bernoulli RBM's :math:`\log Z` from the base-rate RBM
(Salakhutdinov & Murray 2008), with block Gibbs transitions.

The base RBM :math:`A` has no weights, hidden biases 0 and visible biases
:math:`b^A_i = \log(\bar v_i / (1 - \bar v_i))` from the marginals of the data
(:func:`~numpyro_ebm.models.rbm.base_rate_bias`; 0 without data), so
:math:`Z_A = 2^{n_h} \prod_i (1 + e^{b^A_i})` and exact samples are independent Bernoulli
draws. The intermediate distributions are the visible marginals of the RBMs with visible biases
:math:`(1-\beta_k) b^A + \beta_k b`, weights :math:`\beta_k W` and hidden biases
:math:`\beta_k c`,

.. math::

    p_k(v) \propto p_k^*(v) = e^{-F_k(v)} = e^{v^\top ((1 - \beta_k) b^A + \beta_k b)}
    \prod_j \left(1 + e^{\beta_k (W^\top v + c)_j}\right),
    \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_K = 1,

with :math:`F_k` that RBM's free energy (:math:`F_0 = F_A`, :math:`F_K = F_B`):
Salakhutdinov & Murray's path, not the geometric mean of :math:`p_A` and :math:`p_B`, since
:math:`\log(1 + e^{\beta x}) \ne \beta \log(1 + e^x)`. Each transition :math:`T_k` is one
block Gibbs sweep of that RBM, which leaves :math:`p_k` invariant. A chain
:math:`v_0 \sim p_A`, :math:`v_k \sim T_k(v_{k-1}, \cdot)` carries the importance weight

.. math::

    \log w = \sum_{k=1}^{K} \left[\log p_k^*(v_{k-1}) - \log p_{k-1}^*(v_{k-1})\right],
    \qquad \hat Z_B = Z_A \cdot \frac1N \sum_{n=1}^{N} w^{(n)},

an unbiased estimate of :math:`Z_B`; :math:`\log \hat Z_B` underestimates :math:`\log Z_B` on
average (Jensen), by little when the weights' variance is small. The result is the
:class:`~numpyro_ebm.evidence.ais.AISResult` of every AIS estimate here.

References
----------
R. M. Neal (2001). Annealed importance sampling. Statistics and Computing 11(2).

R. Salakhutdinov and I. Murray (2008). On the quantitative analysis of deep belief networks.
ICML.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from numpyro_ebm._checks import check_int, check_ladder
from numpyro_ebm.evidence.ais import AISResult, _problems, _summarize
from numpyro_ebm.models.rbm import BernoulliRBM, RBMParams, base_rate_bias, check_params, check_rows

__all__ = ["rbm_ais"]


def rbm_ais(
    rng_key: jax.Array,
    model: BernoulliRBM,
    params: RBMParams,
    *,
    data=None,
    num_chains: int = 100,
    num_runs: int = 10,
    betas=None,
    num_betas: int = 1000,
) -> AISResult:
    r"""Estimate the :math:`\log Z` of the Bernoulli RBM ``model`` at ``params`` by AIS from
    the base-rate RBM (module docstring).

    Parameters
    ----------
    rng_key
        PRNG key; the result is a function of it.
    model, params
        The RBM :math:`B`; ``ValueError`` if ``params`` do not have the model's shapes or hold
        a NaN or an infinity.
    data
        Binary data whose marginals define the base rates (recommended: a base close to the
        data gives far lower-variance weights); ``None``: uniform base.
    num_chains, num_runs
        Chains per run and independent runs (>= 2, for ``runs_standard_error``).
    betas
        The inverse temperatures, increasing from 0 to 1; default ``num_betas`` equally
        spaced values.
    num_betas
        Number of inverse temperatures when ``betas`` is not given (>= 2).

    Returns
    -------
    AISResult
        ``particles`` are the final visible states ``(runs, chains, n_visible)``;
        ``acceptance_rate`` is 1 (Gibbs moves) and ``num_grad_evals`` 0. A ``RuntimeWarning``
        when a weight is not finite or the weights are heavy-tailed (``pareto_khat``).
    """
    if not isinstance(model, BernoulliRBM):
        raise TypeError(f"model must be a BernoulliRBM, got {model!r}")
    check_params(model, params)
    num_chains = check_int("num_chains", num_chains)
    num_runs = check_int("num_runs", num_runs, minimum=2)
    if betas is None:
        betas = jnp.linspace(0.0, 1.0, check_int("num_betas", num_betas, minimum=2))
    betas = check_ladder("betas", betas)
    if data is None:
        base_b = jnp.zeros(model.n_visible, params.W.dtype)
    else:
        base_b = base_rate_bias(check_rows("data", data, model.n_visible, True))
    log_z_base = model.n_hidden * math.log(2.0) + jnp.sum(jax.nn.softplus(base_b))
    v, log_w = _anneal(rng_key, params, base_b, betas, num_runs * num_chains)
    result = _summarize(
        v.reshape(num_runs, num_chains, model.n_visible),
        log_z_base + log_w.reshape(num_runs, num_chains),
        jnp.ones((1, num_runs, num_chains)),
        jnp.zeros(()),
        1.0,
    )
    return _problems(result, None, name="rbm_ais")


@jax.jit(static_argnums=4)
def _anneal(rng_key, params: RBMParams, base_b, betas, num_chains):
    """The final visible states and log importance weights (without :math:`\\log Z_A`) of
    ``num_chains`` chains, advanced together as the rows of one ``(num_chains, n_visible)``
    array."""

    def bernoulli(key, probs):
        return jax.random.bernoulli(key, probs).astype(probs.dtype)

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
        h = bernoulli(key_h, jax.nn.sigmoid(beta * (params.c + v @ params.W)))
        v = bernoulli(
            key_v, jax.nn.sigmoid((1.0 - beta) * base_b + beta * (params.b + h @ params.W.T))
        )
        return (v, log_w), None

    key_start, key_run = jax.random.split(rng_key)
    v = bernoulli(
        key_start, jnp.broadcast_to(jax.nn.sigmoid(base_b), (num_chains, base_b.shape[0]))
    )
    keys = jax.random.split(key_run, betas.shape[0] - 1)
    log_w = jnp.zeros(num_chains, v.dtype)
    (v, log_w), _ = jax.lax.scan(step, (v, log_w), (keys, betas[:-1], betas[1:]))
    return v, log_w
