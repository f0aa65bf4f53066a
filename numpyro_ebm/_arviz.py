"""The one seam between numpyro-ebm and ArviZ's two data models.

ArviZ 0.x (what Python 3.11 resolves: 0.23) builds :class:`arviz.InferenceData` from
``az.from_dict(posterior=..., sample_stats=...)``, one keyword per group. ArviZ >= 1.0 (Python
>= 3.12) returns an :class:`xarray.DataTree` from ``az.from_dict({group: {var: array}},
attrs={group: {...}})`` (the function of ``arviz_base``, which it re-exports). Everything in
numpyro-ebm that builds, reads or writes sampler output goes through the functions here, so
that both work; the rest of the code sees ``xarray.Dataset`` groups only.

ArviZ is imported here, quietly: ArviZ 0.23 announces its 1.x refactor with a ``FutureWarning``
on the first import of each day, which is not ours to act on and must not reach our users. Any
module of ours that needs ArviZ itself takes it from here (``from numpyro_ebm._arviz import
az``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import xarray as xr

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
    )
    import arviz as az

__all__ = [
    "ARVIZ_1",
    "add_group",
    "az",
    "from_dict",
    "from_netcdf",
    "group",
    "group_names",
    "to_netcdf",
]

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1

Data = Any  # arviz.InferenceData (ArviZ 0.x) or xarray.DataTree (ArviZ >= 1)


def from_dict(groups: dict[str, dict], attrs: dict[str, dict] | None = None) -> Data:
    """Sampler output ``{group: {var: array (chain, draw, ...)}}`` as the installed ArviZ's
    data object, with ``attrs`` ``{group: {name: value}}`` set on the groups."""
    with warnings.catch_warnings():
        # thousands of short chains are the norm for EBM samplers, not a transposed array
        warnings.filterwarnings("ignore", message="More chains .* than draws", category=UserWarning)
        if ARVIZ_1:
            return _datatree_from_dict(groups, attrs or {})
        return _inference_data_from_dict(groups, attrs or {})


def _inference_data_from_dict(groups: dict[str, dict], attrs: dict[str, dict]):
    idata = az.from_dict(**groups)
    for name, values in attrs.items():
        getattr(idata, name).attrs.update(values)
    return idata


def _datatree_from_dict(groups: dict[str, dict], attrs: dict[str, dict]) -> xr.DataTree:
    from arviz_base import from_dict as datatree_from_dict  # az.from_dict in ArviZ >= 1

    return datatree_from_dict(groups, attrs=attrs)


def add_group(data: Data, name: str, arrays: dict, attrs: dict) -> Data:
    """``data`` with a group ``name`` of per-chain arrays (leading dim ``chain``, then one
    dim per axis named ``{var}_dim_{i}``) and ``attrs``; returned, not changed in place."""
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


def group(data: Data, name: str) -> xr.Dataset:
    """The group ``name`` (``"posterior"``, ``"sample_stats"``, ...) as an ``xarray.Dataset``."""
    if name not in group_names(data):
        raise KeyError(f"no group {name!r}; the data hold {group_names(data)}")
    if isinstance(data, xr.DataTree):
        return data[name].to_dataset()
    return getattr(data, name)


def group_names(data: Data) -> list[str]:
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
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    if ARVIZ_1:
        return xr.open_datatree(os.fspath(path), engine="h5netcdf").load()
    return az.from_netcdf(os.fspath(path), engine="h5netcdf")
