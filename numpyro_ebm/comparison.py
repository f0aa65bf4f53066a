r"""``compare()``: several samplers on one target, same budget, one table that tells the truth.

Each sampler runs through :func:`~numpyro_ebm.sample` with the same key (so the same initial
positions), chains, draws and warm-up. The table reports cost and quality side by side:

* ``wall_s``: seconds of the run after compilation; ``compile_s``: the seconds JAX reports
  spending on tracing, lowering and XLA compilation during the call (``jax.monitoring``
  duration events), which ``wall_s`` excludes;
* ``grad_evals``: gradient evaluations of the log density while drawing (warm-up excluded);
* ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` over all posterior coordinates, and the
  efficiencies ``ess_per_s`` (min bulk ESS per second of ``wall_s``) and ``ess_per_1k_grads``;
  a ``wall_s`` below the timer's floor (:func:`timer_floor`) is not a measurement and gives
  no rate (NaN);
* ``divergences``, ``nonfinite_chains`` and ``min_bfmi`` (the smallest E-BFMI of a chain,
  Betancourt 2016, when the run records the Hamiltonian ``sample_stats.energy``);
* ``mixed`` and ``reason``: whether the chains mixed (max R-hat <= ``rhat_threshold``, no
  divergence, no non-finite chain, E-BFMI >= 0.3, no failed health check of
  :func:`~numpyro_ebm.sample` (frozen chains, an exploded step size, draws running off an
  improper energy), a passed bias check, and the caller's own ``mixing_rule``), and why
  not, or why a figure is missing. **Only mixed samplers are ranked**: they come first, by
  ``ess_per_s``; the others follow in the order given;
* with a ``reference`` (an exact, long run on the *same* energy): ``mean_error``,
  ``sd_error`` (the largest absolute errors of the means and standard deviations over
  coordinates, in reference standard deviations: the standardized errors of posteriordb),
  ``mean_z`` (the largest error of a mean in units of its Monte Carlo standard error, about
  N(0, 1) for a correct sampler), ``energy_distance`` (Székely & Rizzo 2013, on coordinates
  standardized by the reference) and ``sampler_error``, the larger of ``mean_error`` and
  ``sd_error``;
* with ``data`` (draws of the data distribution): ``data_error``, the same standardized error
  against the data, and ``model_error``, the reference's (one number for the table): the
  error of the *energy*, which no sampler can remove. ``str(comparison)`` says which of the
  two dominates;
* with ``check_bias=True``, for samplers whose draws are independent sweeps (annealed
  Langevin, tempered SMC: R-hat compares sweeps with sweeps and cannot see a bias they share):
  ``bias_check``, the largest standardized difference of means between the run and a rerun
  with half the step size and twice the steps, and ``bias_z``, the same in Monte Carlo
  standard errors (about N(0, 1) when the discretization bias is negligible).

Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte
Carlo. arXiv:1604.00695.
Székely, G. J. and Rizzo, M. L. (2013). Energy statistics: a class of statistics based on
distances. *Journal of Statistical Planning and Inference*, 143(8), 1249-1272.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from numpyro_ebm import _arviz, metrics
from numpyro_ebm._checks import check_int, check_output_path, check_positive
from numpyro_ebm.inference import sample
from numpyro_ebm.report import MixingReport, mixing_report
from numpyro_ebm.samplers import Sampler, get_sampler
from numpyro_ebm.targets import Target

__all__ = ["Comparison", "compare", "timer_floor"]

#: Below this E-BFMI a chain explores the energy levels poorly (Betancourt 2016).
MIN_BFMI = 0.3
#: Draws per side for the energy distance (a V-statistic, quadratic in the draws).
ENERGY_DISTANCE_DRAWS = 1000

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
        :mod:`numpyro_ebm.comparison`.
    idata
        The runs: sampler name -> the output of :func:`~numpyro_ebm.sample`.
    reports
        Sampler name -> its :class:`~numpyro_ebm.report.MixingReport`.
    notes
        Sentences on what the table means: which samplers were not ranked and why, whether
        the model's or the samplers' error dominates, what could not be checked.
    """

    table: pd.DataFrame
    idata: dict
    reports: dict[str, MixingReport]
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        text = self.table.to_string(float_format=lambda v: f"{v:.4g}")
        return "\n".join([text, *(f"* {note}" for note in self.notes)])

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write ``<sampler>.nc`` (netCDF, loadable with ``arviz.from_netcdf``) for each run
        and ``comparison.csv``; return the paths. A ``directory`` that cannot be a folder
        (it is a file, or lies under one) is refused with a ``ValueError`` naming it."""
        directory = check_output_path("directory", directory, folder=True)
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
        """Write ``ess_per_second.png`` (bars of min bulk ESS per second and per 1000
        gradient evaluations; samplers that did not mix in grey, with the reason),
        ``trace_<sampler>.png`` (ArviZ trace plots) and ``rank_<sampler>.png`` (ArviZ rank
        plots) of the first ``max_chains`` chains; return the paths."""
        from numpyro_ebm import plots

        directory = check_output_path("directory", directory, folder=True)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [plots.ess_per_second(self.table, directory / "ess_per_second.png")]
        for name, data in self.idata.items():
            posterior = _arviz.group(data, "posterior")
            label = _file_label(name)
            paths.append(plots.trace(posterior, directory / f"trace_{label}.png", max_chains, name))
            if posterior.sizes["draw"] >= 4 and posterior.sizes["chain"] >= 2:
                paths.append(
                    plots.rank(posterior, directory / f"rank_{label}.png", max_chains, name)
                )
        return paths


def _file_label(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)


def timer_floor(minimum_s: float = 1e-3) -> float:
    """The shortest duration ``compare`` turns into a rate: ``minimum_s`` or 100 times the
    resolution of ``time.perf_counter`` (``time.get_clock_info``), whichever is larger. A
    shorter ``wall_s`` is within the timer's (and the scheduler's) noise: its rate would be
    an artifact."""
    check_positive("minimum_s", minimum_s)
    return max(float(minimum_s), 100.0 * time.get_clock_info("perf_counter").resolution)


def _draw_moments(draws: dict, label: str) -> dict[str, tuple[np.ndarray, ...]]:
    """(mean, sd, mcse_mean) of each variable of independent draws ``{name: (n, ...)}``."""
    moments = {}
    for name, value in draws.items():
        values = np.asarray(value, float)
        if values.ndim == 0 or values.shape[0] < 2 or not np.all(np.isfinite(values)):
            raise ValueError(f"{label} draws of {name!r} must be finite, at least 2")
        sd = values.std(0, ddof=1)
        moments[name] = (values.mean(0), sd, sd / np.sqrt(values.shape[0]))
    return moments


def _pick(moments: dict, var_names, label: str) -> dict[str, tuple[np.ndarray, ...]]:
    for name in var_names:
        if name not in moments:
            raise ValueError(f"{label} draws have no variable {name!r}")
    return {name: moments[name] for name in var_names}


def _rows(table: pd.DataFrame, name: str) -> list[str]:
    return [row for row in table.index if row == name or row.startswith(name + "[")]


def _report_moments(report: MixingReport, var_names) -> dict[str, tuple[np.ndarray, ...]]:
    """(mean, sd, mcse_mean) per variable of a run, from its mixing report's table."""
    table = report.table
    return {
        name: tuple(
            table.loc[_rows(table, name), c].to_numpy() for c in ("mean", "sd", "mcse_mean")
        )
        for name in var_names
    }


