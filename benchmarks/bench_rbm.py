"""Our RBM (PCD-1) against scikit-learn's ``BernoulliRBM`` on binarized digits: time to reach
the same exact held-out log-likelihood, and the best log-likelihood each reaches.

Both sides run in fresh processes, interleaved (``--reps`` of each), on the peer's data and
settings (``shared/peers/sklearn_rbm_bench.py``, the agreed script, run as is): binarized
digits (pixel >= 8), NumPy ``default_rng(0)`` shuffle, 1500 training and 297 held-out images,
16 hidden units, batch 10, learning rate 0.05, plain SGD, ``--epochs`` epochs; after every
epoch, the exact held-out log-likelihood (log Z summed over the 2^16 hidden states), computed
outside the timed region on both sides.

Ours is :func:`numpyro_ebm.training.rbm.train_rbm` with ``method="pcd"``, ``k=1``, 10 persistent
chains (as scikit-learn keeps ``batch_size`` of them), no momentum and no weight decay, one
``fit`` chunk per epoch (150 updates), for ``--our-epochs`` epochs (default 40, twice
scikit-learn's: the summary compares both the first ``--epochs`` and all of them). Two
differences, both library defaults: minibatches are drawn with replacement (scikit-learn
sweeps a permutation), and the visible biases start at the training data's log-odds
(scikit-learn starts them at 0). The gradient is the same Rao-Blackwellized one scikit-learn
uses (hidden probabilities in both phases).

Timing: scikit-learn's cumulative ``partial_fit`` seconds per epoch (its own script). Ours: the
``fit`` callback's clock after each epoch. The first chunk also traces and compiles the step,
so two figures are reported: ``train_s`` (run time: epoch 1 counted as the median of the
later epochs' durations, compilation excluded) and ``wall_s`` (from the call of ``train_rbm``,
compilation included).

Run::

    python benchmarks/bench_rbm.py [--reps 2] [--epochs 20] [--out benchmarks/results/rbm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common

ROOT = _common.ROOT
PEER = next(
    (
        path / "shared" / "peers" / "sklearn_rbm_bench.py"
        for path in (ROOT.parent, ROOT.parent.parent)
        if (path / "shared" / "peers" / "sklearn_rbm_bench.py").is_file()
    ),
    ROOT.parent / "shared" / "peers" / "sklearn_rbm_bench.py",
)
HIDDEN, BATCH, LEARNING_RATE = 16, 10, 0.05


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="fresh processes per side")
    parser.add_argument("--epochs", type=int, default=20, help="scikit-learn's epochs")
    parser.add_argument(
        "--our-epochs", type=int, default=40, help="ours (the first --epochs are compared too)"
    )
    parser.add_argument("--peer", type=Path, default=PEER, help="sklearn_rbm_bench.py")
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "rbm.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def worker(epochs: int, seed: int) -> dict:
    """One training run of ours; prints and returns the peer script's JSON shape."""
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT / "examples"))
    from rbm_digits import binarized_digits

    from numpyro_ebm.models.rbm import BernoulliRBM
    from numpyro_ebm.training.rbm import train_rbm

    train, test = binarized_digits(seed)
    steps_per_epoch = train.shape[0] // BATCH
    stamps, snapshots = [], []

    def record(step, params, history):
        del step, history
        stamps.append(time.perf_counter())
        snapshots.append(jax.tree.map(np.asarray, params))

    started = time.perf_counter()
    train_rbm(
        train,
        HIDDEN,
        key=jax.random.key(seed),
        method="pcd",
        k=1,
        learning_rate=LEARNING_RATE,
        num_steps=epochs * steps_per_epoch,
        batch_size=BATCH,
        steps_per_chunk=steps_per_epoch,
        callbacks=[record],
    )
    durations = np.diff(np.asarray([started, *stamps]))
    first = float(np.median(durations[1:])) if epochs > 1 else float(durations[0])
    model = BernoulliRBM(train.shape[1], HIDDEN)
    log_likelihood = jax.jit(model.log_likelihood)
    rows = []
    for epoch, (stamp, params) in enumerate(zip(stamps, snapshots, strict=True), start=1):
        rows.append(
            {
                "epoch": epoch,
                "train_s": round(first + stamp - stamps[0], 4),
                "wall_s": round(stamp - started, 4),
                "test_loglik": float(log_likelihood(params, test)),
            }
        )
    best = max(rows, key=lambda r: r["test_loglik"])
    return {
        "library": "numpyro-ebm",
        "hidden": HIDDEN,
        "lr": LEARNING_RATE,
        "batch": BATCH,
        "compile_and_first_epoch_s": round(float(durations[0]), 3),
        "epochs": rows,
        "best_test_loglik": best["test_loglik"],
        "best_epoch": best["epoch"],
    }


