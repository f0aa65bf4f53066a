r"""``compare()``: several samplers on one target, same budget, one table.

Each sampler runs through :func:`~numpyro_ebm.sample` with the same key (so the same initial
positions), chains, draws and warm-up. The table reports cost and quality side by side:

* ``wall_s``: seconds of the run after compilation; ``compile_s``: the seconds JAX reports
  spending on tracing, lowering and XLA compilation during the call (``jax.monitoring``
  duration events), which ``wall_s`` excludes;
* ``grad_evals``: gradient evaluations of the log density while drawing (warm-up excluded);
* ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` over all posterior coordinates, and the
  efficiencies ``ess_per_s`` (min bulk ESS per second of ``wall_s``) and ``ess_per_1k_grads``;
* ``divergences`` and ``nonfinite_chains``;
* with a ``reference``: ``mean_error`` and ``sd_error``, the largest absolute errors of the
  posterior means and standard deviations over coordinates in units of the reference standard
  deviation (the standardized errors of posteriordb), and ``mean_z``, the largest error of a
  mean in units of its Monte Carlo standard error (about N(0, 1) for a correct sampler).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from numpyro_ebm import _arviz
from numpyro_ebm.inference import sample
from numpyro_ebm.report import MixingReport, mixing_report
from numpyro_ebm.samplers import get_sampler

__all__ = ["Comparison", "compare"]

_COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)


@contextlib.contextmanager
def _compile_clock() -> Iterator[list[float]]:
    """Seconds JAX spent tracing, lowering and compiling while the block ran.

    JAX reports each event's duration when it ends; a function jitted inside another is
    traced within its parent's trace, so the events nest. Each event is taken as the interval
    ``[end - duration, end]`` and the clock is the length of their union, which counts
    nested time once.
    """
    spans: list[tuple[float, float]] = []
    total = [0.0]

    def listener(event: str, duration: float, **kwargs) -> None:
        if event in _COMPILE_EVENTS:
            end = time.perf_counter()
            spans.append((end - duration, end))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield total
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
        covered, reach = 0.0, float("-inf")
        for start, end in sorted(spans):
            if end > reach:
                covered += end - max(start, reach)
                reach = end
        total[0] = covered


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` measured.

    Attributes
    ----------
    table
        One row per sampler (index: sampler name); columns described in
        :mod:`numpyro_ebm.compare`.
    idata
        The runs: sampler name -> the output of :func:`~numpyro_ebm.sample`.
    reports
        Sampler name -> its :class:`~numpyro_ebm.report.MixingReport`.
    """

    table: pd.DataFrame
    idata: dict
    reports: dict[str, MixingReport]

    def __str__(self) -> str:
        return self.table.to_string(float_format=lambda v: f"{v:.4g}")

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write ``<sampler>.nc`` (netCDF, loadable with ``arviz.from_netcdf``) for each run
        and ``comparison.csv``; return the paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, data in self.idata.items():
            path = directory / f"{name}.nc"
            _arviz.to_netcdf(data, path)
            paths.append(path)
        path = directory / "comparison.csv"
        self.table.to_csv(path)
        return [*paths, path]

    def plot(self, directory: str | os.PathLike, max_chains: int = 8) -> list[Path]:
        """Write ``ess_per_second.png`` (a bar chart of min bulk and tail ESS per second) and
        ``rank_<sampler>.png`` (ArviZ rank plots of the first ``max_chains`` chains);
        return the paths."""
        from numpyro_ebm import plots

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [plots.ess_per_second(self.table, directory / "ess_per_second.png")]
        for name, data in self.idata.items():
            posterior = _arviz.group(data, "posterior")
            if posterior.sizes["draw"] >= 4 and posterior.sizes["chain"] >= 2:
                paths.append(
                    plots.rank(posterior, directory / f"rank_{name}.png", max_chains, name)
                )
        return paths


def _draw_moments(reference: dict) -> dict[str, tuple[np.ndarray, ...]]:
    """(mean, sd, mcse_mean) of each variable of reference draws ``{name: (n, ...)}``."""
    moments = {}
    for name, value in reference.items():
        draws = np.asarray(value, float)
        if draws.ndim == 0 or draws.shape[0] < 2 or not np.all(np.isfinite(draws)):
            raise ValueError(f"reference draws of {name!r} must be finite, at least 2")
        sd = draws.std(0, ddof=1)
        moments[name] = (draws.mean(0), sd, sd / np.sqrt(draws.shape[0]))
    return moments


def _pick(moments: dict, var_names) -> dict[str, tuple[np.ndarray, ...]]:
    for name in var_names:
        if name not in moments:
            raise ValueError(f"reference draws have no variable {name!r}")
    return {name: moments[name] for name in var_names}


def _run_moments(run, var_names) -> dict[str, tuple[np.ndarray, ...]]:
    """(mean, sd, mcse_mean) per variable of a run, from its mixing report."""
    table = mixing_report(run, var_names=var_names, display=False).table
    return {
        name: tuple(
            table.loc[_rows(table, name), c].to_numpy() for c in ("mean", "sd", "mcse_mean")
        )
        for name in var_names
    }


def _rows(table: pd.DataFrame, name: str) -> list[str]:
    return [row for row in table.index if row == name or row.startswith(name + "[")]


