"""The peer section of the suite: numpyro-ebm vs the bare JAX loop vs TorchEBM.

Called by ``benchmarks/run.py`` (``--only peers`` runs this section alone). Three scripts print
one JSON line each in the peers' format: ``benchmarks/peer_bench.py`` (ours),
``shared/peers/jax_reference_bench.py`` (the hand-written JAX loop, run in this repository's
``.venv``: it needs only jax) and ``shared/peers/torchebm_bench.py`` (TorchEBM, in its own venv,
default ``.venv-torchebm/bin/python``; skipped with a note when absent, and by default on a GPU
backend, since that script has no device option and would time the CPU).

Runs are interleaved (repetition > configuration > library, the libraries' order reversed
in every other repetition, so that none always runs first), each a fresh process with
``--seed`` = repetition, at dim 2 and dim 64, 1024 chains each. Contention guarding is the
peers' own: ``run_peers.wait_quiet`` before each run and ``run_peers.run_once``'s foreign-CPU
measurement; a run during which other processes used more than ``max_foreign`` of a core is
discarded and rerun (up to ``attempts`` times). Values are medians over the clean processes of
each process's median of its timed repeats; each ratio comes with its range over processes
and is called within noise when that range contains 1. Every record keeps the load averages
before and after its process; ``meta`` keeps the date, revision and command.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import _common

CONFIGS = {
    "dim2": ["--dim", "2", "--chains", "1024"],
    "dim64": ["--dim", "64", "--chains", "1024"],
}
# Full run: 2 fresh processes per cell (the peers used 3), 500 Langevin steps per timed call
# (1000): the suite's 15-minute budget on 2 cores. 6 timed repeats per process (the peers: 3):
# a timed call is short (0.2-1 s) next to a process's imports and compilations, and this
# machine's speed jumps by up to 2x from one second to the next, so more repeats per process
# steady each process's median at little cost.
FULL_FLAGS = ["--steps", "500", "--repeats", "6"]
FULL_REPS = 2
QUICK_FLAGS = ["--steps", "200", "--train-steps", "100", "--repeats", "1"]
QUICK_CONFIGS = ("dim2",)
# Measured by every library the same way (the peers' three keys).
PEER_METRICS = ("langevin_chain_steps_per_s", "dsm_steps_per_s", "cd10_steps_per_s")
# Measured the same way by ours and the bare JAX loop, derived from each script's first
# (compiling) call or step: ``compile_s`` of both scripts.
FIRST_METRICS = ("langevin_first_call_chain_steps_per_s", "dsm_first_step_s", "cd10_first_step_s")
SECONDS = {"dsm_first_step_s", "cd10_first_step_s"}  # lower is better: ratio = bare / ours
# Ours only: each is compared with the bare loop's value of another metric (its reference).
OURS_ONLY = {
    "langevin_const_chain_steps_per_s": "langevin_chain_steps_per_s",
    "dsm_fit_steps_per_s": "dsm_steps_per_s",
    "cd10_fit_steps_per_s": "cd10_steps_per_s",
    "mala_chain_steps_per_s": "langevin_chain_steps_per_s",
    "annealed_langevin_chain_steps_per_s": "langevin_chain_steps_per_s",
    "mala_first_call_chain_steps_per_s": "langevin_first_call_chain_steps_per_s",
    "annealed_langevin_first_call_chain_steps_per_s": "langevin_first_call_chain_steps_per_s",
}
ROWS = (
    "langevin_chain_steps_per_s",
    "langevin_const_chain_steps_per_s",
    "langevin_first_call_chain_steps_per_s",
    "dsm_steps_per_s",
    "dsm_fit_steps_per_s",
    "dsm_first_step_s",
    "cd10_steps_per_s",
    "cd10_fit_steps_per_s",
    "cd10_first_step_s",
    "mala_chain_steps_per_s",
    "mala_first_call_chain_steps_per_s",
    "annealed_langevin_chain_steps_per_s",
    "annealed_langevin_first_call_chain_steps_per_s",
)
LABELS = {
    "langevin_chain_steps_per_s": "ULA chain-steps/s, weights as arguments (both)",
    "langevin_const_chain_steps_per_s": "ULA chain-steps/s, ours with weights as constants",
    "langevin_first_call_chain_steps_per_s": "ULA first call (compile + run), chain-steps/s",
    "dsm_steps_per_s": "DSM Adam steps/s, one jitted step per dispatch (both)",
    "dsm_fit_steps_per_s": "DSM Adam steps/s, ours through `fit()` (100-step scan)",
    "dsm_first_step_s": "DSM first step (compile), s",
    "cd10_steps_per_s": "CD-10 Adam steps/s, one jitted step per dispatch (both)",
    "cd10_fit_steps_per_s": "CD-10 Adam steps/s, ours through `fit()` (100-step scan)",
    "cd10_first_step_s": "CD-10 first step (compile), s",
    "mala_chain_steps_per_s": "MALA `sample()` chain-steps/s, repeated call (cached programs)",
    "mala_first_call_chain_steps_per_s": "MALA `sample()` chain-steps/s, first call (compiles)",
    "annealed_langevin_chain_steps_per_s": "annealed `sample()` chain-steps/s, repeated call",
    "annealed_langevin_first_call_chain_steps_per_s": "annealed `sample()` chain-steps/s, "
    "first call",
}
REF_NOTES = {
    "langevin_chain_steps_per_s": "bare ULA",
    "langevin_first_call_chain_steps_per_s": "bare ULA's first call",
    "dsm_steps_per_s": "bare per-step DSM",
    "cd10_steps_per_s": "bare per-step CD-10",
}
LIB_NAMES = {"numpyro-ebm": "numpyro-ebm", "jax-reference": "bare JAX", "torchebm": "TorchEBM"}


def load_run_peers(peers_dir: Path):
    spec = importlib.util.spec_from_file_location("run_peers", peers_dir / "run_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_quiet(run_peers, max_foreign: float, max_wait: float) -> tuple[float | None, float]:
    """``run_peers.wait_quiet``; with ``max_wait <= 0`` no probe at all (busy: None)."""
    if max_wait <= 0:
        return None, 0.0
    return run_peers.wait_quiet(max_foreign, max_wait)


def metric_value(result: dict, metric: str) -> float | None:
    """``metric`` of one process's JSON line; the first-call metrics from its ``compile_s``."""
    compile_s = result.get("compile_s") or {}
    cfg = result.get("config") or {}
    if metric == "langevin_first_call_chain_steps_per_s":
        t = compile_s.get("langevin_first_call")
        return cfg["chains"] * cfg["steps"] / t if t and cfg.get("chains") else None
    if metric in SECONDS:
        return compile_s.get(metric[: -len("_s")])
    return result.get(metric)


