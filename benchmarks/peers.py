"""The peer section of the suite: numpyro-ebm vs the bare JAX loop vs TorchEBM.

Called by ``benchmarks/run.py`` (``--only peers`` runs this section alone). Three scripts print
one JSON line each in the peers' format: ``benchmarks/peer_bench.py`` (ours),
``shared/peers/jax_reference_bench.py`` (the hand-written JAX loop, run in this repository's
``.venv``: it needs only jax) and ``shared/peers/torchebm_bench.py`` (TorchEBM, in its own venv,
default ``.venv-torchebm/bin/python``; skipped with a note when absent, and by default on a GPU
backend, since that script has no device option and would time the CPU).

Runs are interleaved (repetition > configuration > library), each a fresh process with
``--seed`` = repetition, at dim 2 and dim 64, 1024 chains each. Contention guarding is the
peers' own: ``run_peers.wait_quiet`` before each run and ``run_peers.run_once``'s foreign-CPU
measurement; a run during which other processes used more than ``max_foreign`` of a core is
discarded and rerun (up to ``attempts`` times). Values are medians over the clean processes of
each process's median of its timed repeats.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

import _common

CONFIGS = {
    "dim2": ["--dim", "2", "--chains", "1024"],
    "dim64": ["--dim", "64", "--chains", "1024"],
}
# Full run: 2 fresh processes per cell (the peers used 3), 2 timed repeats per process (3),
# 500 Langevin steps per timed call (1000): the suite's 15-minute budget on 2 cores.
FULL_FLAGS = ["--steps", "500", "--repeats", "2"]
FULL_REPS = 2
QUICK_FLAGS = ["--steps", "200", "--train-steps", "100", "--repeats", "1"]
QUICK_CONFIGS = ("dim2",)
PEER_METRICS = ("langevin_chain_steps_per_s", "dsm_steps_per_s", "cd10_steps_per_s")
OURS_ONLY = (
    "mala_chain_steps_per_s",
    "annealed_langevin_chain_steps_per_s",
    "mala_sample_call_chain_steps_per_s",
    "annealed_langevin_sample_call_chain_steps_per_s",
)
LABELS = {
    "langevin_chain_steps_per_s": "Langevin (ULA) chain-steps/s",
    "dsm_steps_per_s": "DSM Adam steps/s",
    "cd10_steps_per_s": "CD-10 Adam steps/s",
    "mala_chain_steps_per_s": "MALA `sample()` chain-steps/s, no compile",
    "annealed_langevin_chain_steps_per_s": "annealed `sample()` chain-steps/s, no compile",
    "mala_sample_call_chain_steps_per_s": "MALA `sample()` chain-steps/s, whole call",
    "annealed_langevin_sample_call_chain_steps_per_s": "annealed `sample()` steps/s, whole call",
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
        "mala_chain_steps_per_s",
        "annealed_langevin_chain_steps_per_s",
    ):
        return 2 * f
    if metric == "cd10_steps_per_s":
        return cfg["batch"] * (2 * cfg.get("cd_k", 10) * f + 6 * f)
    if metric == "dsm_steps_per_s":
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


def summarize(records, libs, peak_gflops) -> dict:
    """Medians over clean runs: {cfg: {"config": ..., "metrics": {metric: {...}}}}."""
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
        metrics = {}
        for m in PEER_METRICS + OURS_ONLY:
            row = {}
            for lib, rs in runs.items():
                vals = [r[m] for r in rs if r.get(m) is not None]
                if vals:
                    row[lib] = {
                        "median": statistics.median(vals),
                        "min": min(vals),
                        "max": max(vals),
                        "n": len(vals),
                        "values": vals,
                        "contended": lib in fallback,
                    }
            ours = row.get("numpyro-ebm", {}).get("median")
            ref_metric = "langevin_chain_steps_per_s" if m in OURS_ONLY else m
            for lib in ("jax-reference", "torchebm"):
                ref = runs.get(lib) and [r[ref_metric] for r in runs[lib] if r.get(ref_metric)]
                if ours and ref and not (m in OURS_ONLY and lib == "torchebm"):
                    row[f"ours_over_{lib}"] = ours / statistics.median(ref)
            flops = matmul_flops(m, cfg) if cfg else None
            if flops and peak_gflops:
                for lib in ("numpyro-ebm", "jax-reference"):
                    if lib in row:
                        row[f"pct_peak_{lib}"] = (
                            100 * row[lib]["median"] * flops / (peak_gflops * 1e9)
                        )
            metrics[m] = row
        comp = {}
        for r in runs.get("numpyro-ebm", []):
            for k, v in (r.get("compile_s") or {}).items():
                comp.setdefault(k, []).append(v)
            for k, v in (r.get("end_to_end") or {}).items():
                if isinstance(v, list):
                    comp.setdefault(k, []).append(statistics.median(v))
        out[cfg_name] = {
            "config": cfg,
            "contended_only": fallback,
            "metrics": metrics,
            "ours_costs_s": {k: statistics.median(v) for k, v in sorted(comp.items())},
        }
    return out


def tables_markdown(summary: dict, libs, heading: str = "###") -> list[str]:
    """One table per configuration: ours, bare JAX, TorchEBM, ratios, % of peak, n."""
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
        head += "ours / bare JAX | " + ("ours / TorchEBM | " if have_torch else "")
        head += "% peak ours | % peak bare JAX | n (ours/JAX" + ("/Torch)" if have_torch else ")")
        head += " |"
        lines += [head, "|" + " --- |" * (head.count("|") - 1)]
        for m, row in block["metrics"].items():

            def vals(lib, row=row):
                return row.get(lib, {}).get("values", [])

            def cell(values, lib=None, row=row):
                dagger = " †" if lib and row.get(lib, {}).get("contended") else ""
                return _cell(values) + dagger if values else _cell(values)

            def ratio(lib, row=row, m=m):
                r = row.get(f"ours_over_{lib}")
                if r is None:
                    return "–" if m in OURS_ONLY and lib == "torchebm" else "n/a"
                return f"{r:.2f}" + (" (vs bare ULA)" if m in OURS_ONLY else "")

            def pk(lib, row=row):
                v = row.get(f"pct_peak_{lib}")
                return f"{v:.0f} %" if v is not None else ""

            peer = m in PEER_METRICS
            cells = [
                LABELS[m],
                cell(vals("numpyro-ebm"), "numpyro-ebm"),
                cell(vals("jax-reference"), "jax-reference") if peer else "–",
            ]
            if have_torch:
                cells.append(cell(vals("torchebm"), "torchebm") if peer else "–")
            cells.append(ratio("jax-reference"))
            if have_torch:
                cells.append(ratio("torchebm"))
            cells += [pk("numpyro-ebm"), pk("jax-reference") if peer else ""]
            ns = [str(len(vals(lib))) if peer or lib == "numpyro-ebm" else "–" for lib in libs]
            cells.append("/".join(ns))
            lines.append("| " + " | ".join(cells) + " |")
        costs = {k: v for k, v in block["ours_costs_s"].items() if not k.endswith("num_steps")}
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


NOTES = [
    "Langevin: ours is `numpyro_ebm.kernels.ula` (ULA) vmapped over chains in a "
    "`lax.scan`, one key per chain, as a BlackJAX user writes it; the bare loop draws one "
    "(chains, dim) normal per step and calls `vmap(grad(E))`; TorchEBM is "
    "`LangevinDynamics.sample` (PyTorch eager, all cores).",
    "DSM / CD-10: ours is `training.dsm` / `training.cd(k=10, alpha=0.001)` + `optax.adam` "
    "through `ne.fit` (100 steps per compiled chunk, minibatches drawn with replacement); "
    "steady-state windows, compilation excluded.",
    "MALA / annealed Langevin have no peer; their ratio column compares with the bare JAX ULA "
    "loop (same gradient count per step, different algorithm). `sample()` compiles afresh on "
    "every call; the 'no compile' rows subtract the tracing/lowering/XLA time JAX reports "
    "through `jax.monitoring`, the 'whole call' rows do not.",
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
    flags_common = (QUICK_FLAGS if quick else FULL_FLAGS) + list(extra)
    configs = configs or list(QUICK_CONFIGS if quick else CONFIGS)
    vers = {"numpyro-ebm": _common.versions(python)}
    if "torchebm" in libs:
        vers["torchebm"] = _common.versions(libs["torchebm"][0], ["torch", "torchebm"])
    meta = {
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
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
        for cfg in configs:
            for name, (lib_py, script) in libs.items():
                flags = ["--seed", str(rep), *CONFIGS[cfg], *flags_common]
                for attempt in range(1, attempts + 1):
                    busy, waited = wait_quiet(run_peers, max_foreign, max_wait)
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
                            "attempt": attempt,
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
        f"Measured {meta['date']}; raw runs: `{raw_path.name}`.",
        "",
        "Each value: median over the clean fresh processes (seeds 1..n) of each process's "
        "median of its timed repeats; brackets: range over processes. Ratios are of medians "
        "(> 1: numpyro-ebm faster).",
        "",
        *tables_markdown(summary, list(libs), heading="##"),
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
