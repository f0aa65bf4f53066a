"""The accuracy columns of :func:`~numpyro_ebm.compare`: a run's errors against a truth (an
exact reference run on the same energy, or draws of the data), its energy distance to it, and
the bias check of an independent-sweep sampler; and the checks of the truth's draws against the
target before anything runs.

The errors are posteriordb's standardized errors: the largest absolute errors of the means and
standard deviations over coordinates, in the truth's standard deviations, and of the means in
Monte Carlo standard errors of their difference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from numpyro_ebm import _arviz, metrics
from numpyro_ebm.diagnostics import ksd
from numpyro_ebm.report import MixingReport
from numpyro_ebm.targets import Target

#: Draws per side for the energy distance (a V-statistic, quadratic in the draws).
ENERGY_DISTANCE_DRAWS = 1000


def draw_moments(draws: dict, label: str) -> dict[str, tuple[np.ndarray, ...]]:
    """(mean, sd, mcse_mean) of each variable of independent draws ``{name: (n, ...)}``."""
    moments = {}
    for name, value in draws.items():
        values = np.asarray(value, float)
        if values.ndim == 0 or values.shape[0] < 2 or not np.all(np.isfinite(values)):
            raise ValueError(f"{label} draws of {name!r} must be finite, at least 2")
        sd = values.std(0, ddof=1)
        moments[name] = (values.mean(0), sd, sd / np.sqrt(values.shape[0]))
    return moments


def pick(moments: dict, var_names, label: str) -> dict[str, tuple[np.ndarray, ...]]:
    for name in var_names:
        if name not in moments:
            raise ValueError(f"{label} draws have no variable {name!r}")
    return {name: moments[name] for name in var_names}


def _rows(table: pd.DataFrame, name: str) -> list[str]:
    return [row for row in table.index if row == name or row.startswith(name + "[")]


def report_moments(report: MixingReport, var_names) -> dict[str, tuple[np.ndarray, ...]]:
    """(mean, sd, mcse_mean) per variable of a run, from its mixing report's table."""
    table = report.table
    return {
        name: tuple(
            table.loc[_rows(table, name), c].to_numpy() for c in ("mean", "sd", "mcse_mean")
        )
        for name in var_names
    }


def standardized_errors(estimate: dict, truth: dict, label: str = "reference") -> dict[str, float]:
    """The largest standardized errors of ``estimate``'s means and sds against ``truth``'s
    (both ``{name: (mean, sd, mcse_mean)}``, ``truth`` named ``label`` in errors), in
    ``truth`` sds, and of the means in Monte Carlo standard errors of their difference."""
    mean_errors, sd_errors, mean_zs = [], [], []
    for name, (true_mean, true_sd, true_mcse) in truth.items():
        mean, sd, mcse = (np.ravel(v) for v in estimate[name])
        true_mean, true_sd, true_mcse = (np.ravel(v) for v in (true_mean, true_sd, true_mcse))
        if mean.shape != true_mean.shape:
            raise ValueError(
                f"variable {name!r} has {mean.size} coordinates but the {label} {true_mean.size}"
            )
        delta = np.abs(mean - true_mean)
        mean_errors.append(delta / true_sd)
        sd_errors.append(np.abs(sd - true_sd) / true_sd)
        mean_zs.append(delta / np.hypot(mcse, true_mcse))

    def largest(parts):  # NaN (a run that blew up) stays NaN, never a perfect 0
        return float(np.max(np.concatenate([np.zeros(0), *parts]), initial=0.0))

    return {"mean_error": largest(mean_errors), "sd_error": largest(sd_errors),
            "mean_z": largest(mean_zs)}  # fmt: skip


def largest_error(errors: dict) -> float:
    return float(np.max([errors["mean_error"], errors["sd_error"]]))


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