def matmul_flops(metric: str, cfg: dict) -> float | None:
    """Matmul FLOPs per unit of ``metric`` (None where not meaningful).

    F = 2 (dim h + h^2 + h) is one forward pass of one configuration. A Langevin step is a
    forward and an input-gradient pass, 2F. A CD-k step: k Langevin steps per example, then
    E and its parameter gradient on positives and negatives (3F each): batch (2kF + 6F).
    DSM: score (2F) and the parameter gradient of the score's loss (about 4F): ~6F per example.
    """
    d, h = cfg["dim"], cfg["hidden"]
    f = 2.0 * (d * h + h * h + h)
    if metric in (
        "langevin_chain_steps_per_s",
        "langevin_const_chain_steps_per_s",
        "mala_chain_steps_per_s",
        "annealed_langevin_chain_steps_per_s",
    ):
        return 2 * f
    if metric in ("cd10_steps_per_s", "cd10_fit_steps_per_s"):
        return cfg["batch"] * (2 * cfg.get("cd_k", 10) * f + 6 * f)
    if metric in ("dsm_steps_per_s", "dsm_fit_steps_per_s"):
        return cfg["batch"] * 6 * f
    return None


def fmt(v: float) -> str:
    if v >= 10000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _cell(vals: list[float]) -> str:
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}–{fmt(max(vals))}]"