def _errors(estimate: dict, truth: dict, label: str = "reference") -> dict[str, float]:
    """The largest standardized errors of ``estimate``'s means and sds against ``truth``'s
    (both ``{name: (mean, sd, mcse_mean)}``, ``truth`` named ``label`` in errors), in
    ``truth`` sds, and of the means in Monte Carlo standard errors of their difference."""
    mean_error = sd_error = mean_z = 0.0
    for name, (true_mean, true_sd, true_mcse) in truth.items():
        mean, sd, mcse = (np.ravel(v) for v in estimate[name])
        true_mean, true_sd, true_mcse = (np.ravel(v) for v in (true_mean, true_sd, true_mcse))
        if mean.shape != true_mean.shape:
            raise ValueError(
                f"variable {name!r} has {mean.size} coordinates but the {label} {true_mean.size}"
            )
        delta = np.abs(mean - true_mean)
        mean_error = max(mean_error, float(np.max(delta / true_sd)))
        sd_error = max(sd_error, float(np.max(np.abs(sd - true_sd) / true_sd)))
        mean_z = max(mean_z, float(np.max(delta / np.hypot(mcse, true_mcse))))
    return {"mean_error": mean_error, "sd_error": sd_error, "mean_z": mean_z}


def _flat_draws(source, var_names) -> np.ndarray:
    """Draws as a matrix ``(n, d)``: from ``{name: (n, ...)}`` or a run's posterior."""
    if isinstance(source, dict):
        columns = [np.asarray(source[name], float) for name in var_names]
    else:
        posterior = _arviz.group(source, "posterior")
        columns = [
            np.asarray(posterior[name].values, float).reshape(-1, *posterior[name].shape[2:])
            for name in var_names
        ]
    return np.concatenate([c.reshape(c.shape[0], -1) for c in columns], axis=1)


