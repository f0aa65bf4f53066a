#!/usr/bin/env python3
"""Time to first result: a fresh process, from its start to MALA draws in host memory, through
``ne.sample`` and through a hand-written BlackJAX loop, side by side in one run.

Each variant runs in its own fresh interpreter (nothing cached in memory; JAX's persistent
compilation cache off, as it is for a library call), on the peers' MLP energy
(``numpyro_ebm.MLPEnergy``, dim 2, hidden (128, 128)) plus :math:`|x|^2/2` (an untrained MLP
alone is not normalizable: it grows linearly, downwards in half the directions), 1024 chains,
200 warm-up steps, 1000 kept draws:

* **sample()**: ``import numpyro_ebm``; ``ne.sample(energy, "mala", num_warmup=200,
  num_samples=1000)``: step size adapted in the warm-up, every statistic kept, the post-run
  health checks, ArviZ ``InferenceData`` out;
* **hand-written**: ``import blackjax``; one ``jax.jit`` of 200 MALA steps then a ``lax.scan``
  of 1000 more keeping every position (step size fixed at the one ``sample()`` adapts to,
  vmapped over chains), copied to the host;
* **hand-written + ArviZ** (with ``--arviz``): the same loop, returning what ``sample()``
  returns, ArviZ ``InferenceData`` (``import arviz``; ``az.from_dict(posterior=...)``). It
  tells apart what our code adds from what the return type costs: importing ArviZ 0.23
  (xarray, pandas, SciPy's statistics, matplotlib) takes about 0.85 s of CPU.

Reported per variant: the interpreter's start-up (measured outside), the imports, the first
call (tracing, compiling and running), a second identical call in the same process (running
only: the first minus it is the compile and first-call overhead), the whole wall time from the
process's start to the first draws, and the process's CPU time (user + system of the whole
process). Repeats are interleaved, the side that runs first alternating from repeat to repeat,
and the fastest of each kept (``best``): load on a shared machine only adds time. The figure of
merit is ``wall(sample()) / wall(hand-written)`` (goal <= 1.1), from the fastest runs (and
``wall(sample()) / wall(hand-written + ArviZ)`` with ``--arviz``); beside
it, the same ratio per repeat (each repeat's two processes ran back to back) with its median
and range, and the ratio of the processes' CPU times. The whole measurement runs inside
``_common.Contention`` (it waits for a quiet machine and records wall and CPU time, the cores
other processes used meanwhile and the load averages; a result measured while others used more
than ``--max-foreign`` cores is marked ``contaminated``).

Writes ``benchmarks/results/first_result.json`` (or ``--out``).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

# Each snippet prints one JSON line; `T0` is the interpreter's first statement's clock.
_PRELUDE = "import time; T0 = time.perf_counter()\n"

_ENERGY = """
from flax import nnx
net = ne_MLPEnergy((2,), hidden=(128, 128), rngs=nnx.Rngs(0))
"""

OURS = (
    _PRELUDE
    + """
import jax, json
import jax.numpy as jnp
import numpyro_ebm as ne
ne_MLPEnergy = ne.MLPEnergy
T_IMPORT = time.perf_counter()
"""
    + _ENERGY
    + """
apply, params = ne.as_pure(net)
energy = lambda x: apply(params, x) + 0.5 * jnp.sum(x**2)
def call(seed):
    data = ne.sample(energy, "mala", key=jax.random.key(seed), event_shape=(2,),
                     num_chains=CHAINS, num_warmup=WARMUP, num_samples=DRAWS)
    return data.posterior["x"].values
t = time.perf_counter(); draws = call(0); first = time.perf_counter() - t
T_FIRST = time.perf_counter()
t = time.perf_counter(); call(1); second = time.perf_counter() - t
data = ne.sample(energy, "mala", key=jax.random.key(0), event_shape=(2,), num_chains=CHAINS,
                 num_warmup=WARMUP, num_samples=2)
step = float(data.sample_stats["step_size"].values.mean())
print(json.dumps({"import_s": T_IMPORT - T0, "first_call_s": first, "second_call_s": second,
                  "to_first_draws_s": T_FIRST - T0, "shape": list(draws.shape),
                  "adapted_step_size": step}))
"""
)

BARE = (
    _PRELUDE
    + """
import jax, json
import jax.numpy as jnp
import numpy as np
import blackjax
from numpyro_ebm.nets import MLPEnergy as ne_MLPEnergy
from numpyro_ebm.nets import as_pure
T_IMPORT = time.perf_counter()
"""
    + _ENERGY
    + """
apply, params = as_pure(net)
logdensity = lambda x: -apply(params, x) - 0.5 * jnp.sum(x**2)
mala = blackjax.mala(logdensity, STEP)
@jax.jit
def run(key):
    key_init, key_warm, key_run = jax.random.split(key, 3)
    x0 = jax.random.normal(key_init, (CHAINS, 2))
    state = jax.vmap(mala.init)(x0)
    def step(state, k):
        state, _ = jax.vmap(mala.step)(jax.random.split(k, CHAINS), state)
        return state, state.position
    state, _ = jax.lax.scan(step, state, jax.random.split(key_warm, WARMUP))
    _, draws = jax.lax.scan(step, state, jax.random.split(key_run, DRAWS))
    return draws
FINISH
t = time.perf_counter(); finish(np.asarray(run(jax.random.key(0)))); first = time.perf_counter() - t
T_FIRST = time.perf_counter()
t = time.perf_counter(); finish(np.asarray(run(jax.random.key(1))))
second = time.perf_counter() - t
print(json.dumps({"import_s": T_IMPORT - T0, "first_call_s": first, "second_call_s": second,
                  "to_first_draws_s": T_FIRST - T0}))