def ratio_and_range(ours: list[float], ref: list[float], seconds: bool) -> dict:
    """Ratio of medians (> 1: ours faster) and its range over the processes' values: the
    lowest and highest ratio any of ours and any of the reference's values give. The ratio is
    within noise when that range contains 1 (with one value per side: not judged)."""
    if seconds:  # lower is better: ratio = reference / ours
        ratio = statistics.median(ref) / statistics.median(ours)
        lo, hi = min(ref) / max(ours), max(ref) / min(ours)
    else:
        ratio = statistics.median(ours) / statistics.median(ref)
        lo, hi = min(ours) / max(ref), max(ours) / min(ref)
    if len(ours) < 2 or len(ref) < 2:
        verdict = "not judged (one process a side)"
    elif lo <= 1.0 <= hi:
        verdict = "within noise"
    else:
        verdict = "ours faster" if lo > 1.0 else "ours slower"
    return {"ratio": ratio, "lo": lo, "hi": hi, "verdict": verdict}


def summarize(records, libs, peak_gflops) -> dict:
    """Medians over clean runs: {cfg: {"config": ..., "metrics": {metric: {...}}}}.

    A row holds, per library, the median, range and values over its processes (each a
    process's median of its timed repeats), and per comparison ``ours_over_<lib>`` (ratio of
    medians), ``range_<lib>`` ([lo, hi], see :func:`ratio_and_range`) and ``verdict_<lib>``.
    """
    clean, contended = {}, {}
    for rec in records:
        if rec["rc"] == 0 and rec["result"]:
            into = contended if rec["contaminated"] else clean
            into.setdefault((rec["cfg"], rec["lib"]), []).append(rec["result"])
    out = {}
    for cfg_name in dict.fromkeys(rec["cfg"] for rec in records):
        # a cell with no clean run falls back to its contended runs, flagged (never silently)
        runs, fallback = {}, []
        for lib in libs:
            runs[lib] = clean.get((cfg_name, lib), [])
            if not runs[lib] and contended.get((cfg_name, lib)):
                runs[lib] = contended[(cfg_name, lib)]
                fallback.append(lib)
        any_run = next((r for rs in runs.values() for r in rs), None)
        cfg = any_run["config"] if any_run else {}

        def values(lib, m, runs=runs):
            vals = [metric_value(r, m) for r in runs.get(lib, [])]
            return [v for v in vals if v is not None]

        metrics = {}
        for m in ROWS:
            row = {}
            for lib in libs:
                if lib == "torchebm" and m not in PEER_METRICS:
                    continue
                if lib != "numpyro-ebm" and m in OURS_ONLY:
                    continue
                vals = values(lib, m)
                if vals:
                    row[lib] = {
                        "median": statistics.median(vals),
                        "min": min(vals),
                        "max": max(vals),
                        "n": len(vals),
                        "values": vals,
                        "contended": lib in fallback,
                    }
            ours = values("numpyro-ebm", m)
            for lib in ("jax-reference", "torchebm"):
                if lib not in libs or (lib == "torchebm" and m not in PEER_METRICS):
                    continue
                ref = values(lib, OURS_ONLY.get(m, m))
                if ours and ref:
                    rr = ratio_and_range(ours, ref, m in SECONDS)
                    row[f"ours_over_{lib}"] = rr["ratio"]
                    row[f"range_{lib}"] = [rr["lo"], rr["hi"]]
                    row[f"verdict_{lib}"] = rr["verdict"]
            flops = matmul_flops(m, cfg) if cfg else None
            if flops and peak_gflops:
                for lib in ("numpyro-ebm", "jax-reference"):
                    if lib in row:
                        row[f"pct_peak_{lib}"] = (
                            100 * row[lib]["median"] * flops / (peak_gflops * 1e9)
                        )
            if row:
                metrics[m] = row
        comp = {}
        for r in runs.get("numpyro-ebm", []):
            for k, v in (r.get("compile_s") or {}).items():
                comp.setdefault(k, []).append(v)
            for k, v in (r.get("end_to_end") or {}).items():
                if isinstance(v, list):
                    comp.setdefault(k, []).append(statistics.median(v))
                elif isinstance(v, float):
                    comp.setdefault(k, []).append(v)
        out[cfg_name] = {
            "config": cfg,
            "contended_only": fallback,
            "metrics": metrics,
            "ours_costs_s": {k: statistics.median(v) for k, v in sorted(comp.items())},
        }
    return out


