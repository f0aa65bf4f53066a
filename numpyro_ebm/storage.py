"""Trained networks on disk: the architecture as JSON, every variable through Orbax.

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
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from numpyro_ebm._checks import check_int, check_output_path
from numpyro_ebm.nets import MLPEnergy, NoiseConditionalMLP, activation

__all__ = ["NETWORKS", "build_network", "load_network", "save_network"]

NETWORKS = {"MLPEnergy": MLPEnergy, "NoiseConditionalMLP": NoiseConditionalMLP}
_FORMAT = 1


def build_network(spec: dict[str, Any], seed: int = 0) -> nnx.Module:
    """A network from its JSON-able ``spec``: ``{"network": "MLPEnergy" or
    "NoiseConditionalMLP", "event_shape": [...], "hidden": [...], "activation": "silu", ...}``
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
    for key in ("event_shape", "hidden"):
        sizes = spec.get(key, [])
        if not isinstance(sizes, list | tuple):
            raise ValueError(f"spec[{key!r}] must be a list of positive integers, got {sizes!r}")
        spec[key] = [_size(f"spec[{key!r}]", size) for size in sizes]
    if "num_features" in spec:
        spec["num_features"] = _size("spec['num_features']", spec["num_features"])
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
