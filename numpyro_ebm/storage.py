"""Trained networks on disk: the architecture as JSON, every variable through Orbax.

A saved network is a directory with ``network.json`` (which class of :mod:`numpyro_ebm.nets`,
its constructor arguments, and free-form metadata such as the objective and the noise ladder)
and ``state/``, an Orbax checkpoint of the module's whole ``nnx.State`` (trained parameters and
fixed variables such as Fourier frequencies). Loading rebuilds the module abstractly
(``nnx.eval_shape``, no initialization) and restores the arrays into it. Nothing is pickled, so
loading a file cannot run code; Orbax writes into a temporary directory and renames it when
complete, so a crash never leaves half a network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
from flax import nnx

from numpyro_ebm.nets import MLPEnergy, NoiseConditionalMLP

__all__ = ["build_network", "load_network", "save_network"]

NETWORKS = {"MLPEnergy": MLPEnergy, "NoiseConditionalMLP": NoiseConditionalMLP}
_FORMAT = 1


def build_network(spec: dict[str, Any], seed: int = 0) -> nnx.Module:
    """A network from its JSON-able ``spec``: ``{"network": "MLPEnergy" or
    "NoiseConditionalMLP", "event_shape": [...], "hidden": [...], "activation": "silu", ...}``
    (the remaining keys are the class's constructor arguments; the activation is the name of a
    ``flax.nnx`` function)."""
    spec = dict(spec)
    name = spec.pop("network", None)
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks: {sorted(NETWORKS)}")
    activation = spec.pop("activation", "silu")
    if not callable(getattr(nnx, activation, None)):
        raise ValueError(f"activation must name a flax.nnx function, got {activation!r}")
    try:
        return NETWORKS[name](**spec, activation=getattr(nnx, activation), rngs=nnx.Rngs(seed))
    except TypeError as error:
        raise ValueError(f"bad arguments for {name}: {error}") from None


def save_network(
    directory: str | os.PathLike, network: nnx.Module, spec: dict, metadata: dict | None = None
) -> Path:
    """Save ``network`` (built from ``spec`` by :func:`build_network`, then trained) with
    JSON-able ``metadata``; an existing saved network in ``directory`` is replaced."""
    directory = Path(directory).absolute()
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
    """Load a network saved by :func:`save_network`: ``(module, spec, metadata)``."""
    directory = Path(directory).absolute()
    record_path = directory / "network.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{directory} holds no saved network (no network.json)")
    try:
        record = json.loads(record_path.read_text())
        spec, metadata = record["spec"], record["metadata"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{record_path} is not a saved network's description: {error}") from None
    abstract = nnx.eval_shape(lambda: build_network(spec))
    graphdef, abstract_state = nnx.split(abstract)
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(directory / "state", abstract_state)
    return nnx.merge(graphdef, state), spec, metadata
