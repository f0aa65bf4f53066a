"""Trained models on disk: networks (the architecture as JSON, every variable through Orbax)
and RBMs (JSON plus a ``.npz`` archive).

A saved network is a directory with ``network.json`` (which class of :mod:`numpyro_ebm.nets`,
its constructor arguments, and free-form metadata such as the objective and the noise ladder)
and ``state/``, an Orbax checkpoint of the module's whole ``nnx.State`` (trained parameters and
fixed variables such as Fourier frequencies). Loading rebuilds the module abstractly
(``nnx.eval_shape``, no initialization) and restores the arrays into it. Nothing is pickled, so
loading a file cannot run code; Orbax writes into a temporary directory and renames it when
complete, so a crash never leaves half a network.

Loading trusts nothing in the files: the ``format`` is checked, the network class and the
activation are looked up in fixed allow-lists (:data:`NETWORKS`,
:data:`numpyro_ebm.nets.ACTIVATIONS`), every size in the spec is checked, and arrays that do
not fit the described architecture are refused with a ``ValueError`` that names the folder.

An RBM (:func:`save_rbm`, :func:`load_rbm`) is ``rbm.json`` (the kind and sizes) and
``params.npz`` (one array per parameter, read with ``allow_pickle=False``), each written under a
temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from numpyro_ebm._checks import check_int, check_output_path
from numpyro_ebm.models.rbm import (
    BernoulliRBM,
    GaussianBernoulliRBM,
    GaussianRBMParams,
    RBMParams,
    check_params,
)
from numpyro_ebm.nets import ConvEnergy, MLPEnergy, NoiseConditionalMLP, activation

__all__ = ["NETWORKS", "build_network", "load_network", "load_rbm", "save_network", "save_rbm"]

NETWORKS = {
    "ConvEnergy": ConvEnergy,
    "MLPEnergy": MLPEnergy,
    "NoiseConditionalMLP": NoiseConditionalMLP,
}
_FORMAT = 1


def build_network(spec: dict[str, Any], seed: int = 0) -> nnx.Module:
    """A network from its JSON-able ``spec``: ``{"network": "MLPEnergy",
    "NoiseConditionalMLP" or "ConvEnergy", "event_shape": [...], "hidden": [...],
    "activation": "silu", ...}``
    (the remaining keys are the class's constructor arguments; the activation is one of
    :data:`numpyro_ebm.nets.ACTIVATIONS`).

    Raises
    ------
    ValueError
        For an unknown network or activation, a size that is not a positive integer, or
        arguments the class does not take.
    """
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict, got {type(spec).__name__}")
    spec = dict(spec)
    name = spec.pop("network", None)
    if not isinstance(name, str) or name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks: {sorted(NETWORKS)}")
    nonlinearity = activation(spec.pop("activation", "silu"))
    for key in ("event_shape", "hidden", "channels"):
        if key not in spec:
            continue
        sizes = spec[key]
        if not isinstance(sizes, list | tuple):
            raise ValueError(f"spec[{key!r}] must be a list of positive integers, got {sizes!r}")
        spec[key] = [_size(f"spec[{key!r}]", size) for size in sizes]
    for key in ("num_features", "num_outputs"):
        if key in spec:
            spec[key] = _size(f"spec[{key!r}]", spec[key])
    try:
        return NETWORKS[name](**spec, activation=nonlinearity, rngs=nnx.Rngs(seed))
    except TypeError as error:
        raise ValueError(f"bad arguments for {name}: {error}") from None


def _size(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must hold positive integers, got {value!r}")
    try:
        return check_int(name, value)
    except TypeError as error:
        raise ValueError(str(error)) from None


def save_network(
    directory: str | os.PathLike, network: nnx.Module, spec: dict, metadata: dict | None = None
) -> Path:
    """Save ``network`` (built from ``spec`` by :func:`build_network`, then trained) with
    JSON-able ``metadata``; an existing saved network in ``directory`` is replaced."""
    directory = check_output_path("directory", directory, folder=True).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    _, state = nnx.split(network)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / "state", state, force=True)
    record = {"format": _FORMAT, "spec": spec, "metadata": metadata or {}}
    temporary = directory / "network.json.tmp"
    temporary.write_text(json.dumps(record, indent=1))
    temporary.replace(directory / "network.json")  # atomic on POSIX
    return directory


def load_network(directory: str | os.PathLike) -> tuple[nnx.Module, dict, dict]:
    """Load a network saved by :func:`save_network`: ``(module, spec, metadata)``.

    Raises
    ------
    FileNotFoundError
        If ``directory`` holds no ``network.json``.
    ValueError
        If ``network.json`` is not a saved network's description of this format, describes a
        network outside the allow-lists, or does not match the saved arrays.
    """
    directory = Path(directory).absolute()
    record_path = directory / "network.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{directory} holds no saved network (no network.json)")
    try:
        record = json.loads(record_path.read_text())
        spec, metadata, version = record["spec"], record["metadata"], record["format"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{record_path} is not a saved network's description: {error}") from None
    if isinstance(version, bool) or version != _FORMAT:
        raise ValueError(
            f"{record_path} has format {version!r}; this numpyro-ebm reads format {_FORMAT}"
        )
    if not isinstance(spec, dict) or not isinstance(metadata, dict):
        raise ValueError(f"{record_path}: 'spec' and 'metadata' must be JSON objects")
    try:
        abstract = nnx.eval_shape(lambda: build_network(spec))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{record_path}: {error}") from None
    graphdef, abstract_state = nnx.split(abstract)
    if not (directory / "state").is_dir():
        raise FileNotFoundError(
            f"{directory} holds a network description but no arrays ({directory / 'state'} is "
            "missing): an incomplete copy?"
        )
    with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.metadata(directory / "state")
        # compared before restoring: Orbax's own mismatch errors leave its reads dangling
        if _shapes(getattr(saved.item_metadata, "tree", saved.item_metadata)) != _shapes(
            abstract_state
        ):
            raise ValueError(
                f"the arrays in {directory / 'state'} do not fit the network described in "
                f"{record_path} ({_describe(spec)}): they were saved with other layer sizes, "
                "another output or another network class"
            )
        state = checkpointer.restore(directory / "state", abstract_state)
    return nnx.merge(graphdef, state), spec, metadata


def _shapes(tree) -> dict[tuple[str, ...], tuple[int, ...]]:
    """``{path: shape}`` of a state's arrays, the path as strings without the trailing
    ``value`` (how ``nnx.State`` and Orbax's metadata differ)."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        names = tuple(
            str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path
        )
        shapes[names[:-1] if names[-1:] == ("value",) else names] = tuple(leaf.shape)
    return shapes


