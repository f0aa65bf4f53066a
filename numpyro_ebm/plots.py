"""Figures: ESS-per-second bars, trace and rank plots, energy landscapes with samples,
training curves.

Matplotlib with the non-interactive Agg canvas (figures go to files, never to a screen);
trace and rank plots are ArviZ's own (``arviz.plot_trace``, ``arviz.plot_rank``; rank plots:
Vehtari et al. 2021, Sec. 4.3).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from numpyro_ebm._arviz import az

__all__ = [
    "energy_landscape",
    "ess_per_second",
    "rank",
    "samples_grid",
    "trace",
    "training_curve",
]


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def ess_per_second(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Horizontal bars of min bulk ESS per second (and per 1000 gradient evaluations) per
    sampler, from :attr:`~numpyro_ebm.comparison.Comparison.table`, in its order (the ranking).

    Samplers that did not mix (``mixed`` false) are drawn in grey, hatched, with their
    ``reason``: their ESS is not an efficiency. A missing rate (a run below the timer's
    floor) is written out instead of drawn."""
    names = list(table.index)
    mixed = table["mixed"].to_numpy(bool) if "mixed" in table else np.ones(len(names), bool)
    reasons = table["reason"].tolist() if "reason" in table else [""] * len(names)
    fig = Figure(figsize=(11, 0.6 * len(table) + 1.8))
    left, right = fig.subplots(1, 2, sharey=True)
    for ax, column, colour, label in (
        (left, "ess_per_s", "tab:blue", "min bulk ESS per second (after compilation)"),
        (right, "ess_per_1k_grads", "tab:orange", "min bulk ESS per 1000 gradient evaluations"),
    ):
        values = table[column].to_numpy(float)
        ax.barh(
            names,
            np.nan_to_num(values),
            color=[colour if m else "lightgrey" for m in mixed],
            hatch=["" if m else "//" for m in mixed],
            edgecolor="grey",
        )
        for k, value in enumerate(values):
            if not np.isfinite(value):
                ax.text(0, k, " no rate", va="center", fontsize="small")
        ax.set_xlabel(label)
    for k, (ok, reason) in enumerate(zip(mixed, reasons, strict=True)):
        if not ok:
            right.annotate(
                f"not mixed: {reason}",
                (1.02, k),
                xycoords=("axes fraction", "data"),
                va="center",
                fontsize="small",
                color="dimgrey",
            )
    left.invert_yaxis()
    fig.suptitle("Sampler efficiency (higher is better; grey: did not mix, not ranked)")
    return _save(fig, path)


def _subset(posterior, max_chains: int):
    """The first ``max_chains`` chains, four variables and three coordinates of each."""
    subset = posterior.isel(chain=slice(0, max_chains))
    variables = [name for name in subset.data_vars if subset[name].ndim <= 3][:4]
    return subset[variables].isel(
        {d: slice(0, 3) for d in subset.dims if d not in ("chain", "draw")}
    )


def _save_arviz(axes, path: str | os.PathLike, title: str, y: float) -> Path:
    fig = np.ravel(axes)[0].get_figure()
    # above ArviZ's two-line panel titles ("x" over the coordinate), not between them
    fig.suptitle(title, y=y, fontsize="xx-large")
    path = _save(fig, path)
    import matplotlib.pyplot as plt  # ArviZ draws on pyplot figures; free them

    plt.close(fig)
    return path


def rank(posterior, path: str | os.PathLike, max_chains: int = 8, title: str = "") -> Path:
    """ArviZ rank plots of the first ``max_chains`` chains of a posterior ``xarray.Dataset``:
    uniform histograms when chains mix, skewed ones when they do not."""
    axes = az.plot_rank(_subset(posterior, max_chains), kind="bars", show=False)
    return _save_arviz(axes, path, title, y=1.06)


def trace(posterior, path: str | os.PathLike, max_chains: int = 8, title: str = "") -> Path:
    """ArviZ trace plots (``arviz.plot_trace``: per-chain densities and draws against
    iteration) of the first ``max_chains`` chains of a posterior ``xarray.Dataset``."""
    axes = az.plot_trace(_subset(posterior, max_chains), compact=False, show=False)
    return _save_arviz(axes, path, title, y=1.01)


def energy_landscape(
    energy: Callable,
    path: str | os.PathLike,
    samples: np.ndarray | None = None,
    limits: tuple[float, float] = (-4.0, 4.0),
    title: str = "",
    resolution: int = 200,
) -> Path:
    """The log density :math:`-E(x)` of a 2-D energy on a grid (shifted to a maximum of 0 and
    clipped 10 nats below it, so that minor modes stay visible), with ``samples`` (n, 2)
    scattered on top."""
    grid = np.linspace(*limits, resolution)
    xx, yy = np.meshgrid(grid, grid)
    points = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    energies = np.asarray(jax.jit(jax.vmap(energy))(points)).reshape(xx.shape)
    log_density = np.clip(energies.min() - energies, -10.0, 0.0)
    fig = Figure(figsize=(5.8, 5))
    ax = fig.subplots()
    mesh = ax.pcolormesh(xx, yy, log_density, cmap="viridis", shading="auto")
    fig.colorbar(mesh, ax=ax, label="log density (nats below the maximum)")
    if samples is not None:
        samples = np.asarray(samples).reshape(-1, 2)
        ax.scatter(samples[:, 0], samples[:, 1], s=1, c="white", alpha=0.4)
    ax.set(xlim=limits, ylim=limits, aspect="equal", title=title)
    return _save(fig, path)


def samples_grid(
    samples: dict[str, np.ndarray], path: str | os.PathLike, limits=(-4.0, 4.0)
) -> Path:
    """One scatter panel per entry of ``samples`` (name -> (n, 2) points), same axes."""
    fig = Figure(figsize=(3.2 * len(samples), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(samples), sharex=True, sharey=True))
    for ax, (name, points) in zip(axes, samples.items(), strict=True):
        points = np.asarray(points).reshape(-1, 2)
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.3)
        ax.set(xlim=limits, ylim=limits, aspect="equal", title=name)
    return _save(fig, path)


def training_curve(history: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """The loss per chunk of a :func:`~numpyro_ebm.fit` history against the step."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(history["step"], history["loss"])
    ax.set(xlabel="optimizer step", ylabel="loss (chunk mean)", title="training loss")
    return _save(fig, path)
