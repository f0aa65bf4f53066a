"""Time the on-device diagnostics against ArviZ on the same draws, in the same run.

Two comparisons, each the median of ``--repeats`` interleaved repeats (after one compile call
for ours, timed separately):

(a) ``rhat``, ``ess_bulk`` and ``ess_tail``: ours jitted together in one function (they share
    their work within a trace) and, for reference, as three separately jitted calls; ArviZ's
    ``az.rhat`` + ``az.ess(method="bulk")`` + ``az.ess(method="tail")`` on a dataset.
(b) ``summary`` (mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_tail, rhat) jitted; ArviZ's
    ``az.summary(kind="diagnostics")`` (mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat) plus
    NumPy's mean and sd, i.e. the same statistics. ``az.summary(kind="all")`` also computes
    94% HDIs, which ours does not, so it is timed for reference only.

Wall-clock and process CPU times are both recorded: other jobs on a shared machine slow both
sides, which is why the repeats are interleaved and the ratios taken within one run.

Example::

    python benchmarks/bench_diagnostics.py --chains 1000 --draws 1000 --params 10 --repeats 5 \
        --out benchmarks/results/diagnostics.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import time
import warnings
from pathlib import Path

import arviz as az
import blackjax
import jax
import jaxlib
import numpy as np
import scipy

from numpyro_ebm import diagnostics

SUMMARY_COLUMNS = {
    "mcse_mean": "mcse_mean",
    "mcse_sd": "mcse_sd",
    "ess_bulk": "ess_bulk",
    "ess_tail": "ess_tail",
    "rhat": "r_hat",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--params", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diagnostics.json"))
    return parser.parse_args()


def make_draws(chains: int, draws: int, params: int, seed: int) -> np.ndarray:
    """AR(1) chains (coefficient 0.5) with slightly shifted chain means."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(chains, draws, params))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0]
    for t in range(1, draws):
        x[:, t] = 0.5 * x[:, t - 1] + noise[:, t]
    return x + 0.1 * rng.normal(size=(chains, 1, params))


def ours_three(x: jax.Array) -> dict[str, jax.Array]:
    return {
        "rhat": diagnostics.rhat(x),
        "ess_bulk": diagnostics.ess_bulk(x),
        "ess_tail": diagnostics.ess_tail(x),
    }


def theirs_three(x: np.ndarray) -> dict[str, np.ndarray]:
    dataset = az.convert_to_dataset({"x": x})
    return {
        "rhat": az.rhat(dataset)["x"].values,
        "ess_bulk": az.ess(dataset, method="bulk")["x"].values,
        "ess_tail": az.ess(dataset, method="tail")["x"].values,
    }


def theirs_summary(x: np.ndarray) -> dict[str, np.ndarray]:
    table = az.summary(az.convert_to_dataset({"x": x}), kind="diagnostics", round_to="none")
    out = {ours: table[col].to_numpy() for ours, col in SUMMARY_COLUMNS.items()}
    out["mean"] = x.mean(axis=(0, 1))
    out["sd"] = x.std(axis=(0, 1), ddof=1)
    return out


def theirs_summary_all(x: np.ndarray) -> object:
    return az.summary(az.convert_to_dataset({"x": x}), kind="all", round_to="none")


def timed(function) -> tuple[float, float, object]:
    """Wall-clock and process CPU seconds of one call, and its result."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = jax.block_until_ready(function())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime), result


def max_rel_err(ours: dict, theirs: dict) -> dict[str, float]:
    return {
        name: float(np.max(np.abs(np.asarray(ours[name]) - ref) / np.abs(ref)))
        for name, ref in theirs.items()
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    args = parse_args()
    x_np = make_draws(args.chains, args.draws, args.params, args.seed).astype(args.dtype)
    load_before = os.getloadavg()
    with jax.enable_x64(args.dtype == "float64"):
        x = jax.device_put(x_np)
        ours = {
            "three": jax.jit(ours_three),
            "summary": jax.jit(diagnostics.summary),
        }
        separate = {
            name: jax.jit(getattr(diagnostics, name)) for name in ("rhat", "ess_bulk", "ess_tail")
        }
        compile_s = {}
        for name, function in ours.items():
            compile_s[name] = timed(lambda function=function: function(x))[0]
        compile_s["separate"] = sum(timed(lambda f=f: f(x))[0] for f in separate.values())

        def run_separate():
            return {name: f(x) for name, f in separate.items()}

        calls = {
            "ours_three": lambda: ours["three"](x),
            "ours_separate": run_separate,
            "ours_summary": lambda: ours["summary"](x),
            "arviz_three": lambda: theirs_three(x_np),
            "arviz_summary": lambda: theirs_summary(x_np),
            "arviz_summary_all": lambda: theirs_summary_all(x_np),
        }
        wall = {name: [] for name in calls}
        cpu = {name: [] for name in calls}
        results = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            for _ in range(args.repeats):
                for name, call in calls.items():
                    w, c, results[name] = timed(call)
                    wall[name].append(w)
                    cpu[name].append(c)
    median_wall = {name: statistics.median(times) for name, times in wall.items()}
    median_cpu = {name: statistics.median(times) for name, times in cpu.items()}

    def ratios(table):
        return {
            "three": table["arviz_three"] / table["ours_three"],
            "three_separately_jitted": table["arviz_three"] / table["ours_separate"],
            "summary": table["arviz_summary"] / table["ours_summary"],
            "summary_vs_arviz_summary_all": table["arviz_summary_all"] / table["ours_summary"],
        }

    summary_ours = {name: np.asarray(v) for name, v in results["ours_summary"].items()}
    three_ours = {name: np.asarray(v) for name, v in results["ours_three"].items()}
    result = {
        "shape": [args.chains, args.draws, args.params],
        "dtype": args.dtype,
        "repeats": args.repeats,
        "what": {
            "ours_three": "jit(rhat + ess_bulk + ess_tail)",
            "ours_separate": "jit(rhat), jit(ess_bulk), jit(ess_tail) called one after another",
            "ours_summary": "jit(summary): mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_tail, rhat",
            "arviz_three": "az.rhat + az.ess(method='bulk') + az.ess(method='tail') on a Dataset",
            "arviz_summary": "az.summary(kind='diagnostics') + numpy mean, sd(ddof=1)",
            "arviz_summary_all": "az.summary(kind='all'): also 94% HDIs (reference only)",
        },
        "speedup_wall": ratios(median_wall),
        "speedup_cpu": ratios(median_cpu),
        "median_wall_s": median_wall,
        "median_cpu_s": median_cpu,
        "wall_s": wall,
        "cpu_s": cpu,
        "jax_compile_s": compile_s,
        "max_rel_err_vs_arviz": {
            "three": max_rel_err(three_ours, results["arviz_three"]),
            "summary": max_rel_err(summary_ours, results["arviz_summary"]),
        },
        "summary_vs_functions_max_rel_err": max_rel_err(summary_ours, three_ours),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "arviz": az.__version__,
            "blackjax": blackjax.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "device": str(jax.devices()[0]),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "speedup_wall",
                    "speedup_cpu",
                    "median_wall_s",
                    "jax_compile_s",
                    "max_rel_err_vs_arviz",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
