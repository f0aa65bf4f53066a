"""The one seam between numpyro-ebm and ArviZ's two data models.

ArviZ 0.x (what Python 3.11 resolves: 0.23) builds :class:`arviz.InferenceData` from
``az.from_dict(posterior=..., sample_stats=...)``, one keyword per group. ArviZ >= 1.0 (Python
>= 3.12) returns an :class:`xarray.DataTree` from ``az.from_dict({group: {var: array}},
attrs={group: {...}})`` (the function of ``arviz_base``, which it re-exports). Everything in
numpyro-ebm that builds, reads or writes sampler output goes through the functions here, so
that both work; the rest of the code sees ``xarray.Dataset`` groups only.

ArviZ is imported here, on first use, and quietly: ArviZ 0.23 announces its 1.x refactor with a
``FutureWarning`` on the first import of each day, which is not ours to act on and must not
reach our users. Any module of ours that needs ArviZ itself takes it from here
(``from numpyro_ebm._arviz import az``, resolved on that first use). Importing ArviZ takes
about a second (xarray, pandas, SciPy's statistics, matplotlib), all Python under the
interpreter lock: :func:`prefetch` starts it in a background thread, so that a run's first
call imports it while its chains run (which releases the lock), not after; and, for a
Markov-chain run, not while XLA compiles its programs: the compile runs on every core, and
slowed by half beside the import.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import warnings
from typing import Any

__all__ = [
    "add_group",
    "from_dict",
    "from_netcdf",
    "group",
    "group_names",
    "prefetch",
    "to_netcdf",
]

Data = Any  # arviz.InferenceData (ArviZ 0.x) or xarray.DataTree (ArviZ >= 1)

_prefetching: threading.Thread | None = None
_lock = threading.Lock()


def _silence_notice() -> None:
    # A process-wide filter, set in the caller's thread, not ``warnings.catch_warnings()``:
    # that context swaps the global filter list and is not thread-safe before Python 3.14, and
    # the import may run in prefetch()'s thread while the caller's enters and leaves its own.
    warnings.filterwarnings(
        "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
    )


def _import_quietly() -> None:
    try:
        importlib.import_module("arviz")
    except Exception:  # _modules() imports it again, in the caller's thread, and raises
        pass


def prefetch() -> None:
    """Start importing ArviZ in a background thread, once per process (nothing if it is
    imported already): :func:`numpyro_ebm.sample` calls it once the chains' first programs
    are compiled and dispatched (before a whole run, which compiles as it goes), and takes
    ArviZ when it builds its data (:func:`_modules` waits for the thread)."""
    global _prefetching
    with _lock:
        if _prefetching is None and "arviz" not in sys.modules:
            _silence_notice()
            _prefetching = threading.Thread(
                target=_import_quietly, name="numpyro-ebm-arviz-import", daemon=True
            )
            _prefetching.start()


@functools.cache
def _modules() -> tuple[Any, Any]:
    """``(arviz, xarray)``, imported the first time (after :func:`prefetch`'s import, if
    one runs)."""
    if _prefetching is not None:
        _prefetching.join()
    _silence_notice()
    import arviz
    import xarray

    return arviz, xarray


def _arviz_1() -> bool:
    """Whether the installed ArviZ is >= 1 (``xarray.DataTree`` data)."""
    return int(_modules()[0].__version__.split(".")[0]) >= 1


def __getattr__(name: str):
    if name == "az":  # ``from numpyro_ebm._arviz import az``, imported on that first use
        return _modules()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_dict(groups: dict[str, dict], attrs: dict[str, dict] | None = None) -> Data:
    """Sampler output ``{group: {var: array (chain, draw, ...)}}`` as the installed ArviZ's
    data object, with ``attrs`` ``{group: {name: value}}`` set on the groups."""
    with warnings.catch_warnings():
        # thousands of short chains are the norm for EBM samplers, not a transposed array
        warnings.filterwarnings("ignore", message="More chains .* than draws", category=UserWarning)
        if _arviz_1():
            return _datatree_from_dict(groups, attrs or {})
        return _inference_data_from_dict(groups, attrs or {})


def _inference_data_from_dict(groups: dict[str, dict], attrs: dict[str, dict]):
    idata = _modules()[0].from_dict(**groups)
    for name, values in attrs.items():
        getattr(idata, name).attrs.update(values)
    return idata


def _datatree_from_dict(groups: dict[str, dict], attrs: dict[str, dict]) -> Data:
    from arviz_base import from_dict as datatree_from_dict  # az.from_dict in ArviZ >= 1

    return datatree_from_dict(groups, attrs=attrs)


def add_group(data: Data, name: str, arrays: dict, attrs: dict) -> Data:
    """``data`` with a group ``name`` of per-chain arrays (leading dim ``chain``, then one
    dim per axis named ``{var}_dim_{i}``) and ``attrs``; returned, not changed in place."""
    xr = _modules()[1]
    dataset = xr.Dataset(
        {
            var: (("chain", *(f"{var}_dim_{i}" for i in range(a.ndim - 1))), a)
            for var, a in arrays.items()
        },
        attrs=attrs,
    )
    if isinstance(data, xr.DataTree):
        data = data.copy()
        data[name] = xr.DataTree(dataset)
        return data
    with warnings.catch_warnings():
        # a group outside ArviZ's scheme (the sampler's final state) is meant
        warnings.filterwarnings("ignore", message=".*not defined in the InferenceData scheme")
        data.add_groups({name: dataset})
    return data


def group(data: Data, name: str) -> Any:
    """The group ``name`` (``"posterior"``, ``"sample_stats"``, ...) as an ``xarray.Dataset``."""
    if name not in group_names(data):
        raise KeyError(f"no group {name!r}; the data hold {group_names(data)}")
    if isinstance(data, _modules()[1].DataTree):
        return data[name].to_dataset()
    return getattr(data, name)


def group_names(data: Data) -> list[str]:
    az, xr = _modules()
    if isinstance(data, xr.DataTree):
        return list(data.children)
    if isinstance(data, az.InferenceData):
        return list(data.groups())
    raise TypeError(f"expected arviz.InferenceData or xarray.DataTree, got {type(data).__name__}")


def to_netcdf(data: Data, path: str | os.PathLike) -> None:
    """Write ``data`` to a netCDF file (one group per netCDF group), readable by
    :func:`from_netcdf` and by ArviZ's own ``from_netcdf``."""
    group_names(data)  # type check
    data.to_netcdf(os.fspath(path), engine="h5netcdf")


def from_netcdf(path: str | os.PathLike) -> Data:
    """Read a file written by :func:`to_netcdf` as the installed ArviZ's data object."""
    az, xr = _modules()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    if _arviz_1():
        return xr.open_datatree(os.fspath(path), engine="h5netcdf").load()
    return az.from_netcdf(os.fspath(path), engine="h5netcdf")
