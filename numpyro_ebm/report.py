r"""``mixing_report()``: did the chains mix? A table per coordinate and warnings in words.

The statistics are those of Vehtari et al. (2021), computed on the device by
:func:`numpyro_ebm.diagnostics.summary`: rank-normalized split-:math:`\hat R`, bulk and tail
effective sample sizes and the Monte Carlo standard errors of the mean and the standard
deviation. The thresholds follow the paper's recommendations: :math:`\hat R < 1.01` and an
ESS of at least 100 per chain (400 for the four chains it assumes).

Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing convergence of
MCMC. *Bayesian Analysis*, 16(2), 667-718.

Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte
Carlo. arXiv:1604.00695.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

import jax
import numpy as np
import pandas as pd

from numpyro_ebm import _arviz, diagnostics

__all__ = ["MixingReport", "bfmi", "mixing_report"]

COLUMNS = ("mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "rhat")


@dataclass(frozen=True)
class MixingReport:
    """What :func:`mixing_report` found.

    Attributes
    ----------
    table
        One row per scalar coordinate (``"x[0]"``, ``"tau"``, ...) with the columns
        ``mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_tail, rhat``.
    warnings
        Plain-language findings; empty when nothing is wrong.
    num_chains, num_draws
        The shape of the run.
    divergences
        Divergent transitions (``sample_stats.diverging``), summed over chains and draws.
    nonfinite_chains
        Chains that reached a non-finite position or density.
    swap_acceptance
        Mean replica-swap acceptance per neighbouring pair (parallel tempering), else empty.
    bfmi
        E-BFMI per chain (:func:`bfmi`) when the run records the Hamiltonian
        (``sample_stats.energy``, HMC and NUTS), else empty.
    round_trip_rate
        Replica round trips (cold -> hot -> cold) per draw and chain when the run records them
        (``sample_stats.round_trips``, parallel tempering), else NaN.
    nested_rhat_threshold
        With ``superchains``, the threshold that the table's ``nested_rhat`` column is held to
        (:func:`~numpyro_ebm.diagnostics.nested_rhat_threshold` of the chains per
        superchain), else NaN.
    health
        The failed health checks that the run recorded (:func:`~numpyro_ebm.sample`'s
        ``sample_stats`` attribute ``health``: frozen chains, an exploded step size, draws
        that run off, an energy NaN or infinite near the draws), in short words for tables;
        their full messages are among ``warnings``.
    """

    table: pd.DataFrame
    warnings: tuple[str, ...]
    num_chains: int
    num_draws: int
    divergences: int = 0
    nonfinite_chains: int = 0
    swap_acceptance: tuple[float, ...] = field(default=())
    bfmi: tuple[float, ...] = field(default=())
    round_trip_rate: float = float("nan")
    health: tuple[str, ...] = field(default=())
    nested_rhat_threshold: float = float("nan")

    @property
    def ok(self) -> bool:
        """True when no warning was raised."""
        return not self.warnings

    def __str__(self) -> str:
        head = f"Mixing report: {self.num_chains} chains x {self.num_draws} draws"
        lines = [head, self.table.to_string(float_format=_format)]
        if self.warnings:
            lines += ["", "Warnings:"] + [f"  - {w}" for w in self.warnings]
        else:
            lines += ["", "No mixing problems found."]
        return "\n".join(lines)


def _format(value: float) -> str:
    if not np.isfinite(value):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _coordinate_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, index))}]" for index in np.ndindex(*shape)]


def _table(posterior, var_names) -> pd.DataFrame:
    rows, index = [], []
    summary = jax.jit(diagnostics.summary)
    for name in var_names:
        draws = np.asarray(posterior[name].values)
        shape = draws.shape[2:]
        if draws.shape[0] >= 2 and draws.shape[1] >= 4:
            stats = {k: np.asarray(v).reshape(-1) for k, v in summary(draws).items()}
        else:  # R-hat and ESS need >= 2 chains and >= 4 draws: leave them NaN
            flat = draws.reshape(-1, *shape)
            stats = {k: np.full(int(np.prod(shape)), np.nan) for k in COLUMNS}
            stats["mean"] = flat.mean(0).reshape(-1)
            stats["sd"] = flat.std(0, ddof=1).reshape(-1) if len(flat) > 1 else stats["sd"]
        rows.append(np.stack([stats[k] for k in COLUMNS], axis=1))
        index += _coordinate_names(name, shape)
    return pd.DataFrame(np.concatenate(rows), index=index, columns=list(COLUMNS))


def bfmi(energy) -> np.ndarray:
    r"""The energy Bayesian fraction of missing information of each chain (Betancourt 2016,
    eq. 3.4 estimated from the draws):

    .. math::

        \widehat{\text{E-BFMI}} = \frac{\sum_{n=1}^{N} (E_n - E_{n-1})^2}
        {\sum_{n=0}^{N} (E_n - \bar E)^2},

    with :math:`E_n` the Hamiltonian (potential plus kinetic energy) at draw :math:`n`. It
    compares how far one momentum resampling moves the energy with the spread of the energy's
    marginal: below 0.3 the momentum resampling cannot explore the energy levels (heavy tails,
    funnels) and the chain explores slowly in that direction. Equal to ``arviz.bfmi``.

    Parameters
    ----------
    energy
        The Hamiltonian per draw, shape ``(chain, draw)`` (or ``(draw,)`` for one chain).

    Returns
    -------
    numpy.ndarray
        One value per chain.
    """
    energy = np.atleast_2d(np.asarray(energy, float))
    if energy.ndim != 2 or energy.shape[1] < 2:
        raise ValueError(f"energy must have shape (chain, draw) with draw >= 2, got {energy.shape}")
    centred = energy - energy.mean(axis=1, keepdims=True)
    return np.sum(np.diff(energy, axis=1) ** 2, axis=1) / np.sum(centred**2, axis=1)


def _nested_findings(table, posterior, names, superchains, num_chains) -> tuple[float, list]:
    """Add the ``nested_rhat`` column to ``table``; its threshold and warning."""
    layout = np.asarray(superchains)
    groups = int(layout) if layout.ndim == 0 else np.unique(layout).size
    per_superchain = num_chains // max(groups, 1)
    values = [
        np.asarray(diagnostics.nested_rhat(posterior[name].values, superchains)).reshape(-1)
        for name in names
    ]
    table["nested_rhat"] = np.concatenate(values)
    threshold = diagnostics.nested_rhat_threshold(per_superchain)
    high = table["nested_rhat"][table["nested_rhat"] > threshold]
    if high.empty:
        return threshold, []
    return threshold, [
        f"nested R-hat > {threshold:.4g} for {len(high)} of {len(table)} coordinate(s) (worst "
        f"{_worst(table, 'nested_rhat', True)}; {groups} superchains of {per_superchain} "
        "chains, Margossian et al. 2024): the superchains, each started from its own point, "
        "disagree: the chains have not forgotten their starts. Run longer (more warm-up)"
    ]


def _worst(table: pd.DataFrame, column: str, largest: bool) -> str:
    values = table[column]
    label = values.idxmax() if largest else values.idxmin()
    return f"{label} = {values[label]:.3g}"


def _statistics_warnings(table, num_chains, num_draws, rhat_threshold, min_ess) -> list[str]:
    found = []
    missing = table.index[~np.isfinite(table["mean"].to_numpy())].tolist()
    if missing:
        found.append(
            f"{len(missing)} coordinate(s) have NaN or infinite draws ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): their statistics are undefined"
        )
    if num_chains < 2 or num_draws < 4:
        found.append(
            f"R-hat and ESS need at least 2 chains of at least 4 draws; this run has "
            f"{num_chains} x {num_draws} (independent draws such as annealed Langevin's or "
            "SMC's final particles are judged by comparing with data or a reference instead)"
        )
        return found
    rhat = table["rhat"]
    high = rhat[rhat > rhat_threshold]
    if len(high):
        found.append(
            f"R-hat > {rhat_threshold} for {len(high)} of {len(rhat)} coordinate(s) (worst "
            f"{_worst(table, 'rhat', True)}): the chains disagree, they have not mixed. Run "
            "longer; for a multimodal energy use parallel_tempering, tempered_smc or "
            "annealed_langevin"
        )
    for column, kind in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        low = table[column][table[column] < min_ess]
        if len(low):
            found.append(
                f"{kind} ESS < {min_ess:.0f} for {len(low)} of {len(table)} coordinate(s) "
                f"(worst {_worst(table, column, False)}): too few effective draws for reliable "
                f"{'means' if kind == 'bulk' else 'quantiles and intervals'}; draw more or "
                "improve the sampler"
            )
    return found


def _bfmi_findings(stats, min_bfmi: float) -> tuple[tuple[float, ...], list[str]]:
    if "energy" not in stats or stats.sizes.get("draw", 0) < 2:
        return (), []
    energy = np.asarray(stats["energy"].transpose("chain", "draw").values, float)
    if not np.all(np.isfinite(energy)):
        return (), []  # non-finite chains are reported as such
    fractions = tuple(float(v) for v in bfmi(energy))
    low = [k for k, v in enumerate(fractions) if v < min_bfmi]
    if not low:
        return fractions, []
    return fractions, [
        f"E-BFMI < {min_bfmi} in {len(low)} chain(s) ("
        + ", ".join(f"chain {k}: {fractions[k]:.2f}" for k in low[:5])
        + "): momentum resampling barely moves the energy, so the chain explores the energy "
        "levels slowly (heavy tails or a funnel); reparameterize or tune the mass matrix"
    ]


def _round_trip_findings(stats) -> tuple[float, list[str]]:
    if "round_trips" not in stats:
        return float("nan"), []
    trips = np.asarray(stats["round_trips"].values, float)
    rate = float(np.mean(trips))
    if np.sum(trips) > 0:
        return rate, []
    return rate, [
        "no parallel-tempering replica completed a round trip cold -> hot -> cold: the hot "
        "replicas do not communicate with the cold one, so barriers may not be crossed; add "
        "replicas or adapt the ladder (replica_exchange.adapt_ladder)"
    ]


def _recorded(attrs, name: str) -> list[str]:
    """A list of strings recorded in ``attrs`` (as written, or read back from netCDF, where
    one string may come back alone)."""
    return [str(value) for value in np.atleast_1d(attrs.get(name, []))]


def mixing_report(
    data,
    *,
    var_names: list[str] | None = None,
    rhat_threshold: float = 1.01,
    min_ess_per_chain: float = 100.0,
    min_swap_acceptance: float = 0.1,
    min_bfmi: float = 0.3,
    superchains=None,
    display: bool = True,
    file: TextIO | None = None,
) -> MixingReport:
    r"""Diagnose a run of :func:`~numpyro_ebm.sample`: per-coordinate statistics and warnings.

    Warns, in plain language, when

    * rank-normalized :math:`\hat R` exceeds ``rhat_threshold`` (1.01, Vehtari et al. 2021);
    * bulk or tail ESS is below ``min_ess_per_chain`` times the number of chains;
    * transitions diverged (``sample_stats.diverging``);
    * chains reached non-finite positions (``sample_stats.nonfinite``);
    * a neighbouring pair of parallel-tempering replicas swapped with a mean acceptance below
      ``min_swap_acceptance`` (the ladder has a gap there: add temperatures in between);
    * a chain's E-BFMI (:func:`bfmi`, from ``sample_stats.energy``) is below ``min_bfmi``
      (0.3, Betancourt 2016);
    * no parallel-tempering replica completed a round trip cold -> hot -> cold
      (``sample_stats.round_trips``);
    * the run's health checks failed (recorded by :func:`~numpyro_ebm.sample`, in the same
      words as its warnings: chains frozen, a step size that exploded on a flat target, draws
      that run off an improper one, an energy NaN or infinite near the draws;
      :mod:`numpyro_ebm._health`);
    * draws are NaN, or the run is too short for the statistics;
    * with ``superchains`` (many short chains in groups that each started from one point),
      nested :math:`\hat R` (Margossian et al. 2024) exceeds its threshold
      :math:`\sqrt{1 + 1/M + 10^{-4}}` for :math:`M` chains per superchain (a table column
      ``nested_rhat``).

    Parameters
    ----------
    data
        Output of :func:`~numpyro_ebm.sample` (``arviz.InferenceData`` or, with ArviZ >= 1,
        ``xarray.DataTree``); any such object with a ``posterior`` group.
    var_names
        Posterior variables to report; default: all.
    superchains
        The superchain layout of :func:`~numpyro_ebm.diagnostics.nested_rhat`: an integer
        :math:`K` (consecutive groups of chains) or a label per chain.
    display
        Print the report.
    file
        Where to print it; default ``sys.stdout``.

    Returns
    -------
    MixingReport
        The table (a ``pandas.DataFrame``), the warnings and the run's counts.
    """
    if not (np.isfinite(rhat_threshold) and rhat_threshold > 1):
        raise ValueError(f"rhat_threshold must be a number above 1, got {rhat_threshold!r}")
    for name, value in (("min_ess_per_chain", min_ess_per_chain), ("min_bfmi", min_bfmi)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    posterior = _arviz.group(data, "posterior")
    names = list(posterior.data_vars) if var_names is None else list(var_names)
    if not names:
        raise ValueError(f"var_names must name at least one posterior variable, got {var_names!r}")
    unknown = sorted(set(names) - set(posterior.data_vars))
    if unknown:
        raise ValueError(f"var_names {unknown} not in the posterior {list(posterior.data_vars)}")
    for name in names:
        variable = posterior[name]
        if tuple(variable.dims[:2]) != ("chain", "draw"):
            raise ValueError(
                f"posterior variable {name!r} must have dimensions (chain, draw, ...), got "
                f"{tuple(variable.dims)}"
            )
        if not (np.issubdtype(variable.dtype, np.number) or variable.dtype == bool):
            raise TypeError(
                f"posterior variable {name!r} must hold numbers, got dtype {variable.dtype}"
            )
    num_chains, num_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    table = _table(posterior, names)
    found = _statistics_warnings(
        table, num_chains, num_draws, rhat_threshold, min_ess_per_chain * num_chains
    )
    nested_threshold = float("nan")
    if superchains is not None:
        nested_threshold, nested_warnings = _nested_findings(
            table, posterior, names, superchains, num_chains
        )
        found += nested_warnings

    divergences = nonfinite = 0
    swaps: tuple[float, ...] = ()
    fractions: tuple[float, ...] = ()
    round_trip_rate = float("nan")
    health: tuple[str, ...] = ()
    if "sample_stats" in _arviz.group_names(data):
        stats = _arviz.group(data, "sample_stats")
        health = tuple(_recorded(stats.attrs, "health"))
        found += _recorded(stats.attrs, "health_warnings")
        fractions, bfmi_warnings = _bfmi_findings(stats, min_bfmi)
        found += bfmi_warnings
        round_trip_rate, trip_warnings = _round_trip_findings(stats)
        found += trip_warnings
        if "diverging" in stats:
            diverging = np.asarray(stats["diverging"].values, bool)
            divergences = int(diverging.sum())
            if divergences:
                found.append(
                    f"{divergences} divergent transition(s) in {int(diverging.any(1).sum())} "
                    "chain(s): the sampler missed regions of high curvature, so the draws may "
                    "be biased; lower the step size (raise target acceptance) or reparameterize"
                )
        if "nonfinite" in stats:
            nonfinite = int(np.asarray(stats["nonfinite"].values, bool).any(1).sum())
            if nonfinite:
                found.append(
                    f"{nonfinite} chain(s) reached a non-finite position or energy: discard "
                    "them, lower the step size, or check the energy for overflow"
                )
        if "swap_acceptance" in stats:
            rates = np.asarray(stats["swap_acceptance"].values, float)
            swaps = tuple(float(r) for r in np.nanmean(rates.reshape(-1, rates.shape[-1]), 0))
            low = [k for k, r in enumerate(swaps) if r < min_swap_acceptance]
            if low:
                found.append(
                    "replica swaps are rare between temperature pair(s) "
                    + ", ".join(f"{k}<->{k + 1} ({swaps[k]:.3f})" for k in low)
                    + f" (< {min_swap_acceptance}): add temperatures between them"
                )
    report = MixingReport(
        table,
        tuple(found),
        num_chains,
        num_draws,
        divergences,
        nonfinite,
        swaps,
        fractions,
        round_trip_rate,
        health,
        nested_threshold,
    )
    if display:
        print(report, file=file or sys.stdout)
    return report
