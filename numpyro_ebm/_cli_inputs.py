"""What the ``numpyro-ebm`` command checks in what it is given, before any work: data files
(:func:`read_data`), output paths, a folder that holds an earlier run, and sizes beyond the
memory available. Each refusal is a :class:`UserError`, which the command reports in one line
with exit status 2.

NumPy and JAX are imported inside the functions, so that importing this module costs nothing.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

DATA_FORMATS = (".npy", ".npz", ".csv")
_MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}
# float32, the library's default precision
_FLOAT_BYTES = 4


class UserError(Exception):
    """An error in what the user gave: reported in one line, exit status 2."""


def read_data(path: str | Path, *, binary: bool = False) -> np.ndarray:
    """Data (n, d) from a ``.npy``, ``.npz`` (its only array, or the one named ``data``) or
    ``.csv`` file (comma-separated numbers, an optional header line), as float32. Never
    unpickles; refuses complex and non-numeric data, NaN and infinite values and values beyond
    float32's range, each with a :class:`UserError` naming the file. Boolean arrays are read
    as 0/1 with ``binary=True`` (an RBM's data), else refused."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in DATA_FORMATS:
        raise UserError(
            f"unsupported data format {suffix!r} ({path}); use one of {', '.join(DATA_FORMATS)}"
        )
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    if suffix in _MAGIC:
        with open(path, "rb") as handle:
            head = handle.read(8)
        if not head.startswith(_MAGIC[suffix]):
            raise UserError(f"{path} is not a NumPy {suffix} file (it does not start like one)")
    try:
        data = _read(path, suffix)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "allow_pickle" in message:
            message = "it holds Python objects, which numpyro-ebm never unpickles"
        raise UserError(f"cannot read {path}: {message}") from None
    return _as_table(path, data, binary)


def _read(path: Path, suffix: str) -> np.ndarray:
    import numpy as np

    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".csv":
        return _read_csv(path)
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.keys())
        if len(names) != 1 and "data" not in names:
            raise UserError(f"{path} holds arrays {names}; name the data array 'data'")
        return archive["data" if "data" in names else names[0]]


def _as_table(path: Path, data: np.ndarray, binary: bool) -> np.ndarray:
    import numpy as np

    if data.dtype == bool:
        if not binary:
            raise UserError(
                f"{path} holds booleans (dtype bool), not numbers; for binary data train an "
                "RBM (--model rbm)"
            )
        data = data.astype(np.float32)
    if np.issubdtype(data.dtype, np.complexfloating):
        raise UserError(f"{path} holds complex numbers (dtype {data.dtype}); give real data")
    if not np.issubdtype(data.dtype, np.number):
        raise UserError(f"{path} does not hold numbers (dtype {data.dtype})")
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or len(data) < 2 or data.shape[1] < 1:
        raise UserError(
            f"{path}: expected a table of shape (n, d) with n >= 2 and d >= 1, got {data.shape}"
        )
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise UserError(
            f"{path}: {len(rows)} row(s) hold NaN or inf (first: row {rows[0]}); remove them"
        )
    with np.errstate(over="ignore"):
        table = data.astype(np.float32)
    bad = ~np.isfinite(table).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise UserError(
            f"{path}: {len(rows)} row(s) hold values beyond float32's range (|x| > 3.4e38; "
            f"first: row {rows[0]})"
        )
    return table


def _read_csv(path: Path) -> np.ndarray:
    import numpy as np

    with open(path) as handle:
        first = handle.readline()
    try:
        [float(v) for v in first.split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header line
    return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)


def check_output(path: str, *, folder: bool) -> Path:
    """``--out`` checked before any work: not under a file, not an entry of the other kind,
    writable."""
    from numpyro_ebm._checks import check_output_path

    try:
        return check_output_path("--out", path, folder=folder)
    except ValueError as error:
        raise UserError(str(error)) from None


def check_fresh_run_folder(out: Path, *, resume: bool | None) -> None:
    """Refuse an ``--out`` that holds a previous run's checkpoints unless resuming
    (``resume=None``: the command has no ``--resume``)."""
    checkpoints = out / "checkpoints"
    if resume or not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        return
    remedy = "choose another --out" if resume is None else "add --resume to continue that run"
    raise UserError(
        f"--out {str(out)!r} already holds the checkpoints of a training run ({checkpoints}); "
        f"{remedy}, or delete that folder"
    )


def training_memory(hidden: list[int], batch_size: int) -> int:
    """A lower bound, in bytes, of what training a network with the hidden layers ``hidden``
    holds: the weights between consecutive layers (the data width, not known yet, counted as
    1) with their gradients, and one minibatch's activations of every hidden unit."""
    widths = [1, *hidden]
    weights = sum(a * b for a, b in itertools.pairwise(widths))
    return _FLOAT_BYTES * (2 * weights + batch_size * sum(hidden))


def rbm_training_memory(n_visible: int, n_hidden: int, batch_size: int) -> int:
    """Bytes that training an RBM holds: the contrastive objectives differentiate each
    example's free energy (a ``vmap``), which forms a ``(batch, n_visible, n_hidden)`` array,
    beside the weights and their gradient."""
    return _FLOAT_BYTES * (batch_size + 2) * (n_visible + 1) * n_hidden


def available_memory() -> int:
    """Bytes the default JAX device can still allocate: an accelerator's own limit, else the
    host's available memory (Linux ``MemAvailable``), else its physical memory."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(need: int, what: str) -> None:
    """Refuse to train ``what`` (the sizes, as given) when it needs ``need`` bytes, more than
    the memory available."""
    if need <= 2**30:  # anything smaller fits: no need to ask the device
        return
    available = available_memory()
    if need > available:
        raise UserError(
            f"{what} needs at least {need / 2**30:.1f} GiB to train, more than the "
            f"{available / 2**30:.1f} GiB available; choose smaller layers or a smaller batch"
        )
