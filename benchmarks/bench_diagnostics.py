"""Time jitted ``rhat + ess_bulk + ess_tail`` against ArviZ on the same draws.

Example::

    python benchmarks/bench_diagnostics.py --chains 1000 --draws 1000 --params 10 --repeats 3 \
        --out benchmarks/results/diagnostics.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
import warnings
from pathlib import Path

import arviz as az
import jax
import numpy as np

from numpyro_ebm import diagnostics


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--params", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
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


def ours(x: jax.Array) -> dict[str, jax.Array]:
    return {
        "rhat": diagnostics.rhat(x),
        "ess_bulk": diagnostics.ess_bulk(x),
        "ess_tail": diagnostics.ess_tail(x),
    }


def theirs(x: np.ndarray) -> dict[str, np.ndarray]:
    dataset = az.convert_to_dataset({"x": x})
    return {
        "rhat": az.rhat(dataset)["x"].values,
        "ess_bulk": az.ess(dataset, method="bulk")["x"].values,
        "ess_tail": az.ess(dataset, method="tail")["x"].values,
    }


def timed(function, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(function())
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    args = parse_args()
    x_np = make_draws(args.chains, args.draws, args.params, args.seed).astype(args.dtype)
    with jax.enable_x64(args.dtype == "float64"):
        x = jax.device_put(x_np)
        compiled = jax.jit(ours)
        start = time.perf_counter()
        jax.block_until_ready(compiled(x))
        compile_s = time.perf_counter() - start
        jax_times, jax_values = timed(lambda: compiled(x), args.repeats)
        jax_values = {name: np.asarray(value) for name, value in jax_values.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        arviz_times, arviz_values = timed(lambda: theirs(x_np), args.repeats)
    rel_err = {
        name: float(np.max(np.abs(jax_values[name] - ref) / np.abs(ref)))
        for name, ref in arviz_values.items()
    }
    result = {
        "shape": [args.chains, args.draws, args.params],
        "dtype": args.dtype,
        "repeats": args.repeats,
        "jax_compile_s": compile_s,
        "jax_median_s": statistics.median(jax_times),
        "arviz_median_s": statistics.median(arviz_times),
        "speedup": statistics.median(arviz_times) / statistics.median(jax_times),
        "jax_times_s": jax_times,
        "arviz_times_s": arviz_times,
        "max_rel_err": rel_err,
        "jax_version": jax.__version__,
        "arviz_version": az.__version__,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
