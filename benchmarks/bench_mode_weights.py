"""Is a learned energy a faithful density? Mode weights and held-out log-likelihood of the
default training (``workflow.train``, as ``numpyro-ebm train`` and the demo run it) against
the truth, with and without its maximum-likelihood stage, side by side in one run.

For each seed, the same data and key train twice: score matching alone (NCSN,
``likelihood_steps=0``) and the default (NCSN, then maximum likelihood with replica-exchange
negatives). Reported per run: the masses that :math:`e^{-E(x, \\sigma_L)}` puts on each mode
(quadrature on a grid, Voronoi cells of the true centres) against the true weights, the
held-out log-likelihood (AIS with its standard error, and quadrature) beside the true
density's on the same smoothed points, with the paired difference, and the training time.

    .venv/bin/python benchmarks/bench_mode_weights.py                 # 3 seeds, ~8 minutes
    .venv/bin/python benchmarks/bench_mode_weights.py --seeds 0 --dataset gaussian_mixture

Writes ``benchmarks/results/mode_weights.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import jax
import numpy as np
from _common import (
    RESULTS,
    Contention,
    command_line,
    git_revision,
    local_versions,
    machine_info,
    utc_now,
)

from numpyro_ebm import datasets, metrics, workflow

RINGS = {
    "weighted_ring": datasets.WEIGHTED_RING,
    "gaussian_mixture": datasets.RingMixture(
        (1 / 8,) * 8, datasets.GAUSSIAN_MIXTURE_RADIUS, datasets.GAUSSIAN_MIXTURE_STD
    ),
}


def run(dataset: str, seed: int, likelihood_steps: int | None) -> dict:
    ring = RINGS[dataset]
    key = jax.random.key(seed)
    data = np.asarray(datasets.toy(dataset, jax.random.fold_in(key, 1), 10_000))
    settings = workflow.TrainSettings()
    if likelihood_steps is not None:
        settings = settings._replace(likelihood_steps=likelihood_steps)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        trained, _ = workflow.train(
            data,
            settings,
            key=key,
            out_dir=out,
            progress=False,
            truth=datasets.toy_log_prob(dataset),
        )
        seconds = time.perf_counter() - start
    weights = metrics.density_mode_weights(
        workflow.energy_of(trained), ring.centers, [-4.5, -4.5], [4.5, 4.5], 300
    )
    return {
        "likelihood_steps": settings.likelihood_steps if settings.likelihood_stage else 0,
        "train_seconds_with_evaluation": round(seconds, 1),
        "weights": np.round(weights, 4).tolist(),
        "max_weight_error": float(np.max(np.abs(weights - np.asarray(ring.weights)))),
        "held_out": trained.metadata["held_out"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="weighted_ring", choices=sorted(RINGS))
    parser.add_argument("--out", default=str(RESULTS / "mode_weights.json"))
    args = parser.parse_args(argv)
    ring = RINGS[args.dataset]
    rows = []
    # the contention guard: waits for a quiet machine, records the others' load meanwhile
    with Contention() as guard:
        for seed in args.seeds:
            for label, steps in (("score matching alone", 0), ("default", None)):
                row = {"seed": seed, "training": label, **run(args.dataset, seed, steps)}
                held = row["held_out"]
                print(
                    f"seed {seed} {label:>21}: weights {row['weights']} (max error "
                    f"{row['max_weight_error']:.3f}); held-out log-lik {held['mean']:.4f} +- "
                    f"{held['standard_error']:.4f} (AIS), {held['mean_quadrature']:.4f} "
                    f"(quadrature), truth {held['true_mean']:.4f}: difference "
                    f"{held['difference']:+.4f} +- {held['difference_standard_error']:.4f}; "
                    f"{row['train_seconds_with_evaluation']} s",
                    flush=True,
                )
                rows.append(row)
    record = {
        "benchmark": "mode_weights",
        "date": utc_now().isoformat(timespec="seconds"),
        "git": git_revision(),
        "command": command_line("bench_mode_weights.py", argv),
        "dataset": args.dataset,
        "true_weights": list(ring.weights),
        "runs": rows,
        "contention": guard.record(),
        "machine": machine_info(),
        "versions": local_versions(),
    }
    with open(args.out, "w") as file:
        json.dump(record, file, indent=1)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