def _subsample(key: jax.Array, draws: np.ndarray) -> jax.Array:
    if len(draws) <= ENERGY_DISTANCE_DRAWS:
        return jnp.asarray(draws)
    index = jax.random.choice(key, len(draws), (ENERGY_DISTANCE_DRAWS,), replace=False)
    return jnp.asarray(draws)[index]


def _energy_distance(key: jax.Array, draws: np.ndarray, truth: np.ndarray) -> float:
    """Energy distance between at most :data:`ENERGY_DISTANCE_DRAWS` draws of each, on
    coordinates standardized by ``truth``'s standard deviations; NaN for a run with
    non-finite draws (flagged by its ``nonfinite_chains``)."""
    if not np.all(np.isfinite(draws)):
        return float("nan")
    scale = truth.std(0, ddof=1)
    scale = np.where(scale > 0, scale, 1.0)
    # one key for both: a run compared with itself is at distance 0
    return float(
        metrics.energy_distance(_subsample(key, draws / scale), _subsample(key, truth / scale))
    )


def _timed_sample(target, sampler, *, key, budget, progress, **sample_kwargs):
    """One run: ``(data, seconds after compilation, compilation seconds)``."""
    with _compile_clock() as compile_s:
        start = time.perf_counter()
        data = sample(target, sampler, key=key, progress=progress, **budget, **sample_kwargs)
        wall = time.perf_counter() - start
    return data, max(wall - compile_s[0], 0.0), compile_s[0]


def _row(report: MixingReport, data, run_s: float, compile_s: float, floor: float) -> dict:
    stats = _arviz.group(data, "sample_stats")
    grads = int(np.asarray(stats["num_grad_evals"].values).sum())
    min_ess = float(report.table["ess_bulk"].min())
    return {
        "wall_s": run_s,
        "compile_s": compile_s,
        "grad_evals": grads,
        "max_rhat": float(report.table["rhat"].max()),
        "min_ess_bulk": min_ess,
        "min_ess_tail": float(report.table["ess_tail"].min()),
        "ess_per_s": min_ess / run_s if run_s >= floor else float("nan"),
        "ess_per_1k_grads": 1000.0 * min_ess / grads if grads else float("nan"),
        "divergences": report.divergences,
        "nonfinite_chains": report.nonfinite_chains,
        "min_bfmi": min(report.bfmi) if report.bfmi else float("nan"),
    }


def _mixing_reasons(row: dict, report: MixingReport, rhat_threshold: float, rule) -> list[str]:
    """Why a run did not mix; empty when it did."""
    reasons = []
    if not np.isfinite(row["max_rhat"]):
        reasons.append("R-hat undefined (fewer than 2 chains of 4 draws, or NaN draws)")
    elif row["max_rhat"] > rhat_threshold:
        reasons.append(f"R-hat {_past(row['max_rhat'], rhat_threshold)} > {rhat_threshold}")
    if row["divergences"]:
        reasons.append(f"{row['divergences']} divergent transition(s)")
    if row["nonfinite_chains"]:
        reasons.append(f"{row['nonfinite_chains']} non-finite chain(s)")
    if row["min_bfmi"] < MIN_BFMI:
        reasons.append(f"E-BFMI {_past(row['min_bfmi'], MIN_BFMI)} < {MIN_BFMI}")
    reasons += list(report.health)  # frozen chains, an exploded step, an improper target
    if rule is not None and (own := rule(report)):
        reasons.append(str(own))
    return reasons


def _past(value: float, threshold: float) -> str:
    """``value`` with 3 significant digits, or as many more as it takes to differ from
    ``threshold`` when printed (R-hat 1.0116 against 1.01 reads 1.012, not 1.01)."""
    for digits in range(3, 10):
        text = f"{value:.{digits}g}"
        if float(text) != float(threshold):
            return text
    return repr(value)


