r"""Exact log-likelihood of a noise-conditional score model through the probability-flow ODE.

For the variance-exploding SDE of NCSN (Song et al. 2021, "Score-based generative modeling
through stochastic differential equations", ICLR; Appendix D.2),
:math:`\sigma(t) = \sigma_{\min} (\sigma_{\max}/\sigma_{\min})^t` and
:math:`g(t)^2 = \frac{d\sigma^2}{dt} = 2\sigma(t)^2 \log(\sigma_{\max}/\sigma_{\min})`, the
probability-flow ODE

.. math::

    \frac{dx}{dt} = f(x, t) = -\tfrac12 g(t)^2\, s(x, \sigma(t))

carries the data convolved with :math:`\mathcal{N}(0, \sigma_{\min}^2 I)` at :math:`t = 0` to
(approximately) :math:`\mathcal{N}(0, \sigma_{\max}^2 I)` at :math:`t = 1` when :math:`s` is the
score of the noised data. By the instantaneous change of variables (Chen et al. 2018),

.. math::

    \log p_0(x(0)) = \log \mathcal{N}(x(1); 0, \sigma_{\max}^2 I)
    + \int_0^1 \nabla \cdot f(x(t), t)\, dt,

integrated here with diffrax (Tsit5 or Dopri5, adaptive steps). The divergence is exact
(``trace="exact"``, :math:`d` Jacobian-vector products: low dimension) or Hutchinson's
unbiased estimate :math:`\epsilon^\top \frac{\partial f}{\partial x} \epsilon` with one
Rademacher or Gaussian probe :math:`\epsilon` per trajectory (Grathwohl et al. 2019); the log
density is linear in the divergence, so each probe gives an unbiased estimate and the
spread over probes is the Monte Carlo standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_ebm._checks import check_finite_array, check_int, check_positive

__all__ = ["FlowLikelihood", "probability_flow_log_likelihood"]

_TRACES = ("rademacher", "gaussian", "exact")
_SOLVERS = ("tsit5", "dopri5")


class FlowLikelihood(NamedTuple):
    r"""What :func:`probability_flow_log_likelihood` returns.

    Attributes
    ----------
    log_likelihood
        Per point, averaged over the probes: :math:`\log p_0(x)` in nats, shape ``(n,)``.
    per_probe
        Per probe and point, shape ``(num_probes, n)``.
    mean_log_likelihood
        Mean over the points, in nats.
    standard_error
        Monte Carlo standard error of ``mean_log_likelihood`` over the probes (0 for the
        exact trace; NaN with a single probe).
    bits_per_dim, bits_per_dim_standard_error
        :math:`-\overline{\log p} / (d \log 2)` (plus :math:`\log_2 K` with
        ``dequantization_bins=K``) and its standard error.
    num_steps
        Accepted ODE steps per trajectory, ``(num_probes, n)``.
    """

    log_likelihood: jax.Array
    per_probe: jax.Array
    mean_log_likelihood: jax.Array
    standard_error: jax.Array
    bits_per_dim: jax.Array
    bits_per_dim_standard_error: jax.Array
    num_steps: jax.Array


class _Options(NamedTuple):
    trace: str
    solver: str
    rtol: float
    atol: float
    max_steps: int


def _drift(score_fn, energy_fn, sigma_min, sigma_max, shape):
    """f(x, t) on flat vectors."""
    log_ratio = jnp.log(sigma_max / sigma_min)

    def score(x, sigma):
        if energy_fn is not None:
            return -jax.grad(lambda y: energy_fn(y, sigma))(x)
        return score_fn(x, sigma)

    def drift(x, t):
        sigma = sigma_min * jnp.exp(t * log_ratio)
        return -(sigma**2) * log_ratio * jnp.ravel(score(x.reshape(shape), sigma))

    return drift


@partial(jax.jit, static_argnums=(4, 5, 6))
def _solve(keys, data, sigma_min, sigma_max, score_fn, energy_fn, options):
    """(log p per probe and point, steps) for data ``(n, ...)`` and keys ``(probes, n)``."""
    import diffrax

    shape = data.shape[1:]
    dim = math.prod(shape)
    drift = _drift(score_fn, energy_fn, sigma_min, sigma_max, shape)

    def divergence(x, t, probe):
        if options.trace == "exact":
            jacobian = jax.jacfwd(lambda y: drift(y, t))(x)
            return jnp.trace(jacobian)
        _, jvp = jax.jvp(lambda y: drift(y, t), (x,), (probe,))
        return jnp.dot(probe, jvp)

    def one(key, point):
        x0 = jnp.ravel(point)
        if options.trace == "gaussian":
            probe = jax.random.normal(key, (dim,), x0.dtype)
        else:
            probe = jax.random.rademacher(key, (dim,), x0.dtype)

        def vector_field(t, y, args):
            x, _ = y
            return drift(x, t), divergence(x, t, probe)

        solver = diffrax.Tsit5() if options.solver == "tsit5" else diffrax.Dopri5()
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            solver,
            t0=0.0,
            t1=1.0,
            dt0=None,
            y0=(x0, jnp.zeros((), x0.dtype)),
            stepsize_controller=diffrax.PIDController(rtol=options.rtol, atol=options.atol),
            max_steps=options.max_steps,
            throw=False,
        )
        x1, integral = solution.ys[0][-1], solution.ys[1][-1]
        prior = jnp.sum(jax.scipy.stats.norm.logpdf(x1, scale=sigma_max))
        ok = solution.result == diffrax.RESULTS.successful
        return jnp.where(ok, prior + integral, jnp.nan), solution.stats["num_accepted_steps"]

    return jax.vmap(jax.vmap(one))(keys, jnp.broadcast_to(data, (keys.shape[0], *data.shape)))


def _check_model(score_fn, energy_fn, data) -> None:
    """Trace the model once at one configuration and a level (``jax.eval_shape``: nothing
    runs) and refuse, in our words, a model of another signature or output shape."""
    x = jax.ShapeDtypeStruct(data.shape[1:], data.dtype)
    sigma = jax.ShapeDtypeStruct((), data.dtype)
    name = "score_fn" if energy_fn is None else "energy_fn"
    fn = score_fn if energy_fn is None else energy_fn
    try:
        out = jax.eval_shape(fn, x, sigma)
    except TypeError as error:
        raise TypeError(
            f"{name} must take (x, sigma), x of shape {data.shape[1:]} and a scalar sigma; "
            f"calling it so raised: {str(error).splitlines()[0]}"
        ) from error
    leaves = jax.tree.leaves(out)
    expected = data.shape[1:] if energy_fn is None else ()
    if len(leaves) != 1 or leaves[0].shape != expected:
        what = f"an array of x's shape {expected}" if energy_fn is None else "a scalar"
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(f"{name}(x, sigma) must return {what}, got shape(s) {shapes}")


def probability_flow_log_likelihood(
    rng_key: jax.Array,
    data: jax.Array,
    *,
    sigma_min: float,
    sigma_max: float,
    score_fn: Callable | None = None,
    energy_fn: Callable | None = None,
    trace: str = "rademacher",
    num_probes: int = 4,
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    dequantization_bins: int | None = None,
) -> FlowLikelihood:
    r"""Log-likelihood of ``data`` under a noise-conditional score model, by the
    probability-flow ODE of the VE SDE.

    Parameters
    ----------
    rng_key
        PRNG key (the Hutchinson probes).
    data
        ``(n, ...)``: ``n`` points of the model's event shape.
    sigma_min, sigma_max
        The noise range: the likelihood is that of the model's density at
        :math:`\sigma_{\min}` (data convolved with :math:`\mathcal{N}(0, \sigma_{\min}^2)`),
        the prior :math:`\mathcal{N}(0, \sigma_{\max}^2 I)`; :math:`\sigma_{\max}` must dwarf
        the data's spread for that prior to be right.
    score_fn, energy_fn
        Exactly one: ``score_fn(x, sigma)`` :math:`\approx \nabla_x \log p_\sigma(x)`, or
        ``energy_fn(x, sigma)`` with score :math:`-\nabla_x E(x, \sigma)`; ``x`` of the event
        shape, ``sigma`` a scalar.
    trace
        ``"rademacher"`` or ``"gaussian"`` (Hutchinson, one probe per trajectory), or
        ``"exact"`` (:math:`d` Jacobian-vector products per evaluation; one probe suffices).
    num_probes
        Independent probes (trajectories) per point.
    solver, rtol, atol, max_steps
        diffrax's ``Tsit5`` or ``Dopri5`` with a PID step-size controller. A trajectory that
        fails (``max_steps`` reached, non-finite values) gives NaN, never a silent number.
    dequantization_bins
        For discrete data with ``K`` levels per dimension scaled to :math:`[0, 1]` and
        dequantized with uniform noise, :math:`\log_2 K` is added to the bits per dimension
        (so that they bound the discrete model's: :math:`\log P(k) \ge \mathbb{E}_u
        \log p((k + u)/K) - d \log K`); ``None`` for continuous data.

    Returns
    -------
    FlowLikelihood
    """
    if (score_fn is None) == (energy_fn is None):
        raise ValueError("pass exactly one of score_fn and energy_fn")
    if not callable(score_fn if energy_fn is None else energy_fn):
        raise TypeError("score_fn / energy_fn must be callable")
    check_positive("sigma_min", sigma_min)
    check_positive("sigma_max", sigma_max)
    if not float(sigma_min) < float(sigma_max):
        raise ValueError(
            f"sigma_min must be below sigma_max, got sigma_min={sigma_min!r}, "
            f"sigma_max={sigma_max!r}"
        )
    if trace not in _TRACES:
        raise ValueError(f"trace must be one of {_TRACES}, got {trace!r}")
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    check_int("num_probes", num_probes)
    check_int("max_steps", max_steps)
    if dequantization_bins is not None:
        check_int("dequantization_bins", dequantization_bins, minimum=2)
    data = jnp.asarray(data, jnp.result_type(float))
    check_finite_array("data", data)
    if data.ndim < 2:
        raise ValueError(
            f"data must have shape (n, ...) with the event shape after n, got {data.shape}"
        )
    _check_model(score_fn, energy_fn, data)
    options = _Options(trace, solver, float(rtol), float(atol), max_steps)
    keys = jax.random.split(rng_key, (num_probes, data.shape[0]))
    per_probe, steps = _solve(
        keys,
        data,
        jnp.asarray(sigma_min, data.dtype),
        jnp.asarray(sigma_max, data.dtype),
        score_fn,
        energy_fn,
        options,
    )
    dim = math.prod(data.shape[1:])
    mean = jnp.mean(per_probe)
    if trace == "exact":
        standard_error = jnp.zeros(())
    elif num_probes > 1:
        standard_error = jnp.std(jnp.mean(per_probe, axis=1), ddof=1) / math.sqrt(num_probes)
    else:
        standard_error = jnp.asarray(jnp.nan)
    offset = 0.0 if dequantization_bins is None else math.log2(dequantization_bins)
    return FlowLikelihood(
        log_likelihood=jnp.mean(per_probe, axis=0),
        per_probe=per_probe,
        mean_log_likelihood=mean,
        standard_error=standard_error,
        bits_per_dim=-mean / (dim * math.log(2)) + offset,
        bits_per_dim_standard_error=standard_error / (dim * math.log(2)),
        num_steps=steps,
    )
