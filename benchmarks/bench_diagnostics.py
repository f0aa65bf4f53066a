"""Time the on-device diagnostics against ArviZ on the same draws, in the same run.

For each shape (chains, draws, params) (``--chains`` x ``--draws``, ``--params`` parameters;
by default a typical run, 4 chains x 1000 draws, and a many-chain one, 1000 x 1000), two
comparisons:

(a) ``rhat``, ``ess_bulk`` and ``ess_tail``: ours as ``summary(x, stats=(...))`` (one
    program sharing their work) and as three separately jitted calls; ArviZ's
    ``az.rhat`` + ``az.ess(method="bulk")`` + ``az.ess(method="tail")`` on a dataset.
(b) ``summary`` (mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_tail, rhat) jitted; ArviZ's
    ``az.summary(kind="diagnostics")`` (mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat) plus
    NumPy's mean and sd, i.e. the same statistics. (``--summary-all``: also
    ``az.summary(kind="all")``, which adds 94 % HDIs that ours does not compute; reference
    only.)

**Symmetric work.** Every timed call of either side starts from the same host NumPy array and
ends with host NumPy arrays: ours is ``device_put`` + the jitted function + copying each result
to the host (``np.asarray``); ArviZ's is ``convert_to_dataset`` + its functions + ``.values``
(``DataFrame.to_numpy`` for the summary). Conversions are included on both sides.

**Two rates.** "first result": each side's first call at the shape, our compilation included
(ours is jitted per shape; one untimed call of both sides on a tiny shape first takes the
process's one-time costs, JAX's start and ArviZ's lazy imports, out of both). "compiled"
(steady state): the median of ``--repeats`` interleaved rounds after that; rounds alternate
which side runs first. Ratios are ArviZ time / ours (> 1: ours faster); the compiled ratio's
range is that of each round's pair. Wall-clock and process CPU times (all threads) are both
recorded, and each shape runs inside ``_common.Contention`` (others' load while measuring,
load averages; a contended shape is marked ``contaminated``).

Example::

    python benchmarks/bench_diagnostics.py --chains 4 1000 --draws 1000 --params 10 \
        --repeats 20 5 --out benchmarks/results/diagnostics.json
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

from numpyro_ebm import diagnostics

SUMMARY_COLUMNS = {
    "mcse_mean": "mcse_mean",
    "mcse_sd": "mcse_sd",
    "ess_bulk": "ess_bulk",
    "ess_tail": "ess_tail",
    "rhat": "r_hat",
}
# (ours, theirs) of each ratio
COMPARISONS = {
    "three": ("ours_three", "arviz_three"),
    "three_separately_jitted": ("ours_separate", "arviz_three"),
    "summary": ("ours_summary", "arviz_summary"),
    "summary_vs_arviz_summary_all": ("ours_summary", "arviz_summary_all"),
}
WHAT = {
    "ours_three": "device_put + jit(summary(stats=(rhat, ess_bulk, ess_tail))) + np.asarray of "
    "each result",
    "ours_separate": "device_put + jit(rhat), jit(ess_bulk), jit(ess_tail) one after another "
    "+ np.asarray",
    "ours_summary": "device_put + jit(summary): mean, sd, mcse_mean, mcse_sd, ess_bulk, "
    "ess_tail, rhat + np.asarray",
    "arviz_three": "convert_to_dataset + az.rhat + az.ess(method='bulk') + "
    "az.ess(method='tail') + .values",
    "arviz_summary": "convert_to_dataset + az.summary(kind='diagnostics') + numpy mean, "
    "sd(ddof=1) + to_numpy",
    "arviz_summary_all": "convert_to_dataset + az.summary(kind='all'): also 94% HDIs "
    "(reference only)",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, nargs="+", default=[4, 1000])
    parser.add_argument(
        "--draws", type=int, nargs="+", default=[1000], help="one value, or one per --chains"
    )
    parser.add_argument("--params", type=int, default=10)
    parser.add_argument(
        "--repeats",
        type=int,
        nargs="+",
        default=[20, 5],
        help="interleaved rounds after the first call: one value, or one per --chains",
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--summary-all", action="store_true", help="also time az.summary(kind='all')"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/diagnostics.json"))
    args = parser.parse_args(argv)
    for name in ("draws", "repeats"):
        v = getattr(args, name)
        if len(v) not in (1, len(args.chains)):
            parser.error(f"--{name} takes one value or one per --chains value")
        if len(v) == 1:
            setattr(args, name, v * len(args.chains))
    return args


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
    return diagnostics.summary(x, stats=("rhat", "ess_bulk", "ess_tail"))


def to_host(tree) -> dict[str, np.ndarray]:
    return {name: np.asarray(v) for name, v in tree.items()}


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
    return az.summary(az.convert_to_dataset({"x": x}), kind="all", round_to="none").to_numpy()


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(function) -> tuple[float, float, object]:
    """Wall-clock and process CPU seconds of one call, and its (host) result."""
    cpu, start = _cpu_s(), time.perf_counter()
    result = function()
    return time.perf_counter() - start, _cpu_s() - cpu, result


def max_rel_err(ours: dict, theirs: dict) -> dict[str, float]:
    return {
        name: float(np.max(np.abs(np.asarray(ours[name]) - ref) / np.abs(ref)))
        for name, ref in theirs.items()
    }


def make_calls(x_np: np.ndarray, summary_all: bool) -> tuple[dict, dict]:
    """Fresh jitted functions (so each shape's first call compiles) and the timed calls."""
    three, summary = jax.jit(ours_three), jax.jit(diagnostics.summary)
    separate = {n: jax.jit(getattr(diagnostics, n)) for n in ("rhat", "ess_bulk", "ess_tail")}

    def run_separate():
        x = jax.device_put(x_np)
        return to_host({name: f(x) for name, f in separate.items()})

    ours = {
        "ours_three": lambda: to_host(three(jax.device_put(x_np))),
        "ours_separate": run_separate,
        "ours_summary": lambda: to_host(summary(jax.device_put(x_np))),
    }
    theirs = {
        "arviz_three": lambda: theirs_three(x_np),
        "arviz_summary": lambda: theirs_summary(x_np),
    }
    if summary_all:
        theirs["arviz_summary_all"] = lambda: theirs_summary_all(x_np)
    return ours, theirs


def measure_shape(x_np: np.ndarray, repeats: int, summary_all: bool, ours_first: bool) -> dict:
    ours, theirs = make_calls(x_np, summary_all)
    sides = [ours, theirs] if ours_first else [theirs, ours]
    first_wall, first_cpu, results = {}, {}, {}
    for side in sides:  # the first calls: ours compile here
        for name, call in side.items():
            first_wall[name], first_cpu[name], results[name] = timed(call)
    wall = {name: [] for name in (*ours, *theirs)}
    cpu = {name: [] for name in wall}
    orders = []
    for r in range(repeats):
        order = sides if r % 2 == 0 else sides[::-1]
        orders.append([name for side in order for name in side])
        for side in order:
            for name, call in side.items():
                w, c, results[name] = timed(call)
                wall[name].append(w)
                cpu[name].append(c)
    median_wall = {name: statistics.median(v) for name, v in wall.items()}
    median_cpu = {name: statistics.median(v) for name, v in cpu.items()}

    def ratios(table):
        return {
            k: table[t] / table[o] for k, (o, t) in COMPARISONS.items() if t in table and o in table
        }

    def ratio_ranges(rows):
        out = {}
        for k, (o, t) in COMPARISONS.items():
            if t in rows and o in rows:
                per = [a / b for a, b in zip(rows[t], rows[o], strict=True)]
                out[k] = [min(per), max(per)]
        return out

    three_ours, summary_ours = results["ours_three"], results["ours_summary"]
    return {
        "repeats": repeats,
        "first_side": "ours" if ours_first else "arviz",
        "speedup_compiled_wall": ratios(median_wall),
        "speedup_compiled_wall_range": ratio_ranges(wall),
        "speedup_compiled_cpu": ratios(median_cpu),
        "speedup_first_result_wall": ratios(first_wall),
        "speedup_first_result_cpu": ratios(first_cpu),
        "median_wall_s": median_wall,
        "median_cpu_s": median_cpu,
        "first_call_wall_s": first_wall,
        "first_call_cpu_s": first_cpu,
        # the first call's time beyond a compiled call's: compilation (and tracing)
        "jax_compile_s": {
            name: first_wall[name] - median_wall[name] for name in ours if name in first_wall
        },
        "wall_s": wall,
        "cpu_s": cpu,
        "orders": orders,
        "max_rel_err_vs_arviz": {
            "three": max_rel_err(three_ours, results["arviz_three"]),
            "summary": max_rel_err(summary_ours, results["arviz_summary"]),
        },
        "summary_vs_functions_max_rel_err": max_rel_err(summary_ours, three_ours),
    }


def numpy_sort_ms() -> float:
    """The fastest of 5 ``np.sort`` of 10^6 float64 normal draws, in ms: NumPy dispatches its
    sort on the CPU's features, and one of its paths can be several times slower than another
    on a given host (AVX-512 against AVX2 on AMD Zen 4, 2026-12-07: 52 against 8.7 ms)."""
    x = np.random.default_rng(0).standard_normal(10**6)
    # each call sorts a fresh copy in place, made before its clock starts
    return round(1000 * min(timed(x.copy().sort)[0] for _ in range(5)), 2)


def main(argv=None) -> None:
    args = parse_args(argv)
    shapes = []
    with (
        jax.enable_x64(args.dtype == "float64"),
        warnings.catch_warnings(),
        _common.Contention() as whole,
    ):
        warnings.simplefilter("ignore", FutureWarning)
        # the process's one-time costs (JAX's start, ArviZ's lazy imports), out of both sides
        tiny = make_draws(2, 50, 1, args.seed).astype(args.dtype)
        for side in make_calls(tiny, args.summary_all):
            for call in side.values():
                call()
        for i, (chains, draws, repeats) in enumerate(
            zip(args.chains, args.draws, args.repeats, strict=True)
        ):
            x_np = make_draws(chains, draws, args.params, args.seed).astype(args.dtype)
            with _common.Contention(max_wait=120.0) as guard:
                row = measure_shape(x_np, repeats, args.summary_all, ours_first=i % 2 == 0)
            row = {"shape": [chains, draws, args.params], "dtype": args.dtype} | row
            row["contention"] = guard.record()
            shapes.append(row)
            s = row["speedup_compiled_wall"]
            f = row["speedup_first_result_wall"]
            c = row["contention"]
            print(
                f"shape {tuple(row['shape'])}: compiled three {s['three']:.3g} "
                f"{[round(v, 3) for v in row['speedup_compiled_wall_range']['three']]} "
                f"summary {s['summary']:.3g}; first result three {f['three']:.3g} "
                f"summary {f['summary']:.3g}; compile {row['jax_compile_s']}; "
                f"foreign {c['foreign_cores']}{' CONTAMINATED' if c['contaminated'] else ''}",
                flush=True,
            )
    argv_list = sys.argv[1:] if argv is None else list(argv)
    result = {
        "benchmark": "diagnostics",
        "date": _common.utc_now().isoformat(timespec="seconds"),
        "revision": _common.git_revision(),
        "command": " ".join(["python", "benchmarks/bench_diagnostics.py", *argv_list]),
        "machine": _common.machine_info(),
        "versions": _common.local_versions() | {"numpy": np.__version__},
        "device": _common.jax_device(),
        # Our CPU sort is NumPy's: its speed on this host, and the dispatch switch that picks it.
        "numpy_sort_1e6_float64_ms": numpy_sort_ms(),
        "NPY_DISABLE_CPU_FEATURES": os.environ.get("NPY_DISABLE_CPU_FEATURES", ""),
        "settings": vars(args) | {"out": str(args.out)},
        "timing": (
            "every call starts from the same host NumPy array and returns host NumPy arrays: "
            "conversions (device_put / convert_to_dataset, results to the host) included on "
            "both sides"
        ),
        "what": {k: v for k, v in WHAT.items() if args.summary_all or k != "arviz_summary_all"},
        "contention": whole.record(),
        "contaminated": whole.contaminated or any(r["contention"]["contaminated"] for r in shapes),
        "shapes": shapes,
    }
    _common.write_json(args.out, result)


if __name__ == "__main__":
    main()
