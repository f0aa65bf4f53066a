#!/usr/bin/env python3
"""Run the benchmark suite: write ``benchmarks/results/*.json``, then ``README.md`` (rendered by
``benchmarks/_readme.py`` from those files).

One command::

    python benchmarks/run.py                   # everything, ~13-14 minutes on 2 quiet cores
    python benchmarks/run.py --quick           # smoke test, < 3 minutes
    python benchmarks/run.py --only peers,nuts # some sections (the others keep their last JSON)

Sections, each in fresh processes of the repository's ``.venv`` python (``--python``):

* ``peers``: Langevin / MALA / annealed Langevin chain-steps per second and DSM / CD-10 Adam
  steps per second, numpyro-ebm vs the bare hand-written JAX loop vs TorchEBM, at dim 2 and
  dim 64 with 1024 chains; interleaved, contention-guarded fresh processes
  (``benchmarks/peers.py``, ``peer_bench.py``, ``shared/peers``);
* ``diagnostics``: on-device R-hat / bulk ESS / tail ESS vs ArviZ at 4 x 1000 and
  1000 x 1000 (chains x draws), 20 and 3 interleaved rounds per shape after the first call
  (``benchmarks/bench_diagnostics.py``);
* ``nuts``: BlackJAX NUTS through ``numpyro_ebm.sample(model, "nuts")`` vs NumPyro's NUTS
  (one ``MCMC`` object per model: ``mcmc.run`` repeated, and ``run`` inside one ``jax.jit``) on
  six posteriordb models, a first call then 3 compiled calls per model; ESS per second (wall
  and CPU) and per 1000 gradients, accuracy against the reference posteriors
  (``benchmarks/bench_nuts.py``);
* ``scaling``: ULA time per step and peak memory for 1 to 100,000 chains and dims 2 to 1024,
  plotted into ``docs/figures/benchmarks/scaling.png`` (``benchmarks/bench_scaling.py``).

The JAX backend is probed first. On a CPU the results go to ``benchmarks/results/``; on a GPU
the same command writes ``benchmarks/results/gpu/`` (and ``scaling-gpu.png``), and a later CPU
run's README shows that GPU run, with its date and device, in its GPU section; without one the
GPU section says 'not measured: no GPU available on <date>'. ``--quick`` writes into a
``quick/`` subfolder, so a smoke test never overwrites the full results.

Before each section (and each peer process) the runner waits for a quiet machine
(``run_peers.wait_quiet``) and measures the CPU time other processes used meanwhile; peer runs
above ``--max-foreign`` cores are rerun, other sections are flagged in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common
import _readme
import peers

ROOT = _common.ROOT
SECTIONS = ("peers", "diagnostics", "nuts", "scaling")
SCRIPTS = {
    "diagnostics": "bench_diagnostics.py",
    "nuts": "bench_nuts.py",
    "scaling": "bench_scaling.py",
}
# full run: bench_diagnostics.py's --repeats is the number of interleaved rounds per shape
# after the first call (one value, or one per --chains): 20 at 4 x 1000 and 3 at 1000 x 1000
# instead of the script's default 20 and 5 (the 15-minute budget; the standalone runs of
# results/diagnostics.json, 2026-12-06 and 2026-12-07, used 20 and 5: 1.6-1.7 minutes)
FULL_ARGS = {"diagnostics": {"--repeats": "20 3"}}
QUICK_ARGS = {
    "diagnostics": {"--chains": "100", "--draws": "500", "--repeats": "1"},
    "nuts": [
        "--models",
        "kidiq_momhsiq",
        "--num-samples",
        "200",
        "--num-warmup",
        "200",
        "--seeds",
        "1",
    ],
    "scaling": ["--chains", "10000", "--dims", "256", "--min-time", "0.3"],
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test (< 3 minutes)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    ap.add_argument("--reps", type=int, default=None, help="peer processes per cell (2; quick 1)")
    ap.add_argument(
        "--configs", default=None, help="peer configurations, from dim2,dim64 (quick: dim2)"
    )
    ap.add_argument(
        "--peers-dir", default=None, help="peers' scripts (default: <repo>/../shared/peers)"
    )
    ap.add_argument(
        "--python", default=None, help="python of the repository's venv (default: <repo>/.venv)"
    )
    ap.add_argument(
        "--torchebm-python",
        default=None,
        help="TorchEBM venv python (default .venv-torchebm/bin/python; given explicitly, it also "
        "runs on a GPU backend)",
    )
    ap.add_argument("--extra", default="", help="extra flags for every peer run")
    ap.add_argument(
        "--nuts-models",
        default=None,
        help="bench_nuts.py --models (default: all six of bench_nuts.MODELS; quick: kidiq_momhsiq)",
    )
    ap.add_argument("--max-foreign", type=float, default=0.10, help="cores others may use")
    ap.add_argument("--attempts", type=int, default=None, help="tries per peer run (4; quick 1)")
    ap.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="seconds to wait for a quiet machine (600; quick 0: no wait, contention still "
        "measured)",
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    ap.add_argument(
        "--peak-gflops",
        type=float,
        default=_common.CPU_PEAK_GFLOPS,
        help="f32 matmul peak of the CPU, GFLOP/s (GPUs: from a table in _common.py)",
    )
    ap.add_argument("--out-dir", default=None, help="default benchmarks/results[/gpu][/quick]")
    ap.add_argument(
        "--report", action="store_true", help="run nothing: rewrite README.md from the JSON files"
    )
    return ap.parse_args(argv)


def resolve(p: str) -> str:
    return str(p if os.path.isabs(p) else ROOT / p)


def run_section(cmd, timeout, max_foreign, max_wait, run_peers) -> dict:
    """One section's process: stdout captured (last line JSON), stderr shown live; the CPU
    that other processes used meanwhile is measured as ``run_peers.run_once`` does."""
    busy, waited = peers.wait_quiet(run_peers, max_foreign, max_wait)
    hz = os.sysconf("SC_CLK_TCK")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, s0 = run_peers.cpu_jiffies()
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=ROOT)
        rc, stdout = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, stdout = -1, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else ""
    wall = time.perf_counter() - t0
    b1, s1 = run_peers.cpu_jiffies()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    foreign = max(0.0, (b1 - b0) / hz - child) / wall
    steal = (s1 - s0) / hz / wall
    return {
        "cmd": [str(c) for c in cmd],
        "rc": rc,
        "wall_s": round(wall, 1),
        "foreign_cores": round(foreign, 3),
        "steal_cores": round(steal, 3),
        "busy_before": None if busy is None else round(busy, 3),
        "waited_s": round(waited, 1),
        "contaminated": foreign + steal > max_foreign,
        "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
        "stdout_tail": stdout[-300:] if rc else "",
    }


# --- driver ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    a = parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = sorted(set(only) - set(SECTIONS))
    if bad:
        sys.exit(f"error: unknown sections {bad}; choose from {SECTIONS}")
    peers_dir = Path(a.peers_dir).resolve() if a.peers_dir else ROOT.parent / "shared" / "peers"
    missing = [
        f
        for f in ("jax_reference_bench.py", "torchebm_bench.py", "run_peers.py")
        if not (peers_dir / f).is_file()
    ]
    if missing:
        sys.exit(
            f"error: peer scripts {missing} not found in {peers_dir}; pass --peers-dir "
            "(expected shared/peers next to the repository)"
        )
    run_peers = peers.load_run_peers(peers_dir)
    venv_py = ROOT / ".venv" / "bin" / "python"
    py = resolve(a.python) if a.python else (str(venv_py) if venv_py.exists() else sys.executable)
    probe = subprocess.run(
        [
            py,
            "-c",
            "import json, _common; import numpyro_ebm, optax, flax; "
            "print(json.dumps(_common.jax_device()))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT / "benchmarks",
    )
    if probe.returncode:
        sys.exit(
            f"error: {py} cannot import jax/numpyro_ebm/optax/flax "
            f"(install the package into the repo's .venv):\n{probe.stderr[-400:]}"
        )
    device = json.loads(probe.stdout.strip().splitlines()[-1])
    backend = device["backend"]
    peak, peak_label = _common.peak_gflops(device, a.peak_gflops)
    results = _common.RESULTS
    gpu_dir = results / "gpu"
    base = gpu_dir if backend != "cpu" else results
    out_dir = Path(a.out_dir) if a.out_dir else (base / "quick" if a.quick else base)
    out_dir.mkdir(parents=True, exist_ok=True)
    if a.quick:
        png = out_dir / "scaling.png"
    else:
        png_name = "scaling.png" if backend == "cpu" else "scaling-gpu.png"
        png = ROOT / "docs" / "figures" / "benchmarks" / png_name
    attempts = a.attempts or (1 if a.quick else 4)
    max_wait = a.max_wait if a.max_wait is not None else (0.0 if a.quick else 600.0)
    torch_py = resolve(a.torchebm_python or ".venv-torchebm/bin/python")
    stamp = _common.utc_now()
    print(
        f"backend {backend} ({device['device_kind']}); sections {only}; writing {out_dir}",
        flush=True,
    )

    suite_path = out_dir / "suite.json"
    previous = _readme.load_json(suite_path) or {}
    suite = {
        "date": f"{stamp:%Y-%m-%d %H:%M} UTC",
        "command": "python benchmarks/run.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
        "quick": a.quick,
        "machine": _common.machine_info(),
        "device": device,
        "versions": _common.versions(py),
        "torchebm": _common.versions(torch_py, ["torch", "torchebm"])
        if os.path.exists(torch_py)
        else None,
        "git": _common.git_revision(),
        "peak_gflops": peak,
        "peak_label": peak_label,
        "sections": dict(previous.get("sections", {})),
    }
    if a.report:
        only = []
        suite = previous or suite  # the measuring run's machine, device, versions, date
    t_all = time.perf_counter()
    for name in SECTIONS:
        if name not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        if name == "peers":
            res = peers.run(
                quick=a.quick,
                reps=a.reps,
                configs=a.configs.split(",") if a.configs else None,
                peers_dir=peers_dir,
                python=py,
                torchebm_python=torch_py,
                force_torchebm=a.torchebm_python is not None,
                backend=backend,
                extra=a.extra.split(),
                max_foreign=a.max_foreign,
                attempts=attempts,
                max_wait=max_wait,
                timeout=a.timeout,
                peak_gflops=peak,
                out_dir=out_dir,
            )
            kept = [r for r in res["runs"] if r["rc"] == 0 and not r["contaminated"]]
            suite["sections"]["peers"] = {
                "rc": 0,
                "wall_s": round(time.perf_counter() - t0, 1),
                # mean over the runs kept (all runs when none was clean)
                "foreign_cores": statistics.mean(
                    r["foreign_cores"] for r in (kept or res["runs"]) or [{"foreign_cores": 0}]
                ),
                "contaminated": any(b["contended_only"] for b in res["summary"].values()),
                "date": f"{_common.utc_now():%Y-%m-%d %H:%M} UTC",
                "attempts": res["attempts"],
                "discarded": res["discarded"],
            }
        else:
            script = ROOT / "benchmarks" / SCRIPTS[name]
            cmd = [py, str(script), "--out", str(out_dir / f"{name}.json")]
            if name == "diagnostics":
                helptext = subprocess.run(
                    [py, str(script), "--help"], capture_output=True, text=True, cwd=ROOT
                ).stdout
                wanted = QUICK_ARGS["diagnostics"] if a.quick else FULL_ARGS["diagnostics"]
                for flag, val in wanted.items():
                    if flag in helptext:  # only the flags the script (still) has
                        cmd += [flag, *val.split()]
            elif name == "nuts":
                cmd += ["--posteriordb-dir", str(peers_dir.parent / "posteriordb")]
                cmd += QUICK_ARGS["nuts"] if a.quick else []
                cmd += ["--models", a.nuts_models] if a.nuts_models else []
            elif name == "scaling":
                cmd += ["--png", str(png), f"--peak-gflops={a.peak_gflops}"]
                cmd += QUICK_ARGS["scaling"] if a.quick else []
            rec = run_section(cmd, a.timeout, a.max_foreign, max_wait, run_peers)
            suite["sections"][name] = rec
            print(
                f"{name}: rc={rec['rc']} wall={rec['wall_s']}s foreign={rec['foreign_cores']} "
                f"{'CONTAMINATED' if rec['contaminated'] else 'clean'}",
                flush=True,
            )
        _common.write_json(suite_path, suite)
    if not a.report:
        suite["total_s"] = time.perf_counter() - t_all
        _common.write_json(suite_path, suite)

    png_rel = None
    if (_readme.load_json(out_dir / "scaling.json") or {}).get("png"):
        png_rel = os.path.relpath(_readme.load_json(out_dir / "scaling.json")["png"], out_dir)
    md = _readme.render(suite, out_dir, gpu_dir, png_rel)
    (out_dir / "README.md").write_text(md)
    print(f"\nwrote {out_dir / 'README.md'} ({suite.get('total_s', 0) / 60:.1f} min)\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