"""
)

# the loop returning ArviZ data, like sample() (its daily notice silenced, as sample() does)
BARE_ARVIZ = BARE.replace(
    "T_IMPORT = time.perf_counter()",
    "import warnings\nwith warnings.catch_warnings():\n"
    "    warnings.simplefilter('ignore', FutureWarning)\n"
    "    import arviz as az\nT_IMPORT = time.perf_counter()",
).replace(
    "FINISH",
    "def finish(draws):\n    return az.from_dict(posterior={'x': np.swapaxes(draws, 0, 1)})",
)
# the loop returning the draws as they are
BARE = BARE.replace("FINISH", "def finish(draws):\n    return draws")


def run_fresh(code: str, python: str) -> dict:
    """Run ``code`` in a fresh interpreter: its JSON line (times from its first statement), the
    whole process's wall time and its CPU time. The interpreter's own start-up, before the
    first statement, is measured apart (:func:`startup_s`) and added to both variants."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.update(JAX_PLATFORMS="cpu", JAX_ENABLE_COMPILATION_CACHE="false")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    out["process_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def startup_s(python: str) -> float:
    """Wall time of a bare interpreter that does nothing (the fastest of 3)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--arviz", action="store_true", help="also time the loop returning ArviZ data"
    )
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--max-foreign", type=float, default=0.3, help="cores others may use")
    parser.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait")
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "first_result.json")
    args = parser.parse_args(argv)
    sizes = f"CHAINS, WARMUP, DRAWS = {args.chains}, {args.warmup}, {args.draws}\n"
    guard = _common.Contention(max_foreign=args.max_foreign, max_wait=args.max_wait)
    guard.__enter__()
    load_before = os.getloadavg()
    startup = startup_s(args.python)
    # the hand-written loop uses the step size sample() adapts to, so both do the same work
    probe = run_fresh(_PRELUDE + sizes + OURS.removeprefix(_PRELUDE), args.python)
    step = probe["adapted_step_size"]
    codes = {
        "sample": _PRELUDE + sizes + OURS.removeprefix(_PRELUDE),
        "hand_written": _PRELUDE + sizes + f"STEP = {step!r}\n" + BARE.removeprefix(_PRELUDE),
    }
    if args.arviz:
        codes["hand_written_arviz"] = (
            _PRELUDE + sizes + f"STEP = {step!r}\n" + BARE_ARVIZ.removeprefix(_PRELUDE)
        )
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for repeat in range(args.repeats):
        order = list(codes) if repeat % 2 == 0 else list(codes)[::-1]
        for name in order:
            code = codes[name]
            result = run_fresh(code, args.python)
            result["order"] = order.index(name)
            runs[name].append(result)
            print(f"repeat {repeat} {name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    best = {name: min(rs, key=lambda r: r["to_first_draws_s"]) for name, rs in runs.items()}
    for result in best.values():
        result["start_to_first_draws_s"] = startup + result["to_first_draws_s"]
        result["compile_and_overhead_s"] = result["first_call_s"] - result["second_call_s"]
    guard.__exit__(None, None, None)
    whole = {name: result["start_to_first_draws_s"] for name, result in best.items()}
    ratio = whole["sample"] / whole["hand_written"]

    def spread(values):
        values = sorted(values)
        return {
            "median": statistics.median(values),
            "min": values[0],
            "max": values[-1],
            "n": len(values),
        }

    pairs = list(zip(runs["sample"], runs["hand_written"], strict=True))
    per_repeat = {
        "wall": spread(
            (a["to_first_draws_s"] + startup) / (b["to_first_draws_s"] + startup) for a, b in pairs
        ),
        "cpu": spread(a["process_cpu_s"] / b["process_cpu_s"] for a, b in pairs),
        "process_wall": spread(a["process_wall_s"] / b["process_wall_s"] for a, b in pairs),
    }
    sides = {
        name: {
            key: spread(r[key] for r in rs)
            for key in (
                "to_first_draws_s",
                "import_s",
                "first_call_s",
                "second_call_s",
                "process_wall_s",
                "process_cpu_s",
            )
        }
        for name, rs in runs.items()
    }
    output = {
        "benchmark": "first_result",
        "date": _common.utc_now().isoformat(timespec="seconds"),
        "revision": _common.git_revision(),
        "machine": _common.machine_info(),
        "versions": _common.local_versions(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "config": {
            "energy": "MLPEnergy dim 2, hidden (128, 128), plus |x|^2 / 2",
            "chains": args.chains,
            "warmup": args.warmup,
            "draws": args.draws,
            "repeats": args.repeats,
            "hand_written_step_size": step,
        },
        "interpreter_startup_s": startup,
        "best": best,
        "all_runs": runs,
        "sides": sides,
        "ratio_sample_over_hand_written": ratio,
        "ratio_cpu_best": best["sample"]["process_cpu_s"] / best["hand_written"]["process_cpu_s"],
        "ratio_per_repeat": per_repeat,
        "ratio_sample_over_hand_written_arviz": (
            whole["sample"] / whole["hand_written_arviz"] if args.arviz else None
        ),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "contention": guard.record(),
        "contaminated": guard.contaminated,
        "goal": "ratio <= 1.1",
    }
    _common.write_json(args.out, output)
    print(
        json.dumps(
            {
                "ratio": ratio,
                "per_repeat": per_repeat,
                "ratio_over_arviz_loop": output["ratio_sample_over_hand_written_arviz"],
                **{k: v["start_to_first_draws_s"] for k, v in best.items()},
                "contention": guard.record(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
