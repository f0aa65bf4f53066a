#!/usr/bin/env python3
"""ChEES-HMC, MEADS and MCLMC against our NUTS: ESS per second on three posteriordb posteriors
(eight schools non-centred, kidiq ``kidscore_momhsiq``, ``arK``), on the CPU.

Per model and seed, each sampler draws 16 chains (MEADS' four folds of four) of 1000 warm-up
and 1000 kept transitions through ``ne.sample``; the call is timed from the key to the draws on
the host, compilation excluded (each sampler's first call compiles and is timed as its first
result; the later calls reuse the program). The order of the samplers rotates from seed to
seed. The same functions judge all (``ne.diagnostics.ess_bulk`` and ``rhat`` over the
reference quantities): ESS is the minimum bulk ESS, a run is **mixed** with max R-hat <= 1.01
and no divergence, and its accuracy is posteriordb's standardized error max |mean - ref mean|
/ ref sd. The ratio sampler / NUTS of ESS per second is taken per seed over the seeds where
both mixed; a sampler **wins** on a model when every such ratio is above 1 and it mixed in
every seed, **loses** when every ratio is below 1, and is **within spread** otherwise. Wrapped
in ``_common.Contention`` (quiet machine waited for, contamination recorded).

Run: ``python benchmarks/bench_adaptive.py [--seeds 3] [--out benchmarks/results/adaptive.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import _common
import jax
from test_adaptive_samplers import DATA, POSTERIORS

import numpyro_ebm as ne

SAMPLERS = ("nuts", "chees_hmc", "meads", "mclmc")
RHAT_THRESHOLD = 1.01


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--max-foreign", type=float, default=0.3)
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "adaptive.json")
    return parser.parse_args(argv)


def quantity(posterior, name: str) -> np.ndarray:
    base, _, index = name.partition("[")
    draws = posterior[base].values
    return draws[..., int(index[:-1]) - 1] if index else draws


def judge(idata, seconds: float, reference: dict) -> dict:
    posterior = idata.posterior
    draws = {name: quantity(posterior, name) for name in reference}
    ess = min(float(ne.diagnostics.ess_bulk(d)) for d in draws.values())
    rhat = max(float(ne.diagnostics.rhat(d)) for d in draws.values())
    divergences = int(idata.sample_stats.diverging.values.sum())
    error = max(
        abs(float(d.mean()) - reference[n]["mean"]) / reference[n]["sd"] for n, d in draws.items()
    )
    return {
        "seconds": seconds,
        "min_ess_bulk": ess,
        "ess_per_s": ess / seconds,
        "max_rhat": rhat,
        "divergences": divergences,
        "mixed": bool(rhat <= RHAT_THRESHOLD and divergences == 0),
        "max_std_mean_error": error,
    }


def verdict(rows: list[dict], nuts: list[dict]) -> dict:
    ratios = [
        r["ess_per_s"] / n["ess_per_s"]
        for r, n in zip(rows, nuts, strict=True)
        if r["mixed"] and n["mixed"]
    ]
    if len(ratios) < 2:
        word = "no claim"
    elif all(r["mixed"] for r in rows) and min(ratios) > 1:
        word = "wins"
    elif max(ratios) < 1:
        word = "loses"
    else:
        word = "within spread"
    spread = (
        {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)}
        if ratios
        else None
    )
    return {"ratio_over_nuts": spread, "verdict": word}


def main(argv=None) -> dict:
    args = parse_args(argv)
    models = {}
    with _common.Contention(args.max_foreign, args.max_wait) as guard:
        for posterior, model in POSTERIORS.items():
            spec = json.loads((DATA / f"{posterior}.json").read_text())
            rows = {name: [] for name in SAMPLERS}
            first = {}
            for seed in range(args.seeds):
                order = SAMPLERS[seed % len(SAMPLERS) :] + SAMPLERS[: seed % len(SAMPLERS)]
                for name in order:

                    def run(name=name, seed=seed, model=model, spec=spec):
                        return ne.sample(
                            model,
                            name,
                            key=jax.random.key(seed),
                            model_kwargs=spec["data"],
                            num_chains=args.chains,
                            num_samples=args.draws,
                            num_warmup=args.draws,
                        )

                    if name not in first:
                        started = time.perf_counter()
                        run()
                        first[name] = time.perf_counter() - started
                    started = time.perf_counter()
                    idata = run()
                    seconds = time.perf_counter() - started
                    row = judge(idata, seconds, spec["reference"]) | {"seed": seed}
                    rows[name].append(row)
                    print(
                        f"{posterior} seed {seed} {name}: {seconds:.2f} s, min ESS "
                        f"{row['min_ess_bulk']:.0f}, ESS/s {row['ess_per_s']:.0f}, R-hat "
                        f"{row['max_rhat']:.3f}, error {row['max_std_mean_error']:.3f}",
                        flush=True,
                    )
            models[posterior] = {
                "runs": rows,
                "first_result_s": first,
                "against_nuts": {name: verdict(rows[name], rows["nuts"]) for name in SAMPLERS[1:]},
            }
    result = {
        "benchmark": "adaptive_samplers",
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "git": _common.git_revision(),
        "command": "python benchmarks/bench_adaptive.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "chains": args.chains,
        "draws": args.draws,
        "models": models,
        "contention": guard.record(),
        "machine": _common.machine_info(),
        "device": _common.jax_device(),
        "versions": _common.local_versions(),
    }
    _common.write_json(args.out, result)
    for posterior, entry in models.items():
        cells = []
        for name, v in entry["against_nuts"].items():
            r = v["ratio_over_nuts"]
            spread = f"{r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]" if r else "-"
            cells.append(f"{name} {spread} {v['verdict']}")
        print(f"{posterior}: " + "; ".join(cells))
    if guard.contaminated:
        print("CONTAMINATED: other processes used the machine during the measurement")
    return result


if __name__ == "__main__":
    main()
