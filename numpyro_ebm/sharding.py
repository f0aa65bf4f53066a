r"""Device meshes for :func:`numpyro_ebm.sample` and :func:`numpyro_ebm.fit`.

Both take one keyword, ``devices``, that :func:`device_mesh` turns into a one-axis
``jax.sharding.Mesh``:

* ``None`` (the default): no mesh; everything runs where JAX puts it (the default device);
* ``"all"``: every device of ``jax.devices()``, which after ``jax.distributed.initialize``
  spans every process (host) of the job;
* a sequence of ``jax.Device`` (or one device);
* a ``jax.sharding.Mesh`` with an axis of the expected name (``"chains"`` for ``sample``,
  ``"data"`` for ``fit``); other axes of the mesh are replicated over.

Arrays are then laid out with ``NamedSharding(mesh, PartitionSpec(axis))`` (split along their
first axis) or ``NamedSharding(mesh, PartitionSpec())`` (replicated), and ``jax.jit``
partitions the program over the mesh (GSPMD). Random numbers are drawn with JAX's
partitionable Threefry (``jax_threefry_partitionable``, the default since JAX 0.5), whose
values do not depend on how an array is sharded: a run is the same function of its key on one
device or on many, up to the summation order of cross-device reductions.

Multi-host: every process runs the same program on the same inputs (same key, same data);
:func:`place` builds global arrays from the host-local values with
``jax.make_array_from_callback``, and :func:`to_host` gathers results to every process with
``jax.experimental.multihost_utils.process_allgather``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["constrain", "device_mesh", "place", "replicated", "sharded", "to_host"]


def device_mesh(devices, axis_name: str) -> Mesh | None:
    """The one-axis mesh that ``devices=`` names, or ``None`` for ``devices=None``.

    Parameters
    ----------
    devices
        ``None``, ``"all"``, a ``jax.Device``, a sequence of distinct devices, or a
        ``jax.sharding.Mesh`` that has an axis ``axis_name``.
    axis_name
        The mesh axis to shard over (``"chains"`` or ``"data"``).

    Raises
    ------
    ValueError
        For an empty or repeated device list, an unknown string, or a mesh without
        ``axis_name``.
    TypeError
        For anything else.
    """
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if axis_name not in devices.axis_names:
            raise ValueError(
                f"devices={devices!r} has axes {tuple(devices.axis_names)}, but sharding needs "
                f"an axis named {axis_name!r}: build it as Mesh(devices, ({axis_name!r},))"
            )
        return devices
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(
                f"devices must be None, 'all', a sequence of jax devices or a Mesh, got {devices!r}"
            )
        return Mesh(np.array(jax.devices()), (axis_name,))
    if isinstance(devices, jax.Device):
        devices = [devices]
    if not isinstance(devices, Sequence | np.ndarray):
        raise TypeError(
            f"devices must be None, 'all', a sequence of jax devices or a Mesh, got {devices!r}"
        )
    devices = list(np.ravel(np.asarray(devices, dtype=object)))
    if not devices:
        raise ValueError("devices is an empty sequence; pass None for the default device")
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(f"devices must hold jax devices, got {device!r} in {devices!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices holds a device more than once: {devices!r}")
    return Mesh(np.array(devices), (axis_name,))


def axis_size(mesh: Mesh, axis_name: str) -> int:
    """Number of shards along ``axis_name``."""
    return int(mesh.shape[axis_name])


def sharded(mesh: Mesh, axis_name: str, leading: int = 0) -> NamedSharding:
    """Split along axis ``leading`` over ``axis_name``, replicated over any other mesh axis."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), axis_name))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def constrain(x: jax.Array, axis_name: str) -> jax.Array:
    """``x`` split along its first axis over ``axis_name`` of the mesh in context, if any.

    :func:`numpyro_ebm.fit` traces its steps under its mesh (``jax.set_mesh``), so that a loss
    can lay out arrays that it makes itself and whose layout the partitioner cannot infer from
    the inputs: the negative chains of :func:`~numpyro_ebm.training.pcd`, gathered from the
    replay buffer at random slots, would otherwise run whole on every device. Outside such a
    context (or when the mesh has no ``axis_name``) ``x`` is returned unchanged.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or axis_name not in mesh.axis_names:
        return x
    return jax.lax.with_sharding_constraint(x, PartitionSpec(axis_name))


def place(tree, sharding):
    """``tree``'s arrays laid out with ``sharding`` (one sharding, or a matching pytree).

    On one process this is ``jax.device_put``. When ``sharding`` spans devices of other
    processes, every process must pass the same values: each builds its own shards from its
    host-local copy (``jax.make_array_from_callback``).
    """
    shardings = (
        jax.tree.map(lambda _: sharding, tree) if isinstance(sharding, NamedSharding) else sharding
    )

    def one(x, sharding):
        if sharding.is_fully_addressable:
            return jax.device_put(x, sharding)
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = one(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(one, tree, shardings)


def to_host(x) -> np.ndarray:
    """``x`` as a NumPy array on this process, gathered from every process if it spans
    several (each process gets the whole array)."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
