#!/usr/bin/env python3
"""Run the peer benchmark: numpyro-ebm vs the bare JAX loop vs TorchEBM, and tabulate it.

One command::

    python benchmarks/run.py            # 3 fresh processes per library and configuration
    python benchmarks/run.py --quick    # 1 process each, short runs: a smoke test

It installs nothing. It needs the peers' scripts (``shared/peers`` next to the repository,
or ``--peers-dir``): ``jax_reference_bench.py`` runs in this repository's ``.venv`` (it needs
only jax), ``torchebm_bench.py`` in a TorchEBM venv (``--torchebm-python``, default
``.venv-torchebm/bin/python``; set up as ``shared/peers/README.md`` says; skipped with a note
when absent). Runs are interleaved (repetition > configuration > library), each a fresh
process with ``--seed`` = repetition, at dim 2 (1024 chains) and dim 64 (256 chains).
Contention guarding is the peers' own: ``run_peers.wait_quiet`` before each run and
``run_peers.run_once``'s foreign-CPU measurement, a run during which other processes used more
than ``--max-foreign`` of a core being discarded and rerun (up to ``--attempts`` times).

Writes ``benchmarks/results/peers-<date>.json`` (every attempt, raw) and
``benchmarks/results/peers.md`` (medians over the clean runs, ratios, fraction of peak, machine
and versions); ``--quick`` writes ``peers-<date>-quick.json`` / ``peers-quick.md`` instead.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"dim2": ["--dim", "2", "--chains", "1024"], "dim64": ["--dim", "64", "--chains", "256"]}
QUICK_FLAGS = ["--steps", "200", "--train-steps", "100", "--repeats", "2"]
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


def load_run_peers(peers_dir: Path):
    spec = importlib.util.spec_from_file_location("run_peers", peers_dir / "run_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def machine_info() -> dict:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = open("/proc/cpuinfo").read()
        flags = " ".join(f for f in ("avx2", "avx512f", "fma") if f" {f}" in text)
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "cpu_flags": flags,
        "memory": mem,
        "platform": platform.platform(),
    }


def versions(python: str, modules: list[str]) -> dict:
    code = (
        "import importlib.metadata as m, json, sys, platform\n"
        "out = {'python': platform.python_version()}\n"
        f"for n in {modules!r}:\n"
        "    try: out[n] = m.version(n)\n"
        "    except Exception: out[n] = None\n"
        "print(json.dumps(out))"
    )
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
        return json.loads(p.stdout.strip().splitlines()[-1])
    except Exception as e:
        return {"error": repr(e)}


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "numpyro_ebm"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + ("+dirty(numpyro_ebm)" if dirty else "")
    except OSError:
        return "unknown"


def fmt(v: float) -> str:
    if v >= 10000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def cell(vals: list[float]) -> str:
    if not vals:
        return "n/a"
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}–{fmt(max(vals))}]"


def render_markdown(records, libs, meta, peak_gflops) -> str:
    clean = {}
    for rec in records:
        if rec["rc"] == 0 and not rec["contaminated"] and rec["result"]:
            clean.setdefault((rec["cfg"], rec["lib"]), []).append(rec["result"])
    have_torch = "torchebm" in libs
    lines = [
        "# Peer benchmark: numpyro-ebm vs bare JAX vs TorchEBM (CPU)",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} (UTC). Raw runs: "
        f"`{meta['raw_file']}`. Revision: {meta['git']}.",
        "",
        f"Machine: {meta['machine']['nproc']} CPU cores, {meta['machine']['cpu_model']} "
        f"({meta['machine']['cpu_flags']}), {meta['machine']['memory']}; "
        f"{meta['machine']['platform']}.",
        "",
        "Versions: "
        + "; ".join(
            f"{lib}: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v)
            for lib, vers in meta["versions"].items()
        ),
        "",
        "Each value: median over the clean fresh processes (seeds 1..n) of each process's "
        "median of its timed repeats; brackets: range over processes. `n` = clean processes. "
        "Ratios are of medians (> 1: numpyro-ebm faster). "
        f"'% peak': achieved matmul FLOP/s over the {peak_gflops:g} GFLOP/s matmul peak of this "
        "machine (matmul FLOPs only; DSM approximate; see `matmul_flops` in `benchmarks/run.py`).",
        "",
    ]
    for cfg_name in meta["configs"]:
        runs = {lib: clean.get((cfg_name, lib), []) for lib in libs}
        any_run = next((r for rs in runs.values() for r in rs), None)
        cfg = any_run["config"] if any_run else {}
        title = (
            f"dim {cfg.get('dim')}, hidden {cfg.get('hidden')}, {cfg.get('chains')} chains, "
            f"{cfg.get('steps')} steps, batch {cfg.get('batch')}"
            if cfg
            else cfg_name
        )
        lines += [f"## {title}", ""]
        head = "| metric | numpyro-ebm | bare JAX | " + ("TorchEBM | " if have_torch else "")
        head += "ours / bare JAX | " + ("ours / TorchEBM | " if have_torch else "")
        head += "% peak ours | % peak bare JAX | n (ours/JAX"
        head += ("/Torch)" if have_torch else ")") + " |"
        lines += [head, "|" + " --- |" * (head.count("|") - 1)]
        vals = {
            lib: {m: [r[m] for r in rs if r.get(m) is not None] for m in PEER_METRICS + OURS_ONLY}
            for lib, rs in runs.items()
        }

        def med(lib, m, vals=vals):
            v = vals.get(lib, {}).get(m, [])
            return statistics.median(v) if v else None

        for m in PEER_METRICS + OURS_ONLY:
            ours, ref = med("numpyro-ebm", m), med("jax-reference", m)
            torch = med("torchebm", m) if have_torch else None
            ref_for_ratio = ref
            ratio_note = ""
            if m in OURS_ONLY:  # no peer runs these: compare with the bare JAX ULA loop
                ref_for_ratio = med("jax-reference", "langevin_chain_steps_per_s")
                ratio_note = " (vs bare ULA)"
            flops = matmul_flops(m, cfg) if cfg else None

            def pk(v, flops=flops):
                return f"{100 * v * flops / (peak_gflops * 1e9):.0f} %" if v and flops else ""

            row = [
                LABELS[m],
                cell(vals["numpyro-ebm"][m]),
                cell(vals["jax-reference"][m]) if m in PEER_METRICS else "–",
            ]
            if have_torch:
                row.append(cell(vals["torchebm"][m]) if m in PEER_METRICS else "–")
            row.append(
                f"{ours / ref_for_ratio:.2f}{ratio_note}" if ours and ref_for_ratio else "n/a"
            )
            if have_torch:
                row.append(
                    f"{ours / torch:.2f}" if ours and torch else ("–" if m in OURS_ONLY else "n/a")
                )
            row += [pk(ours), pk(ref) if m in PEER_METRICS else ""]
            ns = [
                str(len(vals[lib][m])) if m in PEER_METRICS or lib == "numpyro-ebm" else "–"
                for lib in libs
            ]
            row.append("/".join(ns))
            lines.append("| " + " | ".join(row) + " |")
        # compile costs of our calls (not in the rates above)
        comp = {}
        for r in runs.get("numpyro-ebm", []):
            for k, v in (r.get("compile_s") or {}).items():
                comp.setdefault(k, []).append(v)
            for k, v in (r.get("end_to_end") or {}).items():
                if isinstance(v, list):
                    comp.setdefault(k, []).append(statistics.median(v))
        if comp:
            lines += [
                "",
                "numpyro-ebm compile and per-call costs, seconds "
                "(median over processes): "
                + ", ".join(
                    f"{k} {statistics.median(v):.2f}"
                    for k, v in sorted(comp.items())
                    if not k.endswith("num_steps")
                ),
            ]
        lines.append("")
    n_bad = sum(1 for r in records if r["contaminated"] or r["rc"] != 0)
    lines += [f"Attempts: {len(records)}, discarded (contaminated or failed): {n_bad}.", ""]
    lines += [
        "Notes:",
        "",
        "* Langevin: ours is `numpyro_ebm.kernels.langevin` (ULA) vmapped over chains in a "
        "`lax.scan`, one key per chain, as a BlackJAX user writes it; the bare loop draws one "
        "(chains, dim) normal per step and calls `vmap(grad(E))`.",
        "* DSM / CD-10: ours is `training.dsm` / `training.cd(k=10, alpha=0.001)` + "
        "`optax.adam` through `ne.fit` (100 steps per compiled chunk, minibatches drawn with "
        "replacement); steady-state windows of 200 steps, compilation excluded.",
        "* MALA / annealed Langevin have no peer; their ratio column compares with the bare "
        "JAX ULA loop (same gradient count per step, different algorithm). `sample()` compiles "
        "afresh on every call; the 'compile excluded' rows subtract the tracing/lowering/XLA "
        "time JAX reports through `jax.monitoring`, the 'whole call' rows do not.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 process per library and configuration, short runs (smoke test)",
    )
    ap.add_argument("--reps", type=int, default=None, help="fresh processes per cell (default 3)")
    ap.add_argument("--configs", default="dim2,dim64")
    ap.add_argument(
        "--peers-dir",
        default=None,
        help="folder of the peers' scripts (default: <repo>/../shared/peers)",
    )
    ap.add_argument(
        "--python",
        default=None,
        help="python for peer_bench.py and the JAX reference (default: <repo>/.venv)",
    )
    ap.add_argument(
        "--torchebm-python",
        default=".venv-torchebm/bin/python",
        help="TorchEBM venv python (relative to the repo root or absolute)",
    )
    ap.add_argument("--extra", default="", help="extra flags for every run")
    ap.add_argument("--max-foreign", type=float, default=0.10)
    ap.add_argument("--attempts", type=int, default=4)
    ap.add_argument("--max-wait", type=float, default=600.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--peak-gflops", type=float, default=150.0)
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args()

    peers = Path(a.peers_dir).resolve() if a.peers_dir else (ROOT.parent / "shared" / "peers")
    missing = [
        f
        for f in ("jax_reference_bench.py", "torchebm_bench.py", "run_peers.py")
        if not (peers / f).is_file()
    ]
    if missing:
        sys.exit(
            f"error: peer scripts {missing} not found in {peers}; pass --peers-dir "
            "(expected shared/peers next to the repository)"
        )
    run_peers = load_run_peers(peers)

    def resolve(p):
        return str(p if os.path.isabs(p) else ROOT / p)

    py = (
        resolve(a.python)
        if a.python
        else (
            str(ROOT / ".venv" / "bin" / "python")
            if (ROOT / ".venv" / "bin" / "python").exists()
            else sys.executable
        )
    )
    check = subprocess.run(
        [py, "-c", "import jax, numpyro_ebm, optax, flax"], capture_output=True, text=True
    )
    if check.returncode:
        sys.exit(
            f"error: {py} cannot import jax/numpyro_ebm/optax/flax "
            f"(install the package into the repo's .venv):\n{check.stderr[-400:]}"
        )
    libs = {
        "numpyro-ebm": (py, str(ROOT / "benchmarks" / "peer_bench.py")),
        "jax-reference": (py, str(peers / "jax_reference_bench.py")),
    }
    torch_py = resolve(a.torchebm_python)
    notes = []
    if os.path.exists(torch_py):
        libs["torchebm"] = (torch_py, str(peers / "torchebm_bench.py"))
    else:
        notes.append(
            f"TorchEBM venv not found at {torch_py}: TorchEBM skipped "
            "(see shared/peers/README.md, 'Install')"
        )
        print("note:", notes[-1], flush=True)

    reps = a.reps or (1 if a.quick else 3)
    extra = (QUICK_FLAGS if a.quick else []) + a.extra.split()
    configs = a.configs.split(",")
    stamp = datetime.datetime.now(datetime.UTC)
    suffix = "-quick" if a.quick else ""
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_path = out_dir / f"peers-{stamp:%Y-%m-%d}{suffix}.json"
    md_path = out_dir / f"peers{suffix}.md"

    vers = {
        "numpyro-ebm": versions(
            py, ["numpyro-ebm", "jax", "jaxlib", "flax", "optax", "blackjax", "numpyro", "arviz"]
        )
    }
    if "torchebm" in libs:
        vers["torchebm"] = versions(torch_py, ["torch", "torchebm"])
    meta = {
        "date": f"{stamp:%Y-%m-%d %H:%M}",
        "command": "python benchmarks/run.py" + (" --quick" if a.quick else ""),
        "machine": machine_info(),
        "versions": vers,
        "git": git_revision(),
        "configs": configs,
        "reps": reps,
        "extra_flags": extra,
        "libs": {k: list(v) for k, v in libs.items()},
        "notes": notes,
        "max_foreign": a.max_foreign,
        "peak_gflops": a.peak_gflops,
        "raw_file": str(raw_path.relative_to(ROOT))
        if raw_path.is_relative_to(ROOT)
        else str(raw_path),
    }

    records = []
    for rep in range(1, reps + 1):
        for cfg in configs:
            for name, (lib_py, script) in libs.items():
                flags = ["--seed", str(rep)] + CONFIGS[cfg] + extra
                for attempt in range(1, a.attempts + 1):
                    busy, waited = run_peers.wait_quiet(a.max_foreign, a.max_wait)
                    rec = run_peers.run_once(lib_py, script, flags, a.timeout)
                    rec.update(
                        {
                            "rep": rep,
                            "cfg": cfg,
                            "lib": name,
                            "attempt": attempt,
                            "busy_before": round(busy, 3),
                            "waited_s": round(waited, 1),
                            "flags": flags,
                            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        }
                    )
                    rec["contaminated"] = (
                        rec["foreign_cores"] + rec["steal_s"] / rec["wall_s"]
                    ) > a.max_foreign
                    records.append(rec)
                    raw_path.write_text(json.dumps({"meta": meta, "runs": records}, indent=1))
                    print(
                        f"rep={rep} cfg={cfg} lib={name} attempt={attempt} "
                        f"wall={rec['wall_s']}s foreign={rec['foreign_cores']} rc={rec['rc']} "
                        f"{'CONTAMINATED' if rec['contaminated'] else 'clean'}"
                        + (f"\n  stderr: {rec['stderr_tail']}" if rec["rc"] else ""),
                        flush=True,
                    )
                    if rec["rc"] == 0 and not rec["contaminated"] and rec["result"]:
                        break

    md = render_markdown(records, list(libs), meta, a.peak_gflops)
    md_path.write_text(md)
    print(f"\nwrote {raw_path}\nwrote {md_path}\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
