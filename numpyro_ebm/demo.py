"""The demo: the main job of the ``numpyro-ebm demo`` command, an end-to-end run on embedded
data that trains a noise-conditional energy, samples it with several samplers and tells the
model's error from the samplers'."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from numpyro_ebm import _arviz, datasets, metrics, plots
from numpyro_ebm.comparison import Comparison, compare
from numpyro_ebm.evidence.references import Gaussian
from numpyro_ebm.samplers import get_sampler
from numpyro_ebm.workflow import TrainSettings, energy_of, sampler_options, train

__all__ = ["DEMO_SAMPLERS", "run_demo"]

DEMO_SAMPLERS = ("annealed_langevin", "parallel_tempering", "tempered_smc", "mala")


def run_demo(
    out_dir: str | os.PathLike,
    *,
    key: jax.Array,
    dataset: str = "gaussian_mixture",
    num_data: int = 10_000,
    settings: TrainSettings | None = None,
    samplers: Sequence[str] = DEMO_SAMPLERS,
    num_chains: int = 64,
    num_samples: int = 2000,
    num_warmup: int = 500,
    num_sweeps: int = 200,
    steps_per_level: int = 50,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    r"""The main job: train a noise-conditional energy on an embedded 2-D data set (score
    matching, then maximum likelihood, :func:`~numpyro_ebm.workflow.train`), judge the
    learned density against the truth, sample it with several samplers, compare and diagnose
    them, and write everything to ``out_dir``.

    The exact samplers (parallel tempering, tempered SMC, and the negative control MALA,
    which cannot cross between modes) run on :math:`E(x, \\sigma_L)` and are judged against a
    replica-exchange reference four times longer: the Markov chains ``num_samples`` draws per
    chain after ``num_warmup``, the independent-sweep samplers (tempered SMC, annealed
    Langevin) ``num_sweeps`` with no warm-up, since each sweep forgets its start. Annealed
    Langevin's sweeps run down the whole noise ladder: it draws the data distribution as the
    ladder models it, and is judged against fresh data. The reference against fresh data is
    the model's error. Per-mode weights (data, the learned
    density by quadrature, the reference, each sampler) are printed for the ring data sets.

    Writes ``data.npy``, ``checkpoints/`` and ``network/`` (the trained energy),
    ``training.json``, ``idata/`` (one netCDF per sampler and ``comparison.csv``),
    ``metrics.json`` and the figures ``training_loss.png``, ``energy_landscape.png``,
    ``samples.png`` (equal point counts per panel), ``ess_per_second.png`` (the samplers that
    mixed ranked, the others in grey) and ``trace_``/``rank_<sampler>.png``. Returns the
    metrics.
    """
    settings = settings or TrainSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_key, train_key, sample_key, fresh_key, noise_key = jax.random.split(key, 5)
    data = np.asarray(datasets.toy(dataset, data_key, num_data))
    np.save(out_dir / "data.npy", data)
    truth = datasets.toy_log_prob(dataset)
    echo(f"[1/4] training a noise-conditional energy on {num_data} points of {dataset!r}")
    trained, result = train(
        data, settings, key=train_key, out_dir=out_dir, progress=progress, truth=truth
    )
    sigmas = trained.metadata["sigmas"]
    echo(
        f"      score matching: {settings.num_steps} steps, final loss "
        f"{trained.metadata['final_loss']:.4f}, noise ladder {sigmas[0]:.3g} -> "
        f"{sigmas[-1]:.3g} ({len(sigmas)} levels)"
    )
    if "likelihood_final" in trained.metadata:
        final = trained.metadata["likelihood_final"]
        echo(
            f"      maximum likelihood: {settings.likelihood_steps} steps with replica-exchange "
            f"negatives ({settings.likelihood_chains} chains x {settings.num_replicas} "
            f"temperatures), swap rate >= {final['likelihood/swap_rate_min']:.2f}, MALA "
            f"acceptance {final['likelihood/acceptance']:.2f}"
        )
    held = trained.metadata.get("held_out")
    if held:
        echo("      " + _held_out_line(held))
    energy = energy_of(trained)
    options = {name: sampler_options(name, trained, steps_per_level) for name in samplers}
    # the tempering starts from a Gaussian as broad as the data, not a Laplace fit at one mode
    broad = Gaussian(jnp.asarray(data.mean(0)), jnp.asarray(1.5 * data.std(0)))
    if "tempered_smc" in options:
        options["tempered_smc"] = {"reference": broad}
    values = [get_sampler(name, **options[name]) for name in samplers]
    # the exact reference on the same energy: replica exchange, run four times longer
    reference = get_sampler("parallel_tempering", num_replicas=8, max_temperature=50.0)
    # independent-sweep samplers: no warm-up (each sweep forgets its start), fewer draws
    sweeps = {
        value.name: {"num_samples": num_sweeps, "num_warmup": 0}
        for value in values
        if value.refine is not None
    }

    echo(f"[2/4] sampling with {', '.join(samplers)} ({num_chains} chains each)")
    # the energy at sigma_L models the data smoothed at sigma_L: fresh data plus that noise
    fresh = np.asarray(datasets.toy(dataset, fresh_key, 20_000))
    smoothed = fresh + sigmas[-1] * np.asarray(jax.random.normal(noise_key, fresh.shape))
    comparison = compare(
        energy,
        values,
        key=sample_key,
        reference=reference,
        reference_samples=4 * num_samples,
        data={"x": smoothed},
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        budgets=sweeps,
        against_data=[name for name in sweeps if name == "annealed_langevin"],
        event_shape=(2,),
        progress=progress,
    )

    echo(
        "[3/4] comparison (wall_s excludes compilation; sampler_error against a long replica-"
        "exchange run on the energy, model_error of that run against fresh data; annealed "
        "Langevin against the data)"
    )
    echo(str(comparison))
    for name in samplers:
        echo(f"\n{name}:")
        echo(str(comparison.reports[name]))
    weights = _mode_weights(dataset, comparison, energy, smoothed)
    if weights is not None:
        echo("\nmass per mode (Voronoi cells of the true centres; +- Monte Carlo error)")
        echo(weights.to_string(float_format=lambda v: f"{v:.3f}"))
    verdict = _verdict(comparison, held)
    echo("\n" + verdict)

    echo(f"\n[4/4] writing results to {out_dir}")
    files = _write_demo_outputs(out_dir, comparison, result, energy, data, key)
    metrics_record = {
        "dataset": dataset,
        "num_data": num_data,
        "training": {"num_steps": settings.num_steps, **trained.metadata},
        "comparison": json.loads(comparison.table.to_json(orient="index")),
        "mode_weights": None if weights is None else json.loads(weights.to_json(orient="index")),
        "notes": list(comparison.notes),
        "verdict": verdict,
        "warnings": {name: list(r.warnings) for name, r in comparison.reports.items()},
        "files": sorted(str(path.relative_to(out_dir)) for path in files),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics_record, indent=1))
    echo("      " + ", ".join([*metrics_record["files"], "metrics.json"]))
    return metrics_record


def _held_out_line(held: dict) -> str:
    line = (
        f"held-out log-likelihood {held['mean']:.4f} +- {held['standard_error']:.4f} nats per "
        f"point (AIS, {held['num_points']} points smoothed at sigma_L)"
    )
    if "mean_quadrature" in held:
        line += f", {held['mean_quadrature']:.4f} by quadrature"
    if "true_mean" in held:
        line += (
            f"; the true density's {held['true_mean']:.4f}: difference "
            f"{held['difference']:+.4f} +- {held['difference_standard_error']:.4f}"
        )
    return line


_RINGS = {
    "gaussian_mixture": datasets.GAUSSIAN_MIXTURE_CENTERS,
    "weighted_ring": datasets.WEIGHTED_RING.centers,
}


def _mode_weights(dataset, comparison: Comparison, energy, smoothed) -> pd.DataFrame | None:
    """Mass per mode of the data, the learned density (quadrature) and each run, with the
    runs' Monte Carlo errors (across chains); ``None`` for a data set without modes."""
    if dataset not in _RINGS:
        return None
    centers = _RINGS[dataset]
    rows = {"data": metrics.mode_weights(smoothed, centers)}
    density = metrics.density_mode_weights(energy, centers, [-4.5, -4.5], [4.5, 4.5], 300)
    rows["density exp(-E)"] = metrics.ModeWeights(density, np.zeros_like(density))
    for name, data in comparison.idata.items():
        draws = np.asarray(_arviz.group(data, "posterior")["x"].values)
        rows[name] = metrics.mode_weights(draws, centers)
    truth = rows["data"].weights
    table = pd.DataFrame(
        {name: [*w.weights, float(np.max(np.abs(w.weights - truth)))] for name, w in rows.items()},
        index=[*(f"mode {k}" for k in range(len(centers))), "max |error|"],
    ).T
    table["max se"] = [float(np.max(w.standard_error)) for w in rows.values()]
    return table