def tables_markdown(summary: dict, libs, heading: str = "###") -> list[str]:
    """One table per configuration: ours, bare JAX, TorchEBM, ratios with their ranges and
    verdicts, % of peak, n."""
    have_torch = "torchebm" in libs
    lines = []
    for cfg_name, block in summary.items():
        cfg = block["config"]
        title = (
            f"dim {cfg.get('dim')}, hidden {cfg.get('hidden')}, {cfg.get('chains')} chains, "
            f"{cfg.get('steps')} steps per timed call, batch {cfg.get('batch')}"
            if cfg
            else cfg_name
        )
        lines += [f"{heading} Peers: {title}", ""]
        head = "| metric | numpyro-ebm | bare JAX | " + ("TorchEBM | " if have_torch else "")
        head += "ours / bare JAX [range] | " + ("ours / TorchEBM [range] | " if have_torch else "")
        head += "% peak ours | % peak bare JAX | n (ours/JAX" + ("/Torch)" if have_torch else ")")
        head += " |"
        lines += [head, "|" + " --- |" * (head.count("|") - 1)]
        for m, row in block["metrics"].items():

            def vals(lib, row=row):
                return row.get(lib, {}).get("values", [])

            def cell(lib, row=row):
                values = vals(lib)
                dagger = " †" if values and row.get(lib, {}).get("contended") else ""
                return _cell(values) + dagger if values else "–"

            def ratio(lib, row=row, m=m):
                r = row.get(f"ours_over_{lib}")
                if r is None:
                    return "–"
                lo, hi = row[f"range_{lib}"]
                verdict = row[f"verdict_{lib}"]
                verdict = f"**{verdict}**" if verdict == "within noise" else verdict
                ref = f", vs {REF_NOTES[OURS_ONLY[m]]}" if m in OURS_ONLY else ""
                return f"{r:.2f} [{lo:.2f}–{hi:.2f}] {verdict}{ref}"

            def pk(lib, row=row):
                v = row.get(f"pct_peak_{lib}")
                return f"{v:.0f} %" if v is not None else ""

            cells = [LABELS[m], cell("numpyro-ebm"), cell("jax-reference")]
            if have_torch:
                cells.append(cell("torchebm"))
            cells.append(ratio("jax-reference"))
            if have_torch:
                cells.append(ratio("torchebm"))
            cells += [pk("numpyro-ebm"), pk("jax-reference")]
            cells.append("/".join(str(len(vals(lib))) if vals(lib) else "–" for lib in libs))
            lines.append("| " + " | ".join(cells) + " |")
        costs = {
            k: v
            for k, v in block["ours_costs_s"].items()
            if not k.endswith("num_steps") and not k.endswith("_first_step")
        }
        if block.get("contended_only"):
            lines += [
                "",
                "† no clean run of "
                + ", ".join(LIB_NAMES[lib] for lib in block["contended_only"])
                + ": these figures come from runs during which other processes used the CPU "
                "(see `peers.json`); not comparable, rerun on a quiet machine.",
            ]
        if costs:
            lines += [
                "",
                "numpyro-ebm compile and per-call costs, seconds (median over processes): "
                + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()),
            ]
        lines.append("")
    return lines


def load_lines(records) -> list[str]:
    """The contention record of the runs: others' CPU, load averages, waits."""
    kept = [r for r in records if r["rc"] == 0 and not r["contaminated"]]
    if not records:
        return []
    foreign = [r["foreign_cores"] for r in kept] or [0.0]
    loads = [x for r in records for x in (r.get("loadavg_before"), r.get("loadavg_after")) if x]
    one_min = [x[0] for x in loads]
    out = (
        f"Contention: {len(records)} process runs, {len(records) - len(kept)} discarded as "
        f"contended or failed; in the kept runs other processes used {min(foreign):.3f} to "
        f"{max(foreign):.3f} cores (mean {statistics.mean(foreign):.3f})"
    )
    if one_min:
        out += (
            f"; 1-minute load average {min(one_min):.2f} to {max(one_min):.2f} around the runs "
            "(our own process included)"
        )
    return [out + ". Per run: `peers.json` (`foreign_cores`, `busy_before`, `loadavg_*`)."]