def run(command: list[str]) -> dict:
    """Run one process; its last stdout line is JSON. Adds wall time and the load average."""
    load_before = os.getloadavg()[0]
    env = os.environ | {"JAX_PLATFORMS": "cpu"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"{command} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 2)
    result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def time_to_reach(rows: list[dict], target: float, key: str = "train_s") -> float | None:
    """Seconds (column ``key``) at the first epoch whose log-likelihood is >= ``target``."""
    for row in rows:
        if row["test_loglik"] >= target:
            return row[key]
    return None


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        result = worker(args.epochs, args.seed)
        print(json.dumps(result))
        return result
    flags = ["--hidden", str(HIDDEN), "--epochs", str(args.epochs), "--lr", str(LEARNING_RATE)]
    flags += ["--batch", str(BATCH), "--seed", str(args.seed)]
    ours_cmd = [sys.executable, __file__, "--worker", "--epochs", str(args.our_epochs)]
    ours_cmd += ["--seed", str(args.seed)]
    peer_runs, our_runs = [], []
    for _ in range(args.reps):
        peer_runs.append(run([sys.executable, str(args.peer), *flags]))
        our_runs.append(run(ours_cmd))
        print(
            f"sklearn best {peer_runs[-1]['best_test_loglik']:.3f} at "
            f"{peer_runs[-1]['epochs'][-1]['train_s']:.2f} s total; ours best "
            f"{our_runs[-1]['best_test_loglik']:.3f}, {our_runs[-1]['epochs'][-1]['train_s']:.2f}"
            f" s run + {our_runs[-1]['compile_and_first_epoch_s']:.2f} s first chunk"
        )
    peer_best = statistics.median(r["best_test_loglik"] for r in peer_runs)
    peer_time = statistics.median(
        time_to_reach(r["epochs"], r["best_test_loglik"]) for r in peer_runs
    )
    summary = {
        "target_test_loglik": peer_best,
        "sklearn_time_to_target_s": peer_time,
        "sklearn_time_all_epochs_s": statistics.median(
            r["epochs"][-1]["train_s"] for r in peer_runs
        ),
        "sklearn_best_test_loglik": peer_best,
    }
    for label, epochs in (("same_epochs", args.epochs), ("all_epochs", args.our_epochs)):
        rows = [r["epochs"][:epochs] for r in our_runs]
        ours_time = [time_to_reach(r, peer_best) for r in rows]
        ours_wall = [time_to_reach(r, peer_best, "wall_s") for r in rows]
        reached = all(t is not None for t in ours_time)
        summary[label] = {
            "epochs": epochs,
            "ours_time_all_epochs_s": statistics.median(r[-1]["train_s"] for r in rows),
            "ours_best_test_loglik": statistics.median(
                max(row["test_loglik"] for row in r) for r in rows
            ),
            "ours_time_to_target_s": statistics.median(ours_time) if reached else None,
            "ours_wall_to_target_s": statistics.median(ours_wall) if reached else None,
            "speedup_run": peer_time / statistics.median(ours_time) if reached else None,
            "speedup_with_compilation": (
                peer_time / statistics.median(ours_wall) if reached else None
            ),
        }
    result = {
        "benchmark": "rbm",
        "date": _common.utc_now().isoformat(timespec="seconds"),
        "machine": _common.machine_info(),
        "versions": _common.local_versions((*_common.PACKAGES, "scikit-learn")),
        "config": {
            "hidden": HIDDEN,
            "batch": BATCH,
            "lr": LEARNING_RATE,
            "epochs": args.epochs,
            "our_epochs": args.our_epochs,
            "reps": args.reps,
            "seed": args.seed,
        },
        "summary": summary,
        "sklearn": peer_runs,
        "numpyro_ebm": our_runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary))  # one line: benchmarks/run.py reads the last line as JSON
    return result


if __name__ == "__main__":
    main()
