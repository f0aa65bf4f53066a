r"""Spurious basins: low energy far from every data point (see :func:`spurious_basins`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm._checks import check_finite_array, check_int, check_positive


class BasinProbe(NamedTuple):
    """What :func:`spurious_basins` found.

    ``points`` and ``energies``: where each descent ended and its energy; ``nearest``: each
    end's distance to the nearest data point; ``spurious``: whether the end lies in a
    spurious basin; ``fraction``: the share of probes that did; ``energy_threshold`` and
    ``distance_threshold``: the two bounds that define a spurious basin."""

    points: np.ndarray
    energies: np.ndarray
    nearest: np.ndarray
    spurious: np.ndarray
    fraction: float
    energy_threshold: float
    distance_threshold: float


def _nearest_distance(points: jax.Array, data: jax.Array) -> jax.Array:
    # one point at a time (lax.map): memory O(len(data))
    return jax.lax.map(lambda p: jnp.min(jnp.linalg.norm(data - p, axis=-1)), points)


def spurious_basins(
    energy: Callable,
    starts,
    data,
    held_out,
    *,
    num_steps: int = 100,
    step_size: float = 1.0,
    lower: float | None = None,
    upper: float | None = None,
    quantile: float = 0.95,
) -> BasinProbe:
    r"""Probe an energy for spurious basins: regions of low energy far from the data, which
    contrastive training leaves behind and adversarial perturbations walk into.

    From each start (noise, typically), ``num_steps`` of projected gradient descent,
    :math:`x \leftarrow \mathrm{clip}(x - \eta \nabla E(x), \text{lower}, \text{upper})`.
    An end is in a **spurious basin** when its energy is below the median energy of the
    ``held_out`` data *and* its distance to the nearest point of ``data`` exceeds the
    ``quantile`` of the held-out points' own distances to their nearest point of ``data``:
    the energy rates it as typical data while no data point is near.

    Parameters
    ----------
    energy
        ``energy(x) -> scalar`` for one configuration.
    starts
        ``(n, *event_shape)`` starting points.
    data
        ``(m, *event_shape)`` training data (for the distances).
    held_out
        ``(k, *event_shape)`` data the energy was not trained on (for both thresholds).
    num_steps, step_size
        The descent's steps and :math:`\eta > 0`.
    lower, upper
        Bounds of the data's box, or ``None`` for no projection.
    quantile
        In :math:`(0, 1)`: how far from the data an end must be.

    Returns
    -------
    BasinProbe
    """
    num_steps = check_int("num_steps", num_steps)
    check_positive("step_size", step_size)
    if not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile!r}")
    arrays = {}
    for name, value in (("starts", starts), ("data", data), ("held_out", held_out)):
        value = jnp.asarray(value)
        if value.ndim < 1 or value.shape[0] < 1:
            raise ValueError(f"{name} must hold at least one point, got shape {value.shape}")
        check_finite_array(name, value)
        arrays[name] = value
    if lower is not None and upper is not None and np.any(np.asarray(lower) > np.asarray(upper)):
        raise ValueError(f"lower must not exceed upper, got lower={lower!r}, upper={upper!r}")
    shapes = {name: value.shape[1:] for name, value in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"starts, data and held_out must share one event shape, got {shapes}")
    grad = jax.vmap(jax.grad(energy))

    def descend(x, _):
        x = x - step_size * grad(x)
        if lower is not None or upper is not None:
            x = jnp.clip(x, lower, upper)
        return x, None

    ends, _ = jax.lax.scan(descend, arrays["starts"], None, length=num_steps)
    flat = lambda a: a.reshape(a.shape[0], -1)
    train = flat(arrays["data"])
    energies = np.asarray(jax.vmap(energy)(ends))
    nearest = np.asarray(_nearest_distance(flat(ends), train))
    energy_threshold = float(np.median(np.asarray(jax.vmap(energy)(arrays["held_out"]))))
    distance_threshold = float(
        np.quantile(np.asarray(_nearest_distance(flat(arrays["held_out"]), train)), quantile)
    )
    spurious = (energies < energy_threshold) & (nearest > distance_threshold)
    return BasinProbe(
        np.asarray(ends),
        energies,
        nearest,
        spurious,
        float(spurious.mean()),
        energy_threshold,
        distance_threshold,
    )
