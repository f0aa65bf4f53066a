"""The command line's persistent compilation cache: wall time of a first and a second run of
the same ``numpyro-ebm`` command with one cache folder, and of a run without the cache.

Each run is a fresh process with a fresh output folder; each pair starts from an empty cache
folder (``XDG_CACHE_HOME`` in a temporary folder). Every run is timed by wall and by CPU time
(user + system of the process) inside ``_common.Contention``: it waits for a quiet machine and
records the cores other processes used meanwhile and the load averages; a run measured while
others used more than ``--max-foreign`` cores is marked ``contaminated``. Writes
``benchmarks/results/compilation_cache.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

DEMO = (
    "--no-progress demo --steps 300 --chains 16 --samples 200 --warmup 100 --sweeps 50 --out {out}"
)


def files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def timed_run(
    command: str, cache_home: Path, out: Path, max_foreign: float = 0.3, max_wait: float = 600.0
) -> dict:
    """One run of ``numpyro-ebm <command>``: wall seconds, CPU seconds (user + system, less
    sensitive than wall time to other processes), load averages before and after, and the
    files of the cache folder after it."""
    argv = [str(Path(sys.executable).with_name("numpyro-ebm")), *shlex.split(command)]
    argv = [arg.format(out=out) for arg in argv]
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    with _common.Contention(max_foreign, max_wait) as guard:
        load_before = os.getloadavg()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{result.stderr[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "cache_files": files(cache_home / "numpyro-ebm" / "jax"),
        "contention": guard.record(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--command", default=DEMO, help="the numpyro-ebm arguments ({out}: a folder)")
    p.add_argument("--pairs", type=int, default=1, help="first/second pairs, each from empty")
    p.add_argument("--out", type=Path, default=_common.RESULTS / "compilation_cache.json")
    p.add_argument("--max-foreign", type=float, default=0.3, help="cores others may use")
    p.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait, per run")
    args = p.parse_args(argv)
    guard = (args.max_foreign, args.max_wait)
    pairs = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for i in range(args.pairs):
            home = scratch / f"cache{i}"
            first = timed_run(args.command, home, scratch / f"first{i}", *guard)
            second = timed_run(args.command, home, scratch / f"second{i}", *guard)
            ratio = round(second["wall_s"] / first["wall_s"], 3)
            pairs.append({"first": first, "second": second, "second_over_first": ratio})
            print(f"pair {i}: first {first}, second {second}", flush=True)
        off = timed_run(
            "--no-compilation-cache " + args.command, scratch / "off", scratch / "o", *guard
        )
        print(f"without the cache: {off}", flush=True)
    command = "numpyro-ebm " + args.command.format(out="<fresh folder>")
    # the headline: the pair run on the quietest machine (1-minute load before its two runs)
    quiet = min(
        pairs, key=lambda pair: pair["first"]["load_before"][0] + pair["second"]["load_before"][0]
    )
    _common.write_json(
        args.out,
        {
            "benchmark": "compilation_cache",
            "date": _common.utc_now().isoformat(timespec="seconds"),
            "machine": "2-core CPU",
            "machine_info": _common.machine_info(),
            "versions": _common.local_versions(),
            "revision": _common.git_revision(),
            "command": command,
            "first_wall_s": quiet["first"]["wall_s"],
            "second_wall_s": quiet["second"]["wall_s"],
            "second_over_first": quiet["second_over_first"],
            "first_cpu_s": quiet["first"]["cpu_s"],
            "second_cpu_s": quiet["second"]["cpu_s"],
            "no_cache_wall_s": off["wall_s"],
            "no_cache_cpu_s": off["cpu_s"],
            "second_over_first_cpu": round(quiet["second"]["cpu_s"] / quiet["first"]["cpu_s"], 3),
            "script_command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "contaminated": any(
                r["contention"]["contaminated"]
                for r in [off, *(x for pair in pairs for x in (pair["first"], pair["second"]))]
            ),
            "load_averages": {
                "first": quiet["first"]["load_before"],
                "second": quiet["second"]["load_before"],
                "no_cache": off["load_before"],
            },
            "pairs": pairs,
            "no_cache": off,
            "note": "first_wall_s, second_wall_s: the pair run at the lowest load (1-minute load "
            "average before its runs); every pair is in pairs. Load averages (1, 5, 15 min) are "
            "taken before each run on a shared 2-core machine; cache_files: files in the cache "
            "folder after the run (the second run of a pair adds none)",
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