def _describe(spec: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in spec.items() if key != "activation")


_RBM_FILE = "rbm.json"
_RBM_PARAMS_FILE = "params.npz"
_RBM_FORMAT = "numpyro-ebm/rbm"
_RBM_KINDS = {
    "BernoulliRBM": (BernoulliRBM, RBMParams),
    "GaussianBernoulliRBM": (GaussianBernoulliRBM, GaussianRBMParams),
}
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number"}


def save_rbm(directory: str | os.PathLike, model, params) -> Path:
    """Write ``model`` and ``params`` to ``directory`` (created): ``rbm.json`` (the kind and
    sizes) and ``params.npz`` (one array per parameter). No pickle. Each file is written under
    a temporary name and renamed (atomic on POSIX), the arrays first, so that a killed run
    leaves whole files. Returns the directory."""
    if not isinstance(model, BernoulliRBM | GaussianBernoulliRBM):
        raise TypeError(f"model must be a BernoulliRBM or GaussianBernoulliRBM, got {model!r}")
    check_params(model, params)  # what load_rbm would refuse is not written
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {
        "format": _RBM_FORMAT,
        "version": 1,
        "kind": type(model).__name__,
        "n_visible": model.n_visible,
        "n_hidden": model.n_hidden,
    }
    if isinstance(model, GaussianBernoulliRBM):
        spec["sigma"] = model.sigma
    arrays = {name: np.asarray(value) for name, value in params._asdict().items()}
    _write_atomically(directory / _RBM_PARAMS_FILE, lambda handle: np.savez(handle, **arrays))
    text = json.dumps(spec, indent=2).encode()
    _write_atomically(directory / _RBM_FILE, lambda handle: handle.write(text))
    return directory