def _largest(errors: dict) -> float:
    return max(errors["mean_error"], errors["sd_error"])


def _timing_reason(run_s: float, floor: float) -> list[str]:
    if run_s >= floor:
        return []
    return [f"no rate: {run_s:.2g} s after compilation is below the timer floor {floor:.2g} s"]


def _bias(coarse: MixingReport, fine: MixingReport) -> dict[str, float]:
    """Standardized differences of the means and sds of two runs (in the finer run's sds),
    and the same in Monte Carlo standard errors of the difference."""
    a, b = coarse.table, fine.table
    check = np.maximum(np.abs(a["mean"] - b["mean"]), np.abs(a["sd"] - b["sd"])) / b["sd"]
    z_mean = np.abs(a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    z_sd = np.abs(a["sd"] - b["sd"]) / np.hypot(a["mcse_sd"], b["mcse_sd"])
    return {"bias_check": float(check.max()), "bias_z": float(np.maximum(z_mean, z_sd).max())}


def _with_errors(table, key, runs, reports, variables, truth, source, name) -> pd.DataFrame:
    """``table`` with each run's errors against ``truth`` (moments) and its energy distance to
    the draws of ``source``; ``name`` the column of the larger standardized error."""
    truth_draws = _flat_draws(source, variables)
    accuracy = {
        label: _errors(
            _report_moments(reports[label], variables),
            truth,
            "data" if name == "data_error" else "reference",
        )
        | {
            "energy_distance": _energy_distance(
                jax.random.fold_in(key, 2), _flat_draws(runs[label], variables), truth_draws
            )
        }
        for label in table.index
    }
    table = table.join(pd.DataFrame.from_dict(accuracy, orient="index"))
    table[name] = table[["mean_error", "sd_error"]].max(axis=1)
    return table


def _posterior_shapes(target, key, sample_kwargs: dict) -> dict[str, tuple] | None:
    """The shape of one draw of each posterior variable that :func:`sample` will report, found
    without sampling (``None`` where it cannot be: a pytree configuration of an energy, a
    model that subsamples its data)."""
    from numpyro_ebm.model import SubsampledModelError, logdensity_from_model

    if isinstance(target, Target):
        if target.postprocess_fn is None:
            leaves = jax.tree.leaves(target.initial_position)
            return {target.var_name: leaves[0].shape[1:]} if len(leaves) == 1 else None
        first = jax.tree.map(lambda x: x[0], target.initial_position)
        return _shapes(jax.eval_shape(target.postprocess_fn, first))
    var_name = sample_kwargs.get("var_name", "x")
    if sample_kwargs.get("event_shape") is not None:
        return {var_name: tuple(sample_kwargs["event_shape"])}
    init_position = sample_kwargs.get("init_position")
    if init_position is not None:
        return {var_name: np.shape(init_position)[1:]} if hasattr(init_position, "shape") else None
    if not callable(target):
        return None  # sample() says why
    try:
        density = logdensity_from_model(
            target,
            *sample_kwargs.get("model_args", ()),
            key=key,
            **(sample_kwargs.get("model_kwargs") or {}),
        )
    except SubsampledModelError:
        return None
    return _shapes(jax.eval_shape(density.postprocess_fn, density.initial_position))


def _shapes(values: dict) -> dict[str, tuple]:
    return {name: tuple(value.shape) for name, value in values.items()}


def _check_draws(moments: dict, shapes: dict | None, var_names, label: str) -> None:
    """Refuse ``label`` draws that miss a variable to be compared or whose draws have another
    shape than the target's (``shapes``, when known)."""
    names = var_names if var_names is not None else list(shapes or ())
    _pick(moments, names, label)
    for name in names:
        drawn = np.shape(moments[name][0])
        if shapes is not None and name in shapes and drawn != shapes[name]:
            raise ValueError(
                f"{label} draws of {name!r} have shape {drawn} each, but the target's {name!r} "
                f"has shape {shapes[name]}: give {label} draws of the same variable"
            )


def _budgets(budgets, names) -> dict[str, dict]:
    """``budgets`` checked: sampler names -> ``{"num_samples", "num_warmup"}`` subsets."""
    if budgets is None:
        return {}
    if not isinstance(budgets, dict):
        raise TypeError(
            f"budgets must be a dict {{sampler: {{num_samples, ...}}}}, got {budgets!r}"
        )
    for name, own in budgets.items():
        if name not in names:
            raise ValueError(f"budgets for {name!r}, which is not in samplers {names}")
        if not isinstance(own, dict) or not set(own) <= {"num_samples", "num_warmup"}:
            raise ValueError(
                f"budgets[{name!r}] may set num_samples and num_warmup only, got {own!r}"
            )
        for field_name, value in own.items():
            check_int(field_name, value, minimum=1 if field_name == "num_samples" else 0)
    return budgets


def _against_data(against_data, names, data) -> tuple[str, ...]:
    if isinstance(against_data, str):
        raise TypeError(
            f"against_data must be a sequence of names, got the string {against_data!r}"
        )
    against = tuple(against_data)
    stray = sorted(set(against) - set(names))
    if stray:
        raise ValueError(f"against_data names {stray}, which are not in samplers {names}")
    if against and data is None:
        raise ValueError(f"against_data={list(against)} needs data= (draws of the data)")
    return against


def _judged_by_data(table, key, runs, reports, variables, observed, data, against):
    """``table`` with the accuracy columns of the ``against`` rows taken against the data."""
    truth = _pick(observed, variables, "data")
    truth_draws = _flat_draws(data, variables)
    table = table.copy()
    for label in against:
        errors = _errors(_report_moments(reports[label], variables), truth, "data")
        errors["energy_distance"] = _energy_distance(
            jax.random.fold_in(key, 2), _flat_draws(runs[label], variables), truth_draws
        )
        for column, value in errors.items():
            table.loc[label, column] = value
        if "sampler_error" in table:
            table.loc[label, "sampler_error"] = float("nan")
    return table


def _ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Mixed rows first, by ESS per second (no rate last); the others after, in order."""
    mixed = table[table["mixed"]].sort_values(
        "ess_per_s", ascending=False, na_position="last", kind="stable"
    )
    return pd.concat([mixed, table[~table["mixed"]]])


def _pool(others: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs whose sampler error speaks for the samplers: those that mixed if some did
    (said, unless all did), else all of them (said too)."""
    mixed = others["mixed"].to_numpy(bool)
    if mixed.all():
        return others, ""
    if mixed.any():
        return others[mixed], ", among those that mixed"
    return others, ", none of which mixed"


def _attribution(table: pd.DataFrame, model: dict, reference_label: str | None) -> str:
    """One sentence: does the model's error or the samplers' dominate?"""
    others = table.drop(index=[reference_label], errors="ignore")
    others = others[others["sampler_error"].notna()]  # not those judged against the data
    pool, among = _pool(others)
    worst = pool["sampler_error"].idxmax()
    sampler, error = float(pool.loc[worst, "sampler_error"]), float(model["error"])
    within = "within" if model["mean_z"] < 3 else "far beyond" if model["mean_z"] > 10 else "beyond"
    said = (
        f"model error {error:.3g} sd (the reference against the data; means {model['mean_z']:.3g}"
        f" MCSE apart, {within} Monte Carlo error) vs sampler error up to {sampler:.3g} sd"
        f" ({worst}{among})"
    )
    if error > 2 * sampler:
        return (
            f"The model's error dominates: {said}. A better sampler will not bring the draws "
            "closer to the data; the energy needs work."
        )
    if sampler > 2 * error:
        return (
            f"The samplers' error dominates: {said}. The energy fits the data better than "
            "the samplers show; sample longer or with a sampler that mixes."
        )
    return f"Model and sampler errors are comparable: {said}."


def _value(item, sampler_options: dict) -> Sampler:
    """A sampler value from a value, a name or a ``(name, options)`` pair (with the
    ``sampler_options`` given for that name)."""
    if isinstance(item, Sampler):
        return item
    if isinstance(item, str):
        return get_sampler(item, **sampler_options.get(item, {}))
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
        name = str(item[0])
        return get_sampler(name, **(sampler_options.get(name, {}) | item[1]))
    raise TypeError(
        f"samplers must hold sampler values, names or (name, options) pairs, got {item!r}"
    )


def _labels(values: list[Sampler]) -> list[str]:
    """One row label per sampler: its name, or for several settings of one sampler its name
    with the options in which they differ, e.g. ``mala(step_size=0.05)``."""
    if len(set(values)) != len(values):
        raise ValueError(f"samplers has duplicates: {[repr(value) for value in values]}")
    labels = []
    for value in values:
        same = [other for other in values if other.name == value.name]
        differ = [
            f"{option}={setting!r}"
            for option, setting in value.options.items()
            if any(repr(other.options[option]) != repr(setting) for other in same)
        ]
        labels.append(f"{value.name}({', '.join(differ)})" if len(same) > 1 else value.name)
    return labels


def _parse(samplers, sampler_options, reference) -> tuple[list[Sampler], Sampler | None]:
    """The sampler values to run and the one of a reference run (``None`` without one);
    unknown names and options fail here, before anything runs."""
    if isinstance(samplers, str | Sampler):
        raise TypeError(
            f"samplers must be a sequence of samplers, got the single {samplers!r}: write "
            f"[{samplers!r}]"
        )
    options = dict(sampler_options or {})
    values = [_value(item, options) for item in samplers]
    names = [value.name for value in values]
    if not values:
        raise ValueError("samplers must name at least one sampler")
    run = None
    if isinstance(reference, str | Sampler) or (
        isinstance(reference, tuple) and len(reference) == 2 and isinstance(reference[1], dict)
    ):
        run = _value(reference, options)
    stray = sorted(set(options) - set(names) - {run.name if run else None})
    if stray:
        raise ValueError(f"sampler_options for {stray}, which are not in samplers {names}")
    return values, run


def compare(
    target: Callable,
    samplers: Sequence[str | tuple[str, dict]] = ("nuts", "hmc", "mala", "parallel_tempering"),
    *,
    key: jax.Array,
    reference: str | tuple[str, dict] | dict | object | None = None,
    data: dict | None = None,
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    reference_samples: int | None = None,
    sampler_options: dict[str, dict] | None = None,
    var_names: Sequence[str] | None = None,
    rhat_threshold: float = 1.01,
    mixing_rule: Callable[[MixingReport], str | None] | None = None,
    budgets: dict[str, dict] | None = None,
    against_data: Sequence[str] = (),
    check_bias: bool = False,
    z_threshold: float = 4.0,
    min_time_s: float = 1e-3,
    progress: bool = False,
    **sample_kwargs,
) -> Comparison:
    r"""Run several samplers on the same target with the same budget and tabulate them.

    Only samplers whose chains mixed are ranked (``mixed``, ``reason``); timings below
    :func:`timer_floor` give no rate; with a ``reference`` and ``data`` the samplers' error
    (against an exact run on the same energy) and the model's (that run against the data) are
    reported apart. The columns are described in :mod:`numpyro_ebm.comparison`.

    Parameters
    ----------
    target
        An energy or a NumPyro model, as for :func:`~numpyro_ebm.sample`.
    samplers
        A sequence of sampler values, registered names or ``(name, options)`` pairs; each is
        run once, in a row labelled by its name. Several settings of one sampler
        (``["mala", ne.samplers.mala(step_size=0.05)]``) are labelled by the options in which
        they differ (``mala(step_size=0.2)``, ``mala(step_size=0.05)``); ``budgets``,
        ``sampler_options`` and ``against_data`` name samplers, and so apply to each setting.
    key
        PRNG key, the same for every sampler (same initial positions).
    reference
        An exact sampler on the *same* target, for the accuracy (sampler error) columns: a
        sampler name or ``(name, options)`` pair (run with ``reference_samples`` draws; its run
        is reused when it is among ``samplers`` with the same options and budget, else it gets
        its own row), the output of :func:`~numpyro_ebm.sample`, or draws ``{var: array
        (n, ...)}`` (e.g. a posteriordb reference posterior). Replica exchange or tempered SMC
        run longer suit a multimodal energy. Draws are checked against the target's variables
        and shapes before anything runs.
    data
        Draws of the data distribution ``{var: array (n, ...)}``: the errors against it are
        ``data_error`` per sampler and, with a ``reference``, ``model_error``. Checked as the
        reference's draws are.
    num_chains, num_samples, num_warmup
        The budget, the same for every sampler unless ``budgets`` says otherwise.
    reference_samples
        Draws per chain of a reference run; default ``num_samples``.
    sampler_options
        Per-sampler options, e.g. ``{"mala": {"step_size": 0.1}}`` (merged under the options
        of a ``(name, options)`` pair).
    var_names
        Posterior variables to diagnose; default all.
    rhat_threshold
        A run mixed only if its largest R-hat is at most this (1.01, Vehtari et al. 2021); at
        least 1, which chains that agree reach.
    mixing_rule
        An extra rule: ``mixing_rule(report) -> reason`` with the run's
        :class:`~numpyro_ebm.report.MixingReport`; a non-empty reason marks it not mixed.
    budgets
        Per-sampler ``num_samples`` and ``num_warmup``, e.g. ``{"annealed_langevin":
        {"num_samples": 400, "num_warmup": 0}}``: a sampler whose draws are independent sweeps
        needs no warm-up (each sweep forgets its start) and fewer draws than a Markov chain
        for the same effective sample size. ``ess_per_s`` and ``ess_per_1k_grads`` stay
        comparable, being rates.
    against_data
        Samplers that do not target the energy itself, judged against ``data`` instead of the
        reference: annealed Langevin over a noise-conditional network's ladder draws the
        data distribution as the whole ladder models it, not :math:`e^{-E(x, \sigma_L)}`,
        so an exact run of the energy at :math:`\sigma_L` is no truth for it. Their
        ``mean_error``, ``sd_error``, ``mean_z`` and ``energy_distance`` are against the data
        (a ``mean_z`` above ``z_threshold`` marks them not mixed), their ``sampler_error`` is
        NaN and the model-or-sampler attribution leaves them out. Needs ``data``.
    check_bias
        Rerun each independent-sweep sampler (one whose value has ``refine``) with half the
        step and twice the steps, and compare (``bias_check``, ``bias_z``); doubles their
        cost. When no sampler is one, a note says that none was checked.
    z_threshold
        A run whose means or sds differ from its bias-check rerun (``bias_z``), or whose means
        differ from a ``reference`` (``mean_z``), by more than this many Monte Carlo standard
        errors is marked not mixed: chains that agree with each other (R-hat near 1) can
        still all be wrong, e.g. all stuck in one mode.
    min_time_s
        The floor of :func:`timer_floor`: shorter runs get no ESS per second.
    **sample_kwargs
        Passed to every :func:`~numpyro_ebm.sample` call (``event_shape``, ``init_position``,
        ``model_args``, ``model_kwargs``, ...).

    Returns
    -------
    Comparison
        ``table`` (a ``pandas.DataFrame``, one row per run, mixed ones first), ``idata``,
        ``reports`` and ``notes``.
    """
    specs, reference_run = _parse(samplers, sampler_options, reference)
    labels = _labels(specs)
    check_positive("rhat_threshold", rhat_threshold)
    if rhat_threshold < 1:
        raise ValueError(
            "rhat_threshold must be at least 1 (R-hat is about 1 for chains that agree, above "
            f"when they do not), got {rhat_threshold!r}"
        )
    check_positive("z_threshold", z_threshold)
    if mixing_rule is not None and not callable(mixing_rule):
        raise TypeError(f"mixing_rule must be callable, got {mixing_rule!r}")
    if not isinstance(check_bias, bool):
        raise TypeError(f"check_bias must be True or False, got {check_bias!r}")
    if reference_samples is not None:
        check_int("reference_samples", reference_samples, minimum=4)
    floor = timer_floor(min_time_s)
    # Draws are checked before anything runs.
    if data is not None and not isinstance(data, dict):
        raise TypeError(f"data must be draws {{var: array (n, ...)}}, got {type(data)}")
    if isinstance(reference, np.ndarray | jax.Array):
        raise TypeError(
            "reference must be a sampler, a sample() result or draws {var: array (n, ...)}, got "
            f"an array of shape {reference.shape}: write {{var_name: draws}}"
        )
    drawn = _draw_moments(reference, "reference") if isinstance(reference, dict) else None
    observed = _draw_moments(data, "data") if data is not None else None
    if drawn is not None or observed is not None:
        shapes = _posterior_shapes(target, key, sample_kwargs)
        for moments, label in ((drawn, "reference"), (observed, "data")):
            if moments is not None:
                _check_draws(moments, shapes, var_names, label)

    budget = {"num_chains": num_chains, "num_samples": num_samples, "num_warmup": num_warmup}
    names = [value.name for value in specs]
    own = _budgets(budgets, names)
    against_names = _against_data(against_data, names, data)
    against = [label for label, name in zip(labels, names, strict=True) if name in against_names]
    to_run = [
        (label, value, budget | own.get(value.name, {}))
        for label, value in zip(labels, specs, strict=True)
    ]
    reference_label = None
    if reference_run is not None:
        name = reference_run.name
        reused = reference_run in specs and reference_samples in (None, num_samples)
        if reused:
            reference_label = labels[specs.index(reference_run)]
        else:
            reference_label = name if name not in names else f"{name}_reference"
        if not reused:
            longer = budget | {"num_samples": reference_samples or num_samples}
            to_run.append((reference_label, reference_run, longer))

    runs, rows, reports, reasons, notes = {}, {}, {}, {}, []
    if check_bias and not any(sampler.refine for _, sampler, _ in to_run):
        notes.append(
            "check_bias=True checked no sampler: it reruns samplers whose draws are independent "
            "sweeps (annealed_langevin, tempered_smc) with half the step, and none of these "
            "is one; Markov chains are judged by R-hat and against a reference"
        )
    for label, sampler, size in to_run:
        run, run_s, compile_s = _timed_sample(
            target, sampler, key=key, budget=size, progress=progress, **sample_kwargs
        )
        runs[label] = run
        reports[label] = mixing_report(run, var_names=var_names, display=False)
        rows[label] = _row(reports[label], run, run_s, compile_s, floor)
        reasons[label] = _mixing_reasons(rows[label], reports[label], rhat_threshold, mixing_rule)
        if sampler.refine is not None and check_bias:
            refined, _, _ = _timed_sample(
                target,
                sampler.refine(sampler),
                key=jax.random.fold_in(key, 1),
                budget=size,
                progress=progress,
                **sample_kwargs,
            )
            fine = mixing_report(refined, var_names=var_names, display=False)
            rows[label] |= _bias(reports[label], fine)
            if rows[label]["bias_z"] > z_threshold:
                reasons[label].append(
                    f"half the step moves a mean or sd by "
                    f"{_past(rows[label]['bias_z'], z_threshold)} MCSE (> {z_threshold}): "
                    "discretization bias"
                )
        elif sampler.refine is not None:
            notes.append(
                f"{label} draws independent sweeps: R-hat compares sweeps with sweeps and "
                "cannot see a bias they share; check_bias=True measures it"
            )

    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "sampler"
    variables = var_names or list(_arviz.group(runs[labels[0]], "posterior").data_vars)
    if reference is not None:
        if drawn is not None:
            reference_truth = _pick(drawn, variables, "reference")
        else:
            reference_report = (
                reports[reference_label]
                if reference_run
                else mixing_report(reference, var_names=variables, display=False)
            )
            reference_truth = _report_moments(reference_report, variables)
        source = runs[reference_label] if reference_run else reference
        table = _with_errors(
            table, key, runs, reports, variables, reference_truth, source, "sampler_error"
        )
        for label in table.index.drop([reference_label, *against], errors="ignore"):
            z = table.loc[label, "mean_z"]
            if z > z_threshold:
                reasons[label].append(f"means {z:.3g} MCSE from the reference")
    if against:
        table = _judged_by_data(table, key, runs, reports, variables, observed, data, against)
        for label in against:
            z = table.loc[label, "mean_z"]
            if z > z_threshold:
                reasons[label].append(f"means {z:.3g} MCSE from the data")
    if observed is not None:
        truth = _pick(observed, variables, "data")
        if reference is None:
            table = _with_errors(table, key, runs, reports, variables, truth, data, "data_error")
            notes.append(
                "without an exact reference on the same energy, the errors against the data mix "
                "the model's error and the samplers'; give reference= to separate them"
            )
        else:
            table["data_error"] = [
                _largest(_errors(_report_moments(reports[label], variables), truth, "data"))
                for label in table.index
            ]
            model = _errors(reference_truth, truth, "data")
            table["model_error"] = model["error"] = _largest(model)
    table["mixed"] = [not reasons[label] for label in table.index]
    table["reason"] = [
        "; ".join(reasons[label] + _timing_reason(table.loc[label, "wall_s"], floor))
        for label in table.index
    ]
    if reference is not None and observed is not None:
        notes.append(_attribution(table, model, reference_label))
    if reference_label is not None and not table.loc[reference_label, "mixed"]:
        notes.append(
            f"the reference {reference_label} did not mix "
            f"({table.loc[reference_label, 'reason']}): the sampler errors are against an "
            "inexact reference"
        )
    notes = [
        f"{label} is not ranked, its chains did not mix: {table.loc[label, 'reason']}"
        for label in table.index[~table["mixed"].to_numpy(bool)]
    ] + notes
    return Comparison(_ranked(table), runs, reports, tuple(notes))