def stein_discrepancy(target, sampler, run, key: jax.Array, sample_kwargs: dict) -> float:
    """The kernel Stein discrepancy (:func:`numpyro_ebm.diagnostics.ksd`) of at most
    :data:`ENERGY_DISTANCE_DRAWS` of a run's draws against the energy it sampled, of an array
    configuration on real numbers; NaN for a model (its draws are constrained values, its
    density unconstrained), a noise-conditional or discrete energy, or non-finite draws."""
    if isinstance(target, Target):
        usable = target.kind == "energy" and target.postprocess_fn is None
        leaves = jax.tree.leaves(target.initial_position)
        if not usable or len(leaves) != 1:
            return float("nan")
        logdensity, name = target.logdensity_fn, target.var_name
    else:
        energy_call = sample_kwargs.get("event_shape") is not None or (
            hasattr(sample_kwargs.get("init_position"), "shape")
        )
        real = sample_kwargs.get("support", "real") == "real"
        if not (energy_call and real and "energy" in sampler.accepts):
            return float("nan")
        temperature = float(sample_kwargs.get("temperature", 1.0))
        name = sample_kwargs.get("var_name", "x")

        def logdensity(x):
            return -target(x) / temperature

    posterior = _arviz.group(run, "posterior")
    draws = np.asarray(posterior[name].values)
    shape = draws.shape[2:]
    flat = draws.reshape(-1, int(np.prod(shape, dtype=int)))
    if not np.all(np.isfinite(flat)):
        return float("nan")
    return float(ksd(_subsample(key, flat), energy=lambda z: -logdensity(z.reshape(shape))))


def with_errors(table, key, runs, reports, variables, truth, source, name) -> pd.DataFrame:
    """``table`` with each run's errors against ``truth`` (moments) and its energy distance to
    the draws of ``source``; ``name`` the column of the larger standardized error."""
    truth_draws = _flat_draws(source, variables)
    accuracy = {
        label: standardized_errors(
            report_moments(reports[label], variables),
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


def judged_by_data(table, key, runs, reports, variables, observed, data, against):
    """``table`` with the accuracy columns of the ``against`` rows taken against the data."""
    truth = pick(observed, variables, "data")
    truth_draws = _flat_draws(data, variables)
    table = table.copy()
    for label in against:
        errors = standardized_errors(report_moments(reports[label], variables), truth, "data")
        errors["energy_distance"] = _energy_distance(
            jax.random.fold_in(key, 2), _flat_draws(runs[label], variables), truth_draws
        )
        for column, value in errors.items():
            table.loc[label, column] = value
        if "sampler_error" in table:
            table.loc[label, "sampler_error"] = float("nan")
    return table


def bias_check(coarse: MixingReport, fine: MixingReport) -> dict[str, float]:
    """Standardized differences of the means and sds of two runs (in the finer run's sds),
    and the same in Monte Carlo standard errors of the difference."""
    a, b = coarse.table, fine.table
    check = np.maximum(np.abs(a["mean"] - b["mean"]), np.abs(a["sd"] - b["sd"])) / b["sd"]
    z_mean = np.abs(a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    z_sd = np.abs(a["sd"] - b["sd"]) / np.hypot(a["mcse_sd"], b["mcse_sd"])
    return {"bias_check": float(check.max()), "bias_z": float(np.maximum(z_mean, z_sd).max())}


def posterior_shapes(target, key, sample_kwargs: dict) -> dict[str, tuple] | None:
    """The shape of one draw of each posterior variable that :func:`sample` will report, found
    without sampling (``None`` where it cannot be: a pytree configuration of an energy, a
    model that subsamples its data)."""
    from numpyro_ebm.model_density import SubsampledModelError, logdensity_from_model

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


def check_draws(moments: dict, shapes: dict | None, var_names, label: str) -> None:
    """Refuse ``label`` draws that miss a variable to be compared or whose draws have another
    shape than the target's (``shapes``, when known)."""
    names = var_names if var_names is not None else list(shapes or ())
    pick(moments, names, label)
    for name in names:
        drawn = np.shape(moments[name][0])
        if shapes is not None and name in shapes and drawn != shapes[name]:
            raise ValueError(
                f"{label} draws of {name!r} have shape {drawn} each, but the target's {name!r} "
                f"has shape {shapes[name]}: give {label} draws of the same variable"
            )
