"""The verdicts of :func:`~numpyro_ebm.compare`: whether each run mixed and why not (R-hat,
divergences, non-finite chains, E-BFMI, the health checks of :func:`~numpyro_ebm.sample`, the
caller's own rule), the ranking of the runs that mixed, and the sentence that says whether the
model's error or the samplers' dominates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from numpyro_ebm.report import MixingReport

#: Below this E-BFMI a chain explores the energy levels poorly (Betancourt 2016).
MIN_BFMI = 0.3


def mixing_reasons(row: dict, report: MixingReport, rhat_threshold: float, rule) -> list[str]:
    """Why a run did not mix; empty when it did."""
    reasons = []
    if not np.isfinite(row["max_rhat"]):
        reasons.append("R-hat undefined (fewer than 2 chains of 4 draws, or NaN draws)")
    elif row["max_rhat"] > rhat_threshold:
        reasons.append(f"R-hat {printed_apart(row['max_rhat'], rhat_threshold)} > {rhat_threshold}")
    nested = report.nested_rhat_threshold
    if np.isfinite(nested) and not row["max_nested_rhat"] <= nested:
        reasons.append(
            f"nested R-hat {printed_apart(row['max_nested_rhat'], nested)} > {nested:.4g}"
        )
    if row["divergences"]:
        reasons.append(f"{row['divergences']} divergent transition(s)")
    if row["nonfinite_chains"]:
        reasons.append(f"{row['nonfinite_chains']} non-finite chain(s)")
    if row["min_bfmi"] < MIN_BFMI:
        reasons.append(f"E-BFMI {printed_apart(row['min_bfmi'], MIN_BFMI)} < {MIN_BFMI}")
    reasons += list(report.health)  # frozen chains, an exploded step, an improper target
    if rule is not None and (own := rule(report)):
        reasons.append(str(own))
    return reasons


def printed_apart(value: float, threshold: float) -> str:
    """``value`` with 3 significant digits, or as many more as it takes to differ from
    ``threshold`` when printed (R-hat 1.0116 against 1.01 reads 1.012, not 1.01)."""
    for digits in range(3, 10):
        text = f"{value:.{digits}g}"
        if float(text) != float(threshold):
            return text
    return repr(value)


def timing_reason(run_s: float, floor: float) -> list[str]:
    if run_s >= floor:
        return []
    return [f"no rate: {run_s:.2g} s after compilation is below the timer floor {floor:.2g} s"]


def ranked(table: pd.DataFrame) -> pd.DataFrame:
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


def attribution(table: pd.DataFrame, model: dict, reference_label: str | None) -> str:
    """One sentence: does the model's error or the samplers' dominate?"""
    others = table.drop(index=[reference_label], errors="ignore")
    others = others[others["sampler_error"].notna()]  # not those judged against the data
    if others.empty:
        return (
            f"No run besides the reference was measured against it: the model's error is "
            f"{float(model['error']):.3g} sd (the reference against the data), and no "
            "sampler's error can be set beside it."
        )
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
