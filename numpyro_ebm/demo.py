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

from numpyro_ebm import datasets, plots
from numpyro_ebm.comparison import Comparison, compare
from numpyro_ebm.evidence.ais import Gaussian
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
    num_samples: int = 200,
    num_warmup: int = 200,
    steps_per_level: int = 50,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The main job: train a noise-conditional energy on an embedded 2-D data set, sample it
    with several samplers, compare and diagnose them, and write everything to ``out_dir``.

    Writes ``data.npy``, ``checkpoints/`` and ``network/`` (the trained energy), ``idata/``
    (one netCDF per sampler and ``comparison.csv``), ``metrics.json`` and the figures
    ``training_loss.png``, ``energy_landscape.png``, ``samples.png``, ``ess_per_second.png``
    and ``rank_<sampler>.png``. Returns the metrics.
    """
    settings = settings or TrainSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_key, train_key, sample_key, ref_key = jax.random.split(key, 4)
    data = np.asarray(datasets.toy(dataset, data_key, num_data))
    np.save(out_dir / "data.npy", data)
    echo(f"[1/4] training a noise-conditional energy on {num_data} points of {dataset!r}")
    trained, result = train(data, settings, key=train_key, out_dir=out_dir, progress=progress)
    sigmas = trained.metadata["sigmas"]
    echo(
        f"      {settings.num_steps} steps, final loss {trained.metadata['final_loss']:.4f}, "
        f"noise ladder {sigmas[0]:.3g} -> {sigmas[-1]:.3g} ({len(sigmas)} levels)"
    )
    energy = energy_of(trained)
    options = {name: sampler_options(name, trained, steps_per_level) for name in samplers}
    # the tempering starts from a Gaussian as broad as the data, not a Laplace fit at one mode
    broad = Gaussian(jnp.asarray(data.mean(0)), jnp.asarray(1.5 * data.std(0)))
    if "tempered_smc" in options:
        options["tempered_smc"] = {"reference": broad}
    values = [get_sampler(name, **options[name]) for name in samplers]
    # the exact reference on the same energy: replica exchange, run four times longer
    reference = get_sampler("parallel_tempering", num_replicas=8, max_temperature=50.0)

    echo(f"[2/4] sampling with {', '.join(samplers)} ({num_chains} chains each)")
    # the samplers target the data smoothed at sigma_L; fresh data plus that noise are the data
    fresh = np.asarray(datasets.toy(dataset, ref_key, 20_000))
    truth = fresh + sigmas[-1] * np.asarray(jax.random.normal(ref_key, fresh.shape))
    comparison = compare(
        energy,
        values,
        key=sample_key,
        reference=reference,
        reference_samples=4 * num_samples,
        data={"x": truth},
        num_chains=num_chains,
        num_samples=num_samples,
        num_warmup=num_warmup,
        event_shape=(2,),
        progress=progress,
    )

    echo(
        "[3/4] comparison (wall_s excludes compilation; sampler_error against a long replica-"
        "exchange run on the energy, model_error of that run against fresh data)"
    )
    echo(str(comparison))
    for name in samplers:
        echo(f"\n{name}:")
        echo(str(comparison.reports[name]))

    echo(f"\n[4/4] writing results to {out_dir}")
    files = _write_demo_outputs(out_dir, comparison, result, energy, data)
    metrics_record = {
        "dataset": dataset,
        "num_data": num_data,
        "training": {"num_steps": settings.num_steps, **trained.metadata},
        "comparison": json.loads(comparison.table.to_json(orient="index")),
        "warnings": {name: list(r.warnings) for name, r in comparison.reports.items()},
        "files": sorted(str(path.relative_to(out_dir)) for path in files),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics_record, indent=1))
    echo("      " + ", ".join([*metrics_record["files"], "metrics.json"]))
    return metrics_record


def _draws(comparison: Comparison, name: str) -> np.ndarray:
    from numpyro_ebm import _arviz

    return np.asarray(_arviz.group(comparison.idata[name], "posterior")["x"]).reshape(-1, 2)


def _write_demo_outputs(out_dir, comparison, result, energy, data) -> list[Path]:
    files = comparison.save(out_dir / "idata")
    files += comparison.plot(out_dir)
    files.append(plots.training_curve(result.history, out_dir / "training_loss.png"))
    samples = {"data": data[:5000]} | {name: _draws(comparison, name) for name in comparison.idata}
    files.append(plots.samples_grid(samples, out_dir / "samples.png"))
    first = next(iter(comparison.idata))
    files.append(
        plots.energy_landscape(
            energy,
            out_dir / "energy_landscape.png",
            samples=_draws(comparison, first)[:5000],
            title=f"learned density exp(-E(x, sigma_L)) and {first} samples",
        )
    )
    return files
