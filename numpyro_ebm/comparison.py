r"""``compare()``: several samplers on one target, same budget, one table that tells the truth.

Each sampler runs through :func:`~numpyro_ebm.sample` with the same key (so the same initial
positions), chains, draws and warm-up. The table reports cost and quality side by side:

* ``wall_s``: seconds of the run after compilation, warm-up included (``grad_evals`` and so
  ``ess_per_1k_grads`` exclude it: with different ``num_warmup`` the two rates measure
  different things); ``compile_s``: the seconds JAX reports
  spending on tracing, lowering and XLA compilation during the call (``jax.monitoring``
  duration events), which ``wall_s`` excludes;
* ``grad_evals``: gradient evaluations of the log density while drawing (warm-up excluded);
* ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` over all posterior coordinates (and
  ``max_nested_rhat`` with ``superchains``, Margossian et al. 2024), and the
  efficiencies ``ess_per_s`` (min bulk ESS per second of ``wall_s``) and ``ess_per_1k_grads``;
  a ``wall_s`` below the timer's floor (:func:`timer_floor`) is not a measurement and gives
  no rate (NaN);
* ``ksd``: for an energy on real arrays, the kernel Stein discrepancy (Gorham & Mackey 2017,
  IMQ kernel) of at most 1000 of the run's draws against the energy itself, which needs no
  reference: lower is closer to :math:`p \propto e^{-E}`. It is blind to the weights of
  well-separated modes (Wenliang & Kanagawa 2020), so it does not decide ``mixed``: read it
  next to R-hat. NaN for models and discrete or noise-conditional energies;
* ``divergences``, ``nonfinite_chains`` and ``min_bfmi`` (the smallest E-BFMI of a chain,
  Betancourt 2016, when the run records the Hamiltonian ``sample_stats.energy``);
* ``mixed`` and ``reason``: whether the chains mixed (max R-hat <= ``rhat_threshold``, max
  nested R-hat at most its threshold with ``superchains``, no
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

Gorham, J. and Mackey, L. (2017). Measuring sample quality with kernels. ICML.
Wenliang, L. K. and Kanagawa, H. (2020). Blindness of score-based methods to isolated components
and mixing proportions. arXiv:2008.10087.
Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte
Carlo. arXiv:1604.00695.
Székely, G. J. and Rizzo, M. L. (2013). Energy statistics: a class of statistics based on
distances. *Journal of Statistical Planning and Inference*, 143(8), 1249-1272.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from numpyro_ebm import _arviz
from numpyro_ebm._checks import check_int, check_output_path, check_positive
from numpyro_ebm._compare_accuracy import ENERGY_DISTANCE_DRAWS as ENERGY_DISTANCE_DRAWS
from numpyro_ebm._compare_accuracy import (
    bias_check,
    check_draws,
    draw_moments,
    judged_by_data,
    largest_error,
    pick,
    posterior_shapes,
    report_moments,
    standardized_errors,
    stein_discrepancy,
    with_errors,
)
from numpyro_ebm._compare_runs import (
    check_against_data,
    check_budgets,
    parse_samplers,
    row_labels,
    table_row,
    timed_sample,
)
from numpyro_ebm._compare_verdicts import MIN_BFMI as MIN_BFMI
from numpyro_ebm._compare_verdicts import (
    attribution,
    mixing_reasons,
    printed_apart,
    ranked,
    timing_reason,
)
from numpyro_ebm.report import MixingReport, mixing_report

__all__ = ["Comparison", "compare", "timer_floor"]


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
    superchains=None,
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
    superchains
        For many short chains started in groups (superchains) from one point each: the layout
        of :func:`~numpyro_ebm.diagnostics.nested_rhat`; a run then mixed only if its largest
        nested R-hat is at most the threshold of Margossian et al. (2024) too (column
        ``max_nested_rhat``).
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
    specs, reference_run = parse_samplers(samplers, sampler_options, reference)
    labels = row_labels(specs)
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
    drawn = draw_moments(reference, "reference") if isinstance(reference, dict) else None
    observed = draw_moments(data, "data") if data is not None else None
    if drawn is not None or observed is not None:
        shapes = posterior_shapes(target, key, sample_kwargs)
        for moments, label in ((drawn, "reference"), (observed, "data")):
            if moments is not None:
                check_draws(moments, shapes, var_names, label)

    budget = {"num_chains": num_chains, "num_samples": num_samples, "num_warmup": num_warmup}
    names = [value.name for value in specs]
    own = check_budgets(budgets, names)
    against_names = check_against_data(against_data, names, data)
    against = [label for label, name in zip(labels, names, strict=True) if name in against_names]
    to_run = [
        (label, value, budget | own.get(value.name, {}))
        for label, value in zip(labels, specs, strict=True)
    ]
    reference_label = None
    if reference_run is not None:
        name = reference_run.name
        # reused only with the very budget the reference would get (budgets= included)
        reference_budget = budget | {"num_samples": reference_samples or num_samples}
        reused = reference_run in specs and budget | own.get(name, {}) == reference_budget
        if reused:
            reference_label = labels[specs.index(reference_run)]
        else:
            reference_label = name if name not in names else f"{name}_reference"
        if not reused:
            to_run.append((reference_label, reference_run, reference_budget))

    runs, rows, reports, reasons, notes = {}, {}, {}, {}, []
    if check_bias and not any(sampler.refine for _, sampler, _ in to_run):
        notes.append(
            "check_bias=True checked no sampler: it reruns samplers whose draws are independent "
            "sweeps (annealed_langevin, tempered_smc) with half the step, and none of these "
            "is one; Markov chains are judged by R-hat and against a reference"
        )
    # ArviZ is imported before any run is timed: the first run was charged its 0.5-0.9 s
    _arviz._modules()
    for label, sampler, size in to_run:
        run, run_s, compile_s = timed_sample(
            target, sampler, key=key, budget=size, progress=progress, **sample_kwargs
        )
        runs[label] = run
        reports[label] = mixing_report(
            run, var_names=var_names, superchains=superchains, display=False
        )
        rows[label] = table_row(reports[label], run, run_s, compile_s, floor)
        rows[label]["ksd"] = stein_discrepancy(target, sampler, run, key, sample_kwargs)
        reasons[label] = mixing_reasons(rows[label], reports[label], rhat_threshold, mixing_rule)
        if sampler.refine is not None and check_bias:
            refined, _, _ = timed_sample(
                target,
                sampler.refine(sampler),
                key=jax.random.fold_in(key, 1),
                budget=size,
                progress=progress,
                **sample_kwargs,
            )
            fine = mixing_report(refined, var_names=var_names, display=False)
            rows[label] |= bias_check(reports[label], fine)
            if rows[label]["bias_z"] > z_threshold:
                reasons[label].append(
                    f"half the step moves a mean or sd by "
                    f"{printed_apart(rows[label]['bias_z'], z_threshold)} MCSE (> {z_threshold}): "
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
            reference_truth = pick(drawn, variables, "reference")
        else:
            reference_report = (
                reports[reference_label]
                if reference_run
                else mixing_report(reference, var_names=variables, display=False)
            )
            reference_truth = report_moments(reference_report, variables)
        source = runs[reference_label] if reference_run else reference
        table = with_errors(
            table, key, runs, reports, variables, reference_truth, source, "sampler_error"
        )
        for label in table.index.drop([reference_label, *against], errors="ignore"):
            z = table.loc[label, "mean_z"]
            if z > z_threshold:
                reasons[label].append(f"means {z:.3g} MCSE from the reference")
    if against:
        table = judged_by_data(table, key, runs, reports, variables, observed, data, against)
        for label in against:
            z = table.loc[label, "mean_z"]
            if z > z_threshold:
                reasons[label].append(f"means {z:.3g} MCSE from the data")
    if observed is not None:
        truth = pick(observed, variables, "data")
        if reference is None:
            table = with_errors(table, key, runs, reports, variables, truth, data, "data_error")
            notes.append(
                "without an exact reference on the same energy, the errors against the data mix "
                "the model's error and the samplers'; give reference= to separate them"
            )
        else:
            table["data_error"] = [
                largest_error(
                    standardized_errors(report_moments(reports[label], variables), truth, "data")
                )
                for label in table.index
            ]
            model = standardized_errors(reference_truth, truth, "data")
            table["model_error"] = model["error"] = largest_error(model)
    table["mixed"] = [not reasons[label] for label in table.index]
    table["reason"] = [
        "; ".join(reasons[label] + timing_reason(table.loc[label, "wall_s"], floor))
        for label in table.index
    ]
    if reference is not None and observed is not None:
        notes.append(attribution(table, model, reference_label))
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
    return Comparison(ranked(table), runs, reports, tuple(notes))