def _accuracy(table: pd.DataFrame, reference: dict) -> dict[str, float]:
    mean_error = sd_error = mean_z = 0.0
    for name, (ref_mean, ref_sd, ref_mcse) in reference.items():
        rows = table.loc[_rows(table, name)]
        mean, sd, mcse = (rows[c].to_numpy() for c in ("mean", "sd", "mcse_mean"))
        if mean.shape != np.ravel(ref_mean).shape:
            raise ValueError(
                f"variable {name!r} has {mean.size} coordinates but the reference "
                f"{np.size(ref_mean)}"
            )
        delta = np.abs(mean - np.ravel(ref_mean))
        mean_error = max(mean_error, float(np.max(delta / np.ravel(ref_sd))))
        sd_error = max(sd_error, float(np.max(np.abs(sd - np.ravel(ref_sd)) / np.ravel(ref_sd))))
        mean_z = max(mean_z, float(np.max(delta / np.hypot(mcse, np.ravel(ref_mcse)))))
    return {"mean_error": mean_error, "sd_error": sd_error, "mean_z": mean_z}


def compare(
    target: Callable,
    samplers: Sequence[str] = ("nuts", "hmc", "mala", "parallel_tempering"),
    *,
    key: jax.Array,
    reference: str | dict | object | None = None,
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    sampler_options: dict[str, dict] | None = None,
    var_names: Sequence[str] | None = None,
    progress: bool = False,
    **sample_kwargs,
) -> Comparison:
    r"""Run several samplers on the same target with the same budget and tabulate them.

    Parameters
    ----------
    target
        An energy or a NumPyro model, as for :func:`~numpyro_ebm.sample`.
    samplers
        Registered sampler names; each is run once.
    key
        PRNG key, the same for every sampler (same initial positions).
    reference
        Ground truth for the accuracy columns: a sampler name (its run is reused when it is
        among ``samplers``, else run with the same budget and kept in ``idata``), the output of
        :func:`~numpyro_ebm.sample`, or reference draws ``{var: array (n, ...)}`` (e.g. a
        posteriordb reference posterior).
    num_chains, num_samples, num_warmup
        The budget, the same for every sampler.
    sampler_options
        Per-sampler options, e.g. ``{"mala": {"step_size": 0.1}}``.
    var_names
        Posterior variables to diagnose; default all.
    **sample_kwargs
        Passed to every :func:`~numpyro_ebm.sample` call (``event_shape``, ``init_position``,
        ``model_args``, ``model_kwargs``, ...).

    Returns
    -------
    Comparison
        ``table`` (a ``pandas.DataFrame``, one row per sampler), ``idata`` and ``reports``.
    """
    samplers = list(samplers)
    if not samplers:
        raise ValueError("samplers must name at least one sampler")
    if len(set(samplers)) != len(samplers):
        raise ValueError(f"samplers has duplicates: {samplers}")
    for name in samplers:
        get_sampler(name)  # unknown names fail before anything runs
    options = dict(sampler_options or {})
    stray = sorted(
        set(options) - set(samplers) - {reference if isinstance(reference, str) else None}
    )
    if stray:
        raise ValueError(f"sampler_options for {stray}, which are not in samplers {samplers}")
    to_run = samplers + (
        [reference] if isinstance(reference, str) and reference not in samplers else []
    )
    if isinstance(reference, str):
        get_sampler(reference)
    # Reference draws are checked before anything runs.
    drawn = _draw_moments(reference) if isinstance(reference, dict) else None
    if drawn is not None and var_names is not None:
        _pick(drawn, var_names)

    runs, rows, reports = {}, {}, {}
    for name in to_run:
        with _compile_clock() as compile_s:
            start = time.perf_counter()
            data = sample(
                target,
                name,
                key=key,
                num_chains=num_chains,
                num_samples=num_samples,
                num_warmup=num_warmup,
                progress=progress,
                **sample_kwargs,
                **options.get(name, {}),
            )
            wall = time.perf_counter() - start
        runs[name] = data
        report = mixing_report(data, var_names=var_names, display=False)
        reports[name] = report
        stats = _arviz.group(data, "sample_stats")
        run_s = max(wall - compile_s[0], 1e-9)
        grads = int(np.asarray(stats["num_grad_evals"].values).sum())
        min_ess = float(report.table["ess_bulk"].min())
        rows[name] = {
            "wall_s": run_s,
            "compile_s": compile_s[0],
            "grad_evals": grads,
            "max_rhat": float(report.table["rhat"].max()),
            "min_ess_bulk": min_ess,
            "min_ess_tail": float(report.table["ess_tail"].min()),
            "ess_per_s": min_ess / run_s,
            "ess_per_1k_grads": 1000.0 * min_ess / grads if grads else float("nan"),
            "divergences": report.divergences,
            "nonfinite_chains": report.nonfinite_chains,
        }

    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "sampler"
    if reference is not None:
        variables = var_names or list(_arviz.group(runs[samplers[0]], "posterior").data_vars)
        if drawn is not None:
            moments = _pick(drawn, variables)
        else:
            run = runs[reference] if isinstance(reference, str) else reference
            moments = _run_moments(run, variables)
        accuracy = {name: _accuracy(reports[name].table, moments) for name in to_run}
        table = table.join(pd.DataFrame.from_dict(accuracy, orient="index"))
    return Comparison(table.loc[to_run], runs, reports)
