r"""The two encodings of binary configurations, spins :math:`\{-1, +1\}` (``"pm1"``) and bits
:math:`\{0, 1\}` (``"01"``), and the checks and maps between them: one vocabulary for targets,
distributions, models and kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

__all__ = ["SPINS", "as_spin_array", "check_spins", "flip", "from_pm1", "spin_values", "to_pm1"]

SPINS = {"pm1": (-1.0, 1.0), "01": (0.0, 1.0)}
"""The two spin encodings and their (low, high) values."""


def spin_values(spins: str) -> tuple[float, float]:
    """The ``(low, high)`` values of an encoding: ``(-1, 1)`` for ``"pm1"``, ``(0, 1)`` for
    ``"01"``; anything else raises ``ValueError``."""
    if not isinstance(spins, str) or spins not in SPINS:
        raise ValueError(f"spins must be 'pm1' or '01', got {spins!r}")
    return SPINS[spins]


def check_spins(name: str, value, spins: str) -> None:
    """Raise ``TypeError`` unless ``value`` is numeric and ``ValueError`` unless every entry is
    one of the two values of ``spins``, naming the first offender. Traced values pass."""
    low, high = spin_values(spins)
    if isinstance(value, Tracer):
        return
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array of spins, got dtype {array.dtype}")
    bad = (array != low) & (array != high)
    if np.any(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must hold only {low:g} and {high:g} (spins={spins!r}), got "
            f"{int(bad.sum())} other value(s), first {array[first].item()!r} at index {first}"
        )


def as_spin_array(name: str, value, spins: str) -> jax.Array:
    """``value`` checked by :func:`check_spins` and cast to the default floating dtype."""
    check_spins(name, value, spins)
    return jnp.asarray(value, dtype=jnp.result_type(float))


def flip(x: jax.Array, spins: str) -> jax.Array:
    """Every site of ``x`` flipped: :math:`-s` for ``"pm1"``, :math:`1 - x` for ``"01"``."""
    low, high = spin_values(spins)
    return (low + high) - x


def to_pm1(x: jax.Array, spins: str) -> jax.Array:
    """``x`` in the :math:`\\{-1, +1\\}` encoding (:math:`2x - 1` for ``"01"``)."""
    spin_values(spins)
    return x if spins == "pm1" else 2 * x - 1


def from_pm1(s: jax.Array, spins: str) -> jax.Array:
    """The inverse of :func:`to_pm1`."""
    spin_values(spins)
    return s if spins == "pm1" else (s + 1) / 2