def _verdict(comparison: Comparison, held: dict | None) -> str:
    """The closing note: which samplers are ranked, which error dominates (the model's: the
    exact reference against fresh data; the samplers': each ranked run against that
    reference), and how far the learned density's likelihood is from the truth's."""
    table = comparison.table
    runs = [name for name in table.index if not name.endswith("_reference")]
    ranked = [name for name in runs if table.loc[name, "mixed"]]
    unmixed = [name for name in runs if name not in ranked]
    parts = [
        f"Verdict: ranked (mixed): {', '.join(ranked) or 'none'}; not ranked: "
        f"{', '.join(unmixed) or 'none'}."
    ]
    if "model_error" in table:
        model = float(table["model_error"].iloc[0])
        errors = table.loc[ranked, "sampler_error"].dropna()
        if len(errors):
            worst, sampler = errors.idxmax(), float(errors.max())
            dominant = "the model's" if model >= sampler else f"the samplers' ({worst})"
            parts.append(
                f"The larger error is {dominant}: model error {model:.3f} sd (the exact "
                f"reference against fresh data), sampler error up to {sampler:.3f} sd ({worst} "
                "against the reference)."
            )
        judged = [n for n in ranked if np.isnan(table.loc[n, "sampler_error"])]
        for name in judged:
            parts.append(
                f"{name}, judged against the data: {table.loc[name, 'data_error']:.3f} sd."
            )
    if held and "difference" in held:
        parts.append(
            f"The learned density's held-out log-likelihood is {held['difference']:+.3f} +- "
            f"{held['difference_standard_error']:.3f} nats per point from the true density's."
        )
    return " ".join(parts)


def _draws(comparison: Comparison, name: str) -> np.ndarray:
    return np.asarray(_arviz.group(comparison.idata[name], "posterior")["x"]).reshape(-1, 2)


def _write_demo_outputs(out_dir, comparison, result, energy, data, key) -> list[Path]:
    files = comparison.save(out_dir / "idata")
    files += comparison.plot(out_dir)
    files.append(plots.training_curve(result.history, out_dir / "training_loss.png"))
    # the same number of points in every panel, drawn at random from each run
    runs = {"data": data} | {name: _draws(comparison, name) for name in comparison.idata}
    count = min(5000, *(len(points) for points in runs.values()))
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    samples = {
        name: points[rng.choice(len(points), count, replace=False)] for name, points in runs.items()
    }
    files.append(plots.samples_grid(samples, out_dir / "samples.png"))
    first = next(iter(comparison.idata))
    files.append(
        plots.energy_landscape(
            energy,
            out_dir / "energy_landscape.png",
            samples=samples[first],
            title=f"learned density exp(-E(x, sigma_L)) and {first} samples",
        )
    )
    return files