def _write_atomically(path: Path, write: Callable) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        write(handle)
    os.replace(temporary, path)


def load_rbm(directory: str | os.PathLike):
    """Read an RBM written by :func:`save_rbm`: returns ``(model, params)``.

    Raises
    ------
    ValueError
        If the directory holds no ``rbm.json``, or a file that :func:`save_rbm` does not
        write: ``rbm.json`` that is not a JSON object of this format, or names an unknown kind
        or invalid sizes; ``params.npz`` missing, unreadable, without one of the parameters,
        or holding arrays of other shapes than the sizes need, or values that are not finite
        real numbers. The message names the file.
    """
    directory = Path(directory)
    spec_path = directory / _RBM_FILE
    if not spec_path.is_file():
        raise ValueError(f"{os.fspath(directory)!r} holds no {_RBM_FILE}: not a saved RBM")
    spec = _read_rbm_spec(spec_path)
    cls, params_cls = _RBM_KINDS[spec["kind"]]
    extra = {"sigma": spec["sigma"]} if "sigma" in spec else {}
    try:
        model = cls(spec["n_visible"], spec["n_hidden"], **extra)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{spec_path}: {error}") from None
    params_path = directory / _RBM_PARAMS_FILE
    params = params_cls(**_read_rbm_arrays(params_path, params_cls._fields))
    try:
        check_params(model, params, name="params")
    except ValueError as error:
        raise ValueError(f"{os.fspath(params_path)!r}: {error}") from None
    return model, params


def _read_rbm_spec(path: Path) -> dict:
    """``rbm.json``'s object, its format, kind and sizes present."""
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not JSON ({error})") from None
    if not isinstance(spec, dict):
        found = _JSON_TYPES.get(type(spec), json.dumps(spec))
        raise ValueError(
            f"{path} must hold a JSON object (the RBM's format, kind and sizes), got {found}"
        )
    if spec.get("format") != _RBM_FORMAT:
        raise ValueError(f"{path} is not an RBM file (format {spec.get('format')!r})")
    if spec.get("kind") not in _RBM_KINDS:
        raise ValueError(f"unknown RBM kind {spec.get('kind')!r} in {path}")
    missing = [name for name in ("n_visible", "n_hidden") if name not in spec]
    if missing:
        raise ValueError(f"{path} gives no {' and no '.join(missing)}")
    return spec


def _read_rbm_arrays(path: Path, names: Sequence[str]) -> dict[str, jax.Array]:
    """The arrays ``names`` of ``params.npz``, checked to be finite real numbers."""
    if not path.is_file():
        raise ValueError(f"{path.parent} holds {_RBM_FILE} but no {_RBM_PARAMS_FILE}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            present = list(archive.keys())
            arrays = {name: archive[name] for name in names if name in present}
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile):
        raise ValueError(
            f"{path} is not a NumPy .npz archive of numbers (as save_rbm writes)"
        ) from None
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"{path} holds no array {', '.join(missing)} (it holds {present})")
    for name, array in arrays.items():
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise ValueError(
                f"array {name} in {path} has dtype {array.dtype}: parameters are real numbers"
            )
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(f"array {name} in {path} holds {bad} non-finite value(s)")
    return {name: jnp.asarray(array, jnp.result_type(float)) for name, array in arrays.items()}
