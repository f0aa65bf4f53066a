"""Input checks shared by the library: raise early, name the argument and its value.

Values traced under ``jit`` cannot be inspected; the checks pass them through, so a check
runs where a concrete value is available (construction, the first call) and costs nothing
inside compiled code.
"""

from __future__ import annotations

import contextlib
import operator
import os
import tempfile
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

__all__ = [
    "all_finite",
    "check_finite_array",
    "check_int",
    "check_key",
    "check_ladder",
    "check_output_path",
    "check_positive",
    "check_probability",
    "check_real_array",
    "check_strictly_decreasing",
    "check_temperatures",
    "structure_checked",
    "structure_checks_skipped",
]

_STRUCTURE = threading.local()


@contextlib.contextmanager
def structure_checked():
    """Within this block the structure checks of a log density (a checkerboard's sublattices,
    Swendsen-Wang's Ising form, an RBM site's unit terms) return at once. For a caller that
    ran them on concrete values and then builds the same kernel again inside a traced
    transition (Gibbs within HMC moves a discrete site given the continuous ones at every
    step): there the values are traced and the checks could only trace their test
    evaluations into the program, for XLA to discard."""
    previous = getattr(_STRUCTURE, "checked", False)
    _STRUCTURE.checked = True
    try:
        yield
    finally:
        _STRUCTURE.checked = previous


def structure_checks_skipped() -> bool:
    """Whether the caller is inside :func:`structure_checked`."""
    return getattr(_STRUCTURE, "checked", False)


def all_finite(tree) -> jax.Array:
    """Whether every entry of every leaf of ``tree`` is finite (a traced boolean)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def check_bool(name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False``, else ``TypeError`` naming it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an ``int``; raise ``TypeError`` unless it is an integer and
    ``ValueError`` unless it is ``>= minimum`` (counts, sizes, step numbers)."""
    try:
        as_int = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if as_int < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return as_int


def check_key(key, name: str = "key") -> jax.Array:
    """``key`` as a typed PRNG key: a ``jax.random.key`` as is, a raw ``PRNGKey`` (uint32 of
    shape ``(2,)``) wrapped. ``ValueError`` for a key array of several keys, ``TypeError`` for
    anything else."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(
                f"{name} must be a single PRNG key, got a key array of shape {key.shape}"
            )
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(f"{name} must be a jax.random.key (e.g. jax.random.key(0)), got {key!r}")


def check_probability(name: str, value) -> float:
    """``value`` as a float strictly between 0 and 1 (a target acceptance rate, an ESS
    fraction), else a ``ValueError`` naming it."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < as_float < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return as_float


def check_ladder(name: str, value, reverse: bool = False) -> jax.Array:
    r"""``value`` as a float array if it is an annealing ladder of inverse temperatures
    :math:`0 = \beta_0 < \beta_1 < \dots < \beta_K = 1` (``reverse=True``: from 1 down to
    0), at least two of them, all finite; ``ValueError`` naming ``name`` otherwise."""
    array = np.asarray(value, dtype=np.float64)
    expected = "1 to 0, strictly decreasing" if reverse else "0 to 1, strictly increasing"
    ordered = array[::-1] if reverse else array
    if (
        array.ndim != 1
        or array.size < 2
        or not np.all(np.isfinite(array))
        or ordered[0] != 0.0
        or ordered[-1] != 1.0
        or np.any(np.diff(ordered) <= 0)
    ):
        raise ValueError(f"{name} must run from {expected}, got {value!r}")
    return jnp.asarray(array, jnp.result_type(float))