NOTES = [
    "Langevin: ours is `numpyro_ebm.kernels.ula` (ULA) vmapped over chains in a "
    "`lax.scan`, one key per chain, as a BlackJAX user writes it, in one `jax.jit` that takes "
    "the MLP's parameters as an argument, as the bare loop takes its weights; the bare loop "
    "draws one (chains, dim) normal per step and calls `vmap(grad(E))`; TorchEBM is "
    "`LangevinDynamics.sample` (PyTorch eager, all cores). The 'weights as constants' row is "
    "ours with the parameters closed over (what `sample()` does with an energy), its repeats "
    "interleaved with the main row's in the same process.",
    "DSM / CD-10, main rows: the same harness on both sides, one jitted optimizer step "
    "(loss, gradient, Adam) dispatched per step over the same 16 pre-made batches, cycled; "
    "ours is `training.dsm` / `training.cd(k=10, alpha=0.001)` + `optax.adam`, the bare loop "
    "its hand-written loss and Adam. The `fit()` rows are ours through `ne.fit` (100 steps per "
    "compiled `lax.scan` chunk, minibatches drawn with replacement, finiteness checks), "
    "compared with the bare per-step loop: not the same treatment (the bare script has no "
    "scan variant), shown because it is how the library trains.",
    "First call / first step: the wall of the compiling call (ULA: compile + one timed-size "
    "run, as a rate) or step (DSM, CD-10: seconds, ratio = bare / ours), from both scripts' "
    "`compile_s`.",
    "MALA / annealed Langevin have no peer; their ratio compares with the bare JAX ULA loop "
    "(same gradient count per step, different algorithm). A repeated `sample()` call takes its "
    "programs from the program cache (JAX reports no compile time during it, see "
    "`*_sample_call_compile_s`); the first call traces and compiles. `sample()` takes an energy "
    "callable, so the weights are constants of its programs: its API cannot take them as "
    "arguments (compare the two ULA rows for what that costs).",
    "Ranges: a value's brackets are the range over fresh processes (each the median of its "
    "timed repeats); a ratio's brackets are the lowest and highest ratio of any of ours' "
    "values to any of the reference's. **within noise**: that range contains 1.",
    "'% peak': matmul FLOPs only (forward + input gradient per Langevin step; DSM approximate; "
    "see `matmul_flops` in `benchmarks/peers.py`).",
]


