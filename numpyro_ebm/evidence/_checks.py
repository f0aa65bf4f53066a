r"""Whether an estimate of :math:`\log Z = \log \int f` depends on the scale of its reference.

Annealed importance sampling and tempered SMC estimate :math:`Z` without bias from any
normalized reference (AIS's base) that covers :math:`f`, so for a proper target the estimate
does not depend on the reference's scale, beyond its noise. For an improper target
(:math:`\int f = \infty`: a flat :math:`f`, or :math:`\log f = \|x\|^4`) every run still
returns a finite number, which grows with the reference's scale: a wider reference reaches
further into mass that never ends. So the runs are split (:func:`halves`): the second half
starts from a reference :data:`SCALE_CHECK_FACTOR` times wider (:func:`run_scales`). The
estimates of the two halves must agree within :data:`SCALE_CHECK_Z` of their combined
standard errors, and the spread of the final particles (the target's) within a factor
:data:`SCALE_CHECK_SPREAD` in every coordinate (:func:`scale_problem`); a reference too narrow
to cover the target fails the same check, which names both causes. Tempered SMC
(:mod:`numpyro_ebm.evidence.smc`) and AIS (:mod:`numpyro_ebm.evidence.ais`) both run it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

__all__ = [
    "SCALE_CHECK_FACTOR",
    "SCALE_CHECK_SPREAD",
    "SCALE_CHECK_Z",
    "check_defined",
    "halves",
    "run_scales",
    "scale_problem",
    "weighted_spread",
]

#: the reference scale of the check runs, relative to the others
SCALE_CHECK_FACTOR = 2.0
#: runs' halves whose log Z differ by more than this many standard errors are inconsistent
SCALE_CHECK_Z = 5.0
#: ... or whose final particles' spread (standard deviation) differs by more than this factor
SCALE_CHECK_SPREAD = 1.5


def check_defined(value, where: str) -> None:
    """Refuse, early, a log density that is NaN or :math:`+\\infty` at a concrete point
    (``where``): :math:`\\log Z` would be undefined. Traced values pass."""
    if isinstance(value, Tracer):
        return
    value = float(value)
    if math.isnan(value) or value == math.inf:
        raise ValueError(
            f"logdensity_fn is {value} at {where}: log Z would be undefined; check the log "
            "density there (a NaN energy, an energy of -inf)"
        )


def halves(num_runs: int) -> tuple[slice, slice]:
    """The runs at the reference's scale and the (second, smaller or equal) half widened."""
    half = (num_runs + 1) // 2
    return slice(None, half), slice(half, None)


def run_scales(num_runs: int, check: bool) -> jax.Array:
    """Each run's factor on the reference's scale: 1, and :data:`SCALE_CHECK_FACTOR` for the
    second half of the runs (:func:`halves`) when ``check``."""
    wide = jnp.arange(num_runs) >= (num_runs + 1) // 2
    return jnp.where(wide & check, SCALE_CHECK_FACTOR, 1.0)


def weighted_spread(particles: jax.Array, log_weights: jax.Array) -> jax.Array:
    """The standard deviation per coordinate of particles ``(..., d)`` under their
    self-normalized importance weights (all leading axes pooled)."""
    x = particles.reshape(-1, particles.shape[-1])
    w = jax.nn.softmax(log_weights.reshape(-1))
    mean = w @ x
    return jnp.sqrt(w @ (x - mean) ** 2)


def scale_problem(
    narrow: tuple, wide: tuple, spread_narrow, spread_wide, reference: str
) -> str | None:
    """Why the halves disagree, or ``None`` when they agree: ``narrow`` and ``wide`` are
    ``(log Z, standard error)`` of each half; ``spread_*`` the final particles' standard
    deviation per coordinate; ``reference`` names the reference (``"base"``,
    ``"reference"``)."""
    (z_narrow, se_narrow), (z_wide, se_wide) = (tuple(map(float, half)) for half in (narrow, wide))
    combined = math.hypot(np.nan_to_num(se_narrow), np.nan_to_num(se_wide))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(spread_wide, np.float64) / np.asarray(spread_narrow, np.float64)
        worst = float(np.max(np.abs(np.log(ratio))))
    if abs(z_wide - z_narrow) <= SCALE_CHECK_Z * combined + 1e-3 and worst <= math.log(
        SCALE_CHECK_SPREAD
    ):
        return None
    spread = f"spread x{math.exp(worst):.3g}" if math.isfinite(worst) else "a non-finite spread"
    return (
        f"the runs depend on the {reference}'s scale (log Z {z_narrow:.4g} and particles' "
        f"spread x1 at scale x1; log Z {z_wide:.4g} and {spread} at x{SCALE_CHECK_FACTOR}): "
        f"the target looks improper, or the narrower {reference} misses part of it"
    )