def check_temperatures(name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is a replica-exchange ladder: a 1-D strictly
    increasing sequence of finite temperatures starting at exactly 1 (the target's)."""
    check_positive(name, value)
    if isinstance(value, Tracer):
        return
    ladder = np.asarray(value)
    if ladder.ndim != 1 or ladder.size < 1 or ladder[0] != 1 or np.any(np.diff(ladder) <= 0):
        raise ValueError(
            f"{name} must be a 1-D strictly increasing ladder starting at exactly 1, got {value!r}"
        )


def _concrete(value) -> np.ndarray | None:
    if isinstance(value, Tracer):
        return None
    return np.asarray(value)


def check_positive(name: str, value) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` is a finite number > 0."""
    array = _concrete(value)
    if array is None:
        return
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array) & (array > 0)):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def check_positive_number(name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is one finite number > 0 (a step size)."""
    if np.ndim(value) != 0:
        raise ValueError(
            f"{name} must be a single positive number, got shape {np.shape(value)}: {value!r}"
        )
    check_positive(name, value)


def check_strictly_decreasing(name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is a 1-D array of positive, strictly
    decreasing numbers (a noise schedule sigma_1 > ... > sigma_L > 0)."""
    array = _concrete(value)
    if array is None:
        return
    check_positive(name, value)
    if array.ndim != 1 or array.size < 1 or np.any(np.diff(array) >= 0):
        raise ValueError(f"{name} must be a 1-D strictly decreasing sequence, got {value!r}")


def check_finite_array(name: str, value) -> None:
    """Raise ``ValueError`` if ``value`` holds a NaN or an infinity, naming how many."""
    array = _concrete(value)
    if array is None:
        return
    bad = ~np.isfinite(array)
    if np.any(bad):
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or inf); "
            f"first at index {tuple(int(i) for i in np.argwhere(bad)[0])}"
        )


def check_output_path(name: str, path: str | os.PathLike, *, folder: bool) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` if a folder (``folder=True``) or a file can be
    written there; raise ``ValueError`` naming ``name`` and the path otherwise: the path is an
    existing entry of the other kind, lies under a file, or its nearest existing folder is not
    writable (a temporary file is created there and removed at once), so a command can check its
    outputs before any work."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {path!r}")
    if not os.fspath(path).strip():
        raise ValueError(f"{name} must be a non-empty path, got {os.fspath(path)!r}")
    path = Path(path)
    full = path.absolute()
    existing = next(entry for entry in (full, *full.parents) if entry.exists())
    if existing == full:
        if folder and not full.is_dir():
            raise ValueError(f"{name} {str(path)!r} is a file, not a folder")
        if not folder and full.is_dir():
            raise ValueError(f"{name} {str(path)!r} is a folder; give a file name")
    elif not existing.is_dir():
        raise ValueError(f"{name} {str(path)!r} lies under {str(existing)!r}, which is a file")
    # a real write, not os.access, which says yes to root wherever a write then fails (a
    # read-only mount, procfs): a temporary file in the folder that will hold the output
    folder_there = existing if existing.is_dir() else existing.parent
    try:
        with tempfile.TemporaryFile(dir=folder_there):
            pass
    except OSError as error:
        raise ValueError(
            f"{name} {str(path)!r} cannot be written: a file cannot be created in "
            f"{str(folder_there)!r} ({error.strerror or error})"
        ) from None
    return path


def check_real_array(name: str, value) -> jax.Array:
    """``value`` as a JAX array; raise ``TypeError`` unless it holds real numbers (booleans,
    integers or floats: not complex numbers, strings or Python objects)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError) as error:  # ragged nested sequences
            raise TypeError(f"{name} must be an array of real numbers: {error}") from None
    if not any(jnp.issubdtype(dtype, kind) for kind in (jnp.bool_, jnp.integer, jnp.floating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        _check_float32_range(name, value)
    return jnp.asarray(value)


def _check_float32_range(name: str, value) -> None:
    """Raise ``ValueError`` if float64 ``value`` holds finite numbers beyond float32's range:
    without 64-bit mode JAX casts them to infinities (NumPy warns, nothing raises)."""
    array = _concrete(value)
    if array is None:
        return
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(array) & (np.abs(array) > np.finfo(np.float32).max)
    if np.any(beyond):
        raise ValueError(
            f"{name} holds {int(beyond.sum())} value(s) beyond float32's range (|x| > 3.4e38), "
            "which JAX turns into infinities without 64-bit mode (jax_enable_x64); first at "
            f"index {tuple(int(i) for i in np.argwhere(beyond)[0])}"
        )
