r"""The float32 matmul precision of everything numpyro-ebm reports: energies, potentials, log
densities, Metropolis ratios and log normalizing constants.

On NVIDIA GPUs from Ampere on, JAX's default matmul precision for float32 is TensorFloat-32: the
inputs of every ``dot_general`` are rounded to a 10-bit mantissa. A quadratic energy
:math:`\tfrac12 (x - \mu)^\top P (x - \mu)` then loses about three significant digits, enough to
bias a Metropolis acceptance ratio (a difference of two such energies) and a reported log
:math:`Z`. Every function here evaluates its argument under
``jax.default_matmul_precision(PRECISION)``, so that the ``dot_general`` operations traced
inside it carry ``precision=HIGHEST`` (full float32, about 3-6x slower matmuls on such GPUs; CPUs
are unaffected). The gradients traced through such a function inherit that precision, as JAX's
transposition rules keep each ``dot_general``'s ``precision``.

Opting out: an explicit choice of the caller wins. Set the precision yourself, around the call or
for the whole process, and the policy steps aside::

    with jax.default_matmul_precision("tensorfloat32"):   # or "bfloat16", "default", ...
        idata = ne.sample(energy, "mala", ...)

    jax.config.update("jax_default_matmul_precision", "tensorfloat32")   # process-wide
    # or the environment variable JAX_DEFAULT_MATMUL_PRECISION=tensorfloat32

The choice is read when a function is traced (JAX keys its compilation cache on it), so it has
no cost inside compiled code and no hidden state of ours.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import jax

__all__ = ["PRECISION", "full_precision"]

PRECISION = "highest"
"""The matmul precision applied where the caller has not chosen one (``"highest"``: full
float32 on GPUs and TPUs)."""

F = TypeVar("F", bound=Callable)


def full_precision(fn: F) -> F:
    """``fn`` evaluated at :data:`PRECISION` matmul precision, unless the caller has set
    ``jax_default_matmul_precision`` (through ``jax.default_matmul_precision(...)``,
    ``jax.config.update`` or the ``JAX_DEFAULT_MATMUL_PRECISION`` environment variable).

    Wrapping twice is harmless; the wrapped function keeps ``fn``'s name and docstring.
    """
    if getattr(fn, "__wrapped_full_precision__", False):
        return fn

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        if jax.config.jax_default_matmul_precision is not None:
            return fn(*args, **kwargs)
        with jax.default_matmul_precision(PRECISION):
            return fn(*args, **kwargs)

    wrapped.__wrapped_full_precision__ = True
    return wrapped