def run(
    *,
    quick: bool,
    reps: int | None,
    configs: list[str] | None,
    peers_dir: Path,
    python: str,
    torchebm_python: str,
    force_torchebm: bool,
    backend: str,
    extra: list[str],
    max_foreign: float,
    attempts: int,
    max_wait: float,
    timeout: float,
    peak_gflops: float | None,
    out_dir: Path,
) -> dict:
    """Run the peer section; write ``peers.json`` and ``peers.md`` in ``out_dir``."""
    run_peers = load_run_peers(peers_dir)
    libs = {
        "numpyro-ebm": (python, str(_common.ROOT / "benchmarks" / "peer_bench.py")),
        "jax-reference": (python, str(peers_dir / "jax_reference_bench.py")),
    }
    notes = []
    if not os.path.exists(torchebm_python):
        notes.append(
            f"TorchEBM venv not found at {torchebm_python}: TorchEBM skipped "
            "(see shared/peers/README.md, 'Install')"
        )
    elif backend != "cpu" and not force_torchebm:
        notes.append(
            f"backend {backend}: TorchEBM skipped (its peer script runs on the CPU only; "
            "pass --torchebm-python to time it anyway)"
        )
    else:
        libs["torchebm"] = (torchebm_python, str(peers_dir / "torchebm_bench.py"))
    for n in notes:
        print("note:", n, flush=True)

    reps = reps or (1 if quick else FULL_REPS)
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    flags_common = (QUICK_FLAGS if quick else FULL_FLAGS) + list(extra)
    configs = configs or list(QUICK_CONFIGS if quick else CONFIGS)
    vers = {"numpyro-ebm": _common.versions(python)}
    if "torchebm" in libs:
        vers["torchebm"] = _common.versions(libs["torchebm"][0], ["torch", "torchebm"])
    meta = {
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "git": _common.git_revision(),
        "command": command.strip(),
        "machine": _common.machine_info(),
        "versions": vers,
        "configs": {c: CONFIGS[c] for c in configs},
        "reps": reps,
        "flags": flags_common,
        "libs": {k: list(v) for k, v in libs.items()},
        "notes": notes,
        "max_foreign": max_foreign,
        "peak_gflops": peak_gflops,
    }
    raw_path = out_dir / "peers.json"
    records = []
    t_all = time.perf_counter()
    for rep in range(1, reps + 1):
        # alternate which library runs first: ours first in odd repetitions, last in even ones
        order = list(libs) if rep % 2 else list(libs)[::-1]
        for cfg in configs:
            for position, name in enumerate(order):
                lib_py, script = libs[name]
                flags = ["--seed", str(rep), *CONFIGS[cfg], *flags_common]
                for attempt in range(1, attempts + 1):
                    busy, waited = wait_quiet(run_peers, max_foreign, max_wait)
                    load_before = [round(x, 2) for x in os.getloadavg()]
                    try:
                        rec = run_peers.run_once(lib_py, script, flags, timeout)
                    except Exception as e:  # a timeout: record it, go on
                        rec = {
                            "rc": -1,
                            "wall_s": timeout,
                            "foreign_cores": 0.0,
                            "steal_s": 0.0,
                            "result": None,
                            "stderr_tail": repr(e)[-400:],
                        }
                    rec.update(
                        {
                            "rep": rep,
                            "cfg": cfg,
                            "lib": name,
                            "position": position,
                            "attempt": attempt,
                            "loadavg_before": load_before,
                            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                            "busy_before": None if busy is None else round(busy, 3),
                            "waited_s": round(waited, 1),
                            "flags": flags,
                            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        }
                    )
                    rec["contaminated"] = (
                        rec["foreign_cores"] + rec["steal_s"] / max(rec["wall_s"], 1e-9)
                    ) > max_foreign
                    records.append(rec)
                    _common.write_json(raw_path, {"meta": meta, "runs": records})
                    print(
                        f"  peers rep={rep} cfg={cfg} lib={name} attempt={attempt} "
                        f"wall={rec['wall_s']}s foreign={rec['foreign_cores']} rc={rec['rc']} "
                        f"{'CONTAMINATED' if rec['contaminated'] else 'clean'}"
                        + (f"\n  stderr: {rec['stderr_tail']}" if rec["rc"] else ""),
                        flush=True,
                    )
                    if rec["rc"] == 0 and not rec["contaminated"] and rec["result"]:
                        break
    summary = summarize(records, list(libs), peak_gflops)
    n_bad = sum(1 for r in records if r["contaminated"] or r["rc"] != 0)
    result = {
        "benchmark": "peers",
        "meta": meta,
        "summary": summary,
        "attempts": len(records),
        "discarded": n_bad,
        "total_s": time.perf_counter() - t_all,
        "runs": records,
    }
    _common.write_json(raw_path, result)
    md = [
        "# Peer benchmark: numpyro-ebm vs bare JAX vs TorchEBM",
        "",
        f"Measured {meta['date']}, revision {meta['git']}, by `{meta['command']}`; raw runs: "
        f"`{raw_path.name}`.",
        "",
        "Each value: median over the clean fresh processes (seeds 1..n) of each process's "
        "median of its timed repeats; brackets: range over processes. Ratios are of medians "
        "(> 1: numpyro-ebm faster), with the range of the ratio over processes; which library "
        "runs first alternates between repetitions.",
        "",
        *tables_markdown(summary, list(libs), heading="##"),
        *load_lines(records),
        "",
        f"Attempts: {len(records)}, discarded (contaminated or failed): {n_bad}. "
        f"Flags for every run: `{' '.join(flags_common)}`.",
        "",
        *(f"* {n}" for n in NOTES + notes),
        "",
    ]
    (out_dir / "peers.md").write_text("\n".join(md))
    result["libs"] = list(libs)
    return result


def load(out_dir: Path) -> dict | None:
    path = out_dir / "peers.json"
    return json.loads(path.read_text()) if path.is_file() else None
