"""Render the benchmark suite's ``README.md`` from its JSON results (``benchmarks/run.py``
runs and collects; this module only reads and formats)."""

from __future__ import annotations

import json
from pathlib import Path

import _common
import peers


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --- markdown --------------------------------------------------------------------------------


def f3(v, spec=".3g") -> str:
    if v is None:
        return "n/a"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def section_note(suite: dict, name: str, file_date: str | None = None) -> str:
    s = suite.get("sections", {}).get(name)
    if not s:
        return ""
    if file_date and str(file_date)[:10] != str(s.get("date", ""))[:10]:
        return (
            f"_The file below was written by its own command on {str(file_date)[:10]}, not by "
            f"the suite's last run of this section ({s.get('date')}); its load record is its "
            "own._"
        )
    flag = (
        f" **Contended**: other processes used {s['foreign_cores']:.2f} cores on average "
        "during it; rerun on a quiet machine."
        if s.get("contaminated")
        else f" Other processes used {s['foreign_cores']:.2f} cores meanwhile (clean)."
    )
    rc = "" if s.get("rc") == 0 else f" **Failed** (exit {s.get('rc')})."
    if "attempts" in s:  # peers: contended runs were rerun; the tables use the clean ones
        flag = f" {s['attempts']} runs, {s['discarded']} discarded as contended or failed" + (
            "; **some cells have contended runs only (†)**."
            if s.get("contaminated")
            else "; every cell from clean runs."
        )
    return f"_Section run {s['date']}, {s['wall_s']:.0f} s.{rc}{flag}_"


def flag(flags: list[str], name: str, default: str) -> str:
    """The value of the last ``name`` in a command line's ``flags`` (the one argparse keeps)."""
    values = [flags[i + 1] for i, f in enumerate(flags[:-1]) if f == name]
    return values[-1] if values else default


def md_peers(res: dict | None, suite: dict) -> list[str]:
    out = ["## Langevin samplers and training: numpyro-ebm vs bare JAX vs TorchEBM", ""]
    if not res or "runs" not in res:
        return [*out, "Not run: `python benchmarks/run.py --only peers`.", ""]
    meta = res["meta"]
    libs = list(meta["libs"])
    summary = peers.summarize(res["runs"], libs, meta.get("peak_gflops"))
    reps = meta["reps"]
    stamp = f"Measured {meta['date']}"
    if meta.get("git"):
        stamp += f", revision {meta['git']}"
    if meta.get("command"):
        stamp += f", by `{meta['command']}`"
    out += [
        section_note(suite, "peers"),
        "",
        f"{stamp}. Values: median over {reps} fresh process(es) per library and configuration "
        "(seeds 1..n, interleaved, which library runs first alternating between repetitions), "
        "each the median of its timed repeats; brackets: range over processes; `n` = clean "
        "processes. Ratios are of medians, > 1: numpyro-ebm faster; their brackets: the lowest "
        "and highest ratio over processes, **within noise** when they contain 1. "
        f"Flags for every library: `{' '.join(meta['flags'])}`. Raw runs: `peers.json`, "
        "per-run detail: `peers.md`."
        + (
            f" **'% peak' here is against {meta['peak_gflops']:g} GFLOP/s**, the CPU peak when "
            f"this section ran; this machine's measured peak is {_common.CPU_PEAK_GFLOPS:g} "
            f"GFLOP/s (`_common.CPU_PEAK_GFLOPS`, 2026-12-06): divide by "
            f"{_common.CPU_PEAK_GFLOPS / meta['peak_gflops']:.1f}."
            if meta.get("peak_gflops")
            and meta["peak_gflops"] < 1000  # a CPU peak (the GPU peaks are 67,000)
            and meta["peak_gflops"] != _common.CPU_PEAK_GFLOPS
            else ""
        ),
        "",
        *peers.tables_markdown(summary, libs),
        *peers.load_lines(res["runs"]),
        "",
        f"Attempts: {res['attempts']}, discarded (contaminated or failed): {res['discarded']}.",
        "",
        *(f"* {n}" for n in peers.NOTES + meta.get("notes", [])),
        (
            f"* Budget cut (suite under 15 minutes on 2 cores): {reps} fresh processes per "
            f"cell (the peers' README: 3), {flag(meta['flags'], '--repeats', '3')} timed repeats "
            f"per process (3), {flag(meta['flags'], '--steps', '1000')} Langevin steps per timed "
            "call (1000); identical flags for every library. Dim 64 uses 1024 chains (the peers' "
            "README used 256)."
            if meta["flags"][: len(peers.FULL_FLAGS)] == peers.FULL_FLAGS
            else "* Smoke-test flags: one process per library, short timed windows, dim 2 only."
            if meta["flags"][: len(peers.QUICK_FLAGS)] == peers.QUICK_FLAGS
            else f"* Custom flags: `{' '.join(meta['flags'])}`, {reps} process(es) per cell."
        ),
        "",
    ]
    return out


DIAGNOSTICS_GOAL = 20.0  # the project's goal: diagnostics 20x faster than ArviZ


def _md_diagnostics_shapes(res: dict, suite: dict) -> list[str]:
    """The layout with one entry per shape, a "compiled" and a "first result" rate each."""
    versions = res.get("versions") or {}
    device = (res.get("device") or {}).get("device", "")
    out = [
        section_note(suite, "diagnostics", res.get("date")),
        "",
        f"`benchmarks/bench_diagnostics.py`: `numpyro_ebm.diagnostics` (jitted) vs ArviZ "
        f"{versions.get('arviz', '')} on the same draws (AR(1) chains), "
        f"{(res.get('shapes') or [{}])[0].get('dtype', '')}"
        + (f", device {device}" if device else "")
        + f". Measured {res.get('date', '?')}, revision {res.get('revision', '?')}; file "
        f"`diagnostics.json`; command `{res.get('command', '?')}`. Timing: "
        f"{res.get('timing', '?')}. ArviZ time / ours, > 1: ours faster. **Compiled**: median of "
        "the interleaved rounds after the first call (range over the rounds' pairs); **first "
        "result**: each side's first call at the shape, our compilation included.",
        "",
        "| shape (chains, draws, params) | computation | ours, s | ArviZ, s | "
        "ArviZ / ours, compiled, wall [range] | compiled, CPU | ours' first call, s | "
        "ArviZ / ours, first result, wall | first result, CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    best = None
    for row in res["shapes"]:
        wall, first = row.get("median_wall_s", {}), row.get("first_call_wall_s", {})
        sc, rng = row.get("speedup_compiled_wall", {}), row.get("speedup_compiled_wall_range", {})
        cc, fw = row.get("speedup_compiled_cpu", {}), row.get("speedup_first_result_wall", {})
        fc = row.get("speedup_first_result_cpu", {})
        shape = " x ".join(str(v) for v in row.get("shape", []))
        for key, ours_key, theirs_key, label in (
            (
                "three",
                "ours_three",
                "arviz_three",
                "rhat + ess_bulk + ess_tail, `summary(stats=...)`",
            ),
            ("three_separately_jitted", "ours_separate", "arviz_three", "the same, 3 jits"),
            ("summary", "ours_summary", "arviz_summary", "summary (7 statistics)"),
        ):
            if key not in sc:
                continue
            if key in ("three", "summary"):
                best = sc[key] if best is None else max(best, sc[key])
            span = rng.get(key)
            span = f" [{f3(span[0])}-{f3(span[1])}]" if span else ""
            out.append(
                f"| {shape} | {label} | {f3(wall.get(ours_key))} | {f3(wall.get(theirs_key))} | "
                f"**{f3(sc[key])}**{span} | {f3(cc.get(key))} | {f3(first.get(ours_key))} | "
                f"{f3(fw.get(key))} | {f3(fc.get(key))} |"
            )
    out.append("")
    for row in res["shapes"]:
        c = row.get("contention") or {}
        shape = " x ".join(str(v) for v in row.get("shape", []))
        out.append(
            f"* {shape}: {row.get('repeats')} rounds; ours compiled in "
            + ", ".join(f"{k} {f3(v)} s" for k, v in (row.get("jax_compile_s") or {}).items())
            + f"; others used {f3(c.get('foreign_cores'))} cores meanwhile, load average "
            f"{(c.get('loadavg_start') or ['?'])[0]} -> {(c.get('loadavg_end') or ['?'])[0]}"
            + (" (**contended**)" if c.get("contaminated") else " (clean)")
            + "; largest relative difference from ArviZ "
            + f3(
                max(
                    (
                        v
                        for d in (row.get("max_rel_err_vs_arviz") or {}).values()
                        for v in d.values()
                    ),
                    default=None,
                )
            )
            + "."
        )
    if best is not None:
        out += [
            "",
            f"The project's goal, diagnostics {DIAGNOSTICS_GOAL:g}x faster than ArviZ: "
            + (
                f"met (best compiled ratio {f3(best)})."
                if best >= DIAGNOSTICS_GOAL
                else f"**not met**: the best compiled ratio is {f3(best)}."
            ),
        ]
    return out


def md_diagnostics(res: dict | None, suite: dict) -> list[str]:
    out = ["## On-device R-hat / ESS vs ArviZ", ""]
    if not res:
        return [*out, "Not run: `python benchmarks/run.py --only diagnostics`.", ""]
    if isinstance(res.get("shapes"), list):  # one entry per shape, two rates
        return [*out, *_md_diagnostics_shapes(res, suite), ""]
    shape = res.get("shape")
    arviz_v = (res.get("versions") or {}).get("arviz") or res.get("arviz_version", "")
    device = (res.get("machine") or {}).get("device") or res.get("device")
    out += [
        section_note(suite, "diagnostics"),
        "",
        f"`benchmarks/bench_diagnostics.py`: `numpyro_ebm.diagnostics` (jitted) vs ArviZ "
        f"{arviz_v} on the same draws"
        + (f", shape (chains, draws, params) = {tuple(shape)}" if shape else "")
        + (f", {res['dtype']}" if res.get("dtype") else "")
        + (f", {res['repeats']} interleaved repeats" if res.get("repeats") else "")
        + (f", device {device}" if device else "")
        + f". Measured {res.get('date', '?')}; file `diagnostics.json`.",
        "",
    ]
    wall, cpu = res.get("median_wall_s"), res.get("median_cpu_s")
    if isinstance(wall, dict):  # per-comparison layout
        out += [
            "| computation | numpyro-ebm, s | ArviZ, s | ArviZ / ours, wall | "
            "ArviZ / ours, CPU time | ours' compilation, once, s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        comp = res.get("jax_compile_s") if isinstance(res.get("jax_compile_s"), dict) else {}
        what = res.get("what", {})
        for ours_key, theirs_key, label, key in (
            (
                "ours_three",
                "arviz_three",
                "rhat + ess_bulk + ess_tail, `summary(stats=...)`",
                "three",
            ),
            ("ours_separate", "arviz_three", "the same, three separate jits", "separate"),
            ("ours_summary", "arviz_summary", "summary (7 statistics)", "summary"),
        ):
            if ours_key not in wall or theirs_key not in wall:
                continue

            def ratio(d, ours_key=ours_key, theirs_key=theirs_key):
                if not isinstance(d, dict) or not d.get(ours_key):
                    return None
                return d[theirs_key] / d[ours_key]

            out.append(
                f"| {label} | {f3(wall[ours_key])} | {f3(wall[theirs_key])} | "
                f"**{f3(ratio(wall))}** | {f3(ratio(cpu))} | "
                f"{f3(comp.get(key))} |"
            )
        if what:
            out += [
                "",
                "What each side computes: " + "; ".join(f"`{k}`: {v}" for k, v in what.items()),
            ]
        errs = res.get("max_rel_err_vs_arviz") or {}
        if errs:
            worst = max(
                (v for d in errs.values() if isinstance(d, dict) for v in d.values()), default=None
            )
            out += ["", f"Largest relative difference from ArviZ over all statistics: {f3(worst)}."]
        return [*out, ""]
    # the first layout: one comparison
    ours, theirs = res.get("jax_median_s"), res.get("arviz_median_s")
    speed = res.get("speedup") or (theirs / ours if ours and theirs else None)
    out += [
        "| quantity | numpyro-ebm (jit) | ArviZ | ArviZ time / ours (> 1: ours faster) |",
        "| --- | --- | --- | --- |",
        f"| median seconds | {f3(ours)} | {f3(theirs)} | {f3(speed)} |",
    ]
    if isinstance(res.get("jax_compile_s"), int | float):
        out.append(f"| compilation, once, s | {f3(res['jax_compile_s'])} | – | |")
    err = res.get("max_rel_err")
    if isinstance(err, dict):
        out.append(
            "| largest relative difference | "
            + ", ".join(f"{k} {v:.1e}" for k, v in err.items())
            + " | reference | |"
        )
    return [*out, ""]


def md_nuts(res: dict | None, suite: dict) -> list[str]:
    out = ["## NUTS on posteriordb models: numpyro-ebm (BlackJAX) vs NumPyro", ""]
    if not res or not res.get("models"):
        return [*out, "Not run: `python benchmarks/run.py --only nuts`.", ""]
    if res.get("layout") != 2:
        return [
            *out,
            f"`nuts.json` ({res.get('date', '?')}) is in the layout of an earlier "
            "`bench_nuts.py`, whose timing was not symmetric (issue 25); rerun "
            "`python benchmarks/run.py --only nuts`.",
            "",
        ]
    c, load, m0 = res["config"], res.get("contention") or {}, res.get("machine") or {}
    ways = ("ours", "numpyro_jit", "numpyro_run")
    contended = res.get("contaminated_models") or []
    out += [
        f"_Measured {res['date']}, revision {res['git']}, by `{res['command']}`, on "
        f"{m0.get('nproc')} cores ({m0.get('cpu_model')}). Load record: other processes used "
        f"{f3(load.get('foreign_cores'), '.2f')} cores on average while it ran "
        f"({f3(load.get('wall_s'), '.0f')} s wall, {f3(load.get('cpu_s'), '.0f')} s CPU of its "
        f"own; load average {load.get('loadavg_start')} at the start, "
        f"{load.get('loadavg_end')} at the end; waited {load.get('waited_s')} s for a quiet "
        "machine)"
        + (
            f"; **contended** (others above {load.get('max_foreign')} cores): "
            + ", ".join(contended)
            if contended
            else "; every model clean"
        )
        + ". File `nuts.json`._",
        "",
        f"`benchmarks/bench_nuts.py`: per call {c['num_chains']} chains x {c['num_samples']} "
        f"draws after {c['num_warmup']} warm-up, float{'64' if c.get('x64') else '32'}. Per "
        "model, a first call of each way (**first result**, compilation included), then "
        f"{c['seeds']} **compiled** calls on new keys; the order of the three ways alternates "
        "from call to call. `ours`: `numpyro_ebm.sample(model, 'nuts')`. NumPyro: one "
        "`MCMC(NUTS(model), chain_method='vectorized')` per model, reused: `numpyro_run` "
        "calls `mcmc.run(key, **data)` again (NumPyro then still compiles its sampling loop in "
        "every run: see compilations per call), `numpyro_jit` runs the same `mcmc.run` inside "
        "one `jax.jit` function of the key (compiled once: NumPyro's compiled speed, the "
        "headline comparison). Seconds: wall and CPU time around the whole call, warm-up "
        "included, until the draws are on the host; nothing subtracted. ESS = minimum bulk ESS "
        "over all posterior coordinates, by the same function for all. A run with a divergence, "
        f"a non-finite chain or max R-hat > {c['rhat_threshold']} is **unmixed** (counted as "
        "†k/n); ratios ours / NumPyro are per seed over the compiled calls where both runs "
        "mixed: median [lowest, highest] (n seeds); **bold** only where ours mixed in every run "
        "and every seed's ratio is above 1.",
        "",
        "| model | compiled ESS/s: ours / NumPyro jit / NumPyro run (medians) | ours / NumPyro "
        "jit | ours / NumPyro run | first result ESS/s: ours / jit / run | first result: ours "
        "/ jit, ours / run | compiled seconds, wall (CPU): ours / jit / run | first call "
        "seconds, wall (CPU): ours / jit / run | compilations per compiled call: ours / jit / "
        "run | verdict vs NumPyro jit |",
        "| --- |" + " --- |" * 9,
    ]

    def span(d, spec=".2f", bold=False):
        if not d:
            return "n/a"
        mid = f"**{f3(d['median'], spec)}**" if bold else f3(d["median"], spec)
        return f"{mid} [{f3(d['min'], spec)}, {f3(d['max'], spec)}] (n={d['n']})"

    def med(d, spec=".3g"):
        return f3((d or {}).get("median"), spec)

    def rate(v):  # ESS/s: whole numbers from 100 up
        return "n/a" if v is None else f"{v:,.0f}" if v >= 100 else f3(v)

    def unmixed(s):
        return f" †{s['unmixed_runs']}/{s['runs']}" if s["unmixed_runs"] else ""

    for name, m in res["models"].items():
        s, v = m["sides"], m["versus"]
        label = name + (" (contended)" if name in contended else "")
        comp = " / ".join(
            rate((s[w]["compiled"]["ess_per_s"] or {}).get("median")) + unmixed(s[w]) for w in ways
        )
        first = " / ".join(rate(s[w]["first_result"]["ess_per_s"]) for w in ways)
        first_ratio = ", ".join(
            f3(v[w]["first_result"]["ess_per_s"], ".2f")
            + ("" if v[w]["first_result"]["both_mixed"] else " †")
            for w in ("numpyro_jit", "numpyro_run")
        )
        secs = " / ".join(
            f"{med(s[w]['compiled']['wall_s'])} ({med(s[w]['compiled']['cpu_s'])})" for w in ways
        )
        first_secs = " / ".join(
            f"{f3(s[w]['first_result']['wall_s'])} ({f3(s[w]['first_result']['cpu_s'])})"
            for w in ways
        )
        compiles = " / ".join(med(s[w]["compiled"]["compiles"], ".0f") for w in ways)
        ratios = " | ".join(
            span(v[w]["compiled"]["ess_per_s"], bold=v[w]["verdict"] == "faster")
            for w in ("numpyro_jit", "numpyro_run")
        )
        out.append(
            f"| {label} | {comp} | {ratios} | {first} | {first_ratio} | {secs} | {first_secs} | "
            f"{compiles} | {m['verdict']} |"
        )
    out += [
        "",
        "Quality, over every run (first call included): ESS per 1000 gradients of the draws "
        "(median), divergences per run, the largest R-hat, and the error against posteriordb's "
        "reference: |Δmean|/sd = max |mean − ref mean| / ref sd, z = max |mean − ref mean| / "
        "sqrt(mcse² + ref mcse²) (≲ 3 for a correct sampler), the largest over runs.",
        "",
        "| model | ESS per 1k grads: ours / jit / run | ours / NumPyro jit, per 1k grads | "
        "divergences per run: ours; jit; run | max R-hat: ours / jit / run | unmixed runs: "
        "ours / jit / run | max abs Δmean / sd: ours / jit / run | max z: ours / jit / run |",
        "| --- |" + " --- |" * 7,
    ]
    for name, m in res["models"].items():
        s = m["sides"]
        out.append(
            f"| {name} | "
            + " / ".join(med(s[w]["ess_per_1k_grads"]) for w in ways)
            + f" | {span(m['versus']['numpyro_jit']['compiled']['ess_per_1k_grads'])} | "
            + "; ".join(",".join(str(d) for d in s[w]["divergences"]) for w in ways)
            + " | "
            + " / ".join(f3(max(s[w]["max_rhat"]), ".3f") for w in ways)
            + " | "
            + " / ".join(f"{s[w]['unmixed_runs']}/{s[w]['runs']}" for w in ways)
            + " | "
            + " / ".join(f3(max(s[w]["max_std_mean_error"]), ".3f") for w in ways)
            + " | "
            + " / ".join(f3(max(s[w]["max_z"]), ".2f") for w in ways)
            + " |"
        )
    summary = res.get("summary") or {}
    lines = []
    for way in ("numpyro_jit", "numpyro_run"):
        t = summary.get(way)
        if not t:
            continue
        d, low_high = t["compiled_ess_per_s_model_medians"], t["compiled_ess_per_s_seed_range"]
        f = t["first_result_ess_per_s"]
        lines.append(
            f"* ours / {way}: compiled ESS/s, over the {len(t['models_compared'])} models with "
            "a verdict, "
            + (
                f"model medians {f3(d['median'], '.2f')} (from {f3(d['min'], '.2f')} to "
                f"{f3(d['max'], '.2f')}), single seeds from {f3(low_high[0], '.2f')} to "
                f"{f3(low_high[1], '.2f')}"
                if d
                else "none"
            )
            + "; first result, over the models whose first calls both mixed: "
            + (
                f"median {f3(f['median'], '.2f')} (from {f3(f['min'], '.2f')} to "
                f"{f3(f['max'], '.2f')}, n={f['n']})"
                if f
                else "none"
            )
            + (
                "; no claim for " + ", ".join(t["models_without_claim"])
                if t["models_without_claim"]
                else ""
            )
            + "."
        )
    out += [
        "",
        *lines,
        "",
        "Models in NumPyro with the Stan programs' parameterization (see "
        "`benchmarks/bench_nuts.py`). ESS per 1000 gradients is about the same on both sides "
        "(the same algorithm); the ESS/s ratios move with each run's minimum bulk ESS, which "
        "varies by 10-20 % between seeds, and with the call's time, hence the ranges. CPU "
        "seconds above wall seconds: the call kept both cores busy (XLA's thread pool), which "
        "on models this small made calls slower, not faster. What is not symmetric: ours "
        "returns an `InferenceData` and runs its health checks inside the call, NumPyro returns "
        "arrays; NumPyro's `numpyro_jit` way is not its documented default.",
        "",
    ]
    return out


def md_scaling(res: dict | None, suite: dict, png_rel: str | None) -> list[str]:
    out = ["## Scaling: chains 1 to 100,000 and dimension 2 to 1024", ""]
    if not res:
        return [*out, "Not run: `python benchmarks/run.py --only scaling`.", ""]
    out += [
        section_note(suite, "scaling"),
        "",
        f"{res['sampler']} on the peers' MLP energy (hidden 128, float32). Each point a fresh "
        "process; seconds per step after compilation (median of calls); peak RSS = the "
        "process's VmHWM (JAX runtime included; 'extra' = over the same process right after "
        "importing JAX); % peak = 2·2·(d h + h² + h) matmul FLOPs per chain-step over the "
        f"{res['peak_label']}. Measured {res['date']}"
        + (f", revision {res['git']}" if res.get("git") else "")
        + (f", by `{res['command']}`" if res.get("command") else "")
        + "; file `scaling.json`."
        + (
            f" Load record: other processes used {res['contention']['foreign_cores']:.2f} cores "
            f"on average while it ran ({res['contention']['wall_s']:.0f} s wall, "
            f"{res['contention']['cpu_s']:.0f} s CPU of its own; load average "
            f"{res['contention']['loadavg_start']} at the start, "
            f"{res['contention']['loadavg_end']} at the end); "
            + (
                "**contended** points: "
                + ", ".join(f"{c} x {d}" for c, d in res.get("contaminated_points") or [])
                if res.get("contaminated")
                else "every point clean"
            )
            + "."
            if res.get("contention")
            else ""
        ),
        "",
    ]
    if png_rel:
        out += [f"![scaling]({png_rel})", ""]
    mem = (
        "device_peak_mib"
        if any(p.get("device_peak_mib") for p in res["vs_chains"] + res["vs_dim"])
        else None
    )
    cpu = any(p.get("chain_steps_per_cpu_s") for p in res["vs_chains"] + res["vs_dim"])
    head = "| sweep | chains | dim | ms / step | chain-steps/s | "
    head += "chain-steps per CPU-s | " if cpu else ""
    head += "GFLOP/s | % peak | peak RSS MiB "
    head += "| extra MiB |" + (" device peak MiB |" if mem else "")
    out += [head, "|" + " --- |" * (head.count("|") - 1)]
    for sweep, label in (("vs_chains", "chains"), ("vs_dim", "dim")):
        for p in res[sweep]:
            if "error" in p:
                out.append(f"| {label} | {p['chains']} | {p['dim']} | failed | | | | | |")
                continue
            row = (
                f"| {label} | {p['chains']:,} | {p['dim']} | {p['s_per_step'] * 1e3:.3g} | "
                f"{peers.fmt(p['chain_steps_per_s'])} | "
                + (f"{peers.fmt(p.get('chain_steps_per_cpu_s'))} | " if cpu else "")
                + f"{p['matmul_gflops']:.3g} | "
                f"{f3(p.get('pct_peak'), '.1f')} | {p['peak_rss_mib']:.0f} | "
                f"{p['extra_rss_mib']:.0f} |"
            )
            if mem:
                row += f" {f3(p.get('device_peak_mib'), '.0f')} |"
            out.append(row)
    return [*out, ""]


def md_gpu(backend: str, device: dict, date: str, gpu_dir: Path) -> list[str]:
    out = ["## GPU", ""]
    if backend != "cpu":
        return [
            *out,
            f"This run: {device.get('device_kind')} ({backend}, {device.get('num_devices')} "
            f"device(s)), {date}. Every table above was measured on it, with the same command "
            "as the CPU suite.",
            "",
        ]
    suite = load_json(gpu_dir / "suite.json")
    if not suite:
        return [*out, f"Not measured: no GPU available on {date}.", ""]
    dev = suite.get("device", {})
    out += [
        f"Last GPU run: {dev.get('device_kind')} ({dev.get('backend')}), {suite.get('date')}, "
        f"revision {suite.get('git')}: `benchmarks/results/gpu/README.md` (same command; its "
        "ratios are measured within that run).",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    p = load_json(gpu_dir / "peers.json")
    for cfg, block in ((p or {}).get("summary") or {}).items():
        row = block["metrics"].get("langevin_chain_steps_per_s", {})
        if "numpyro-ebm" in row:
            out.append(
                f"| {cfg}: ULA chain-steps/s, ours (ours / bare JAX) | "
                f"{peers.fmt(row['numpyro-ebm']['median'])} "
                f"({f3(row.get('ours_over_jax-reference'))}) |"
            )
    n = load_json(gpu_dir / "nuts.json")
    for name, m in ((n or {}).get("models") or {}).items():
        ratio = m["ratio_ours_over_numpyro"]["ess_per_s"]
        out.append(f"| {name}: NUTS ESS/s ours / NumPyro | {f3(ratio)} |")
    d = load_json(gpu_dir / "diagnostics.json")
    if d and d.get("speedup") is not None:
        out.append(f"| diagnostics: ArviZ time / ours | {f3(d['speedup'])} |")
    s = load_json(gpu_dir / "scaling.json")
    if s:
        best = max(
            (q for q in s["vs_chains"] + s["vs_dim"] if "error" not in q),
            key=lambda q: q["chain_steps_per_s"],
            default=None,
        )
        if best:
            out.append(
                f"| scaling: best chain-steps/s (chains, dim) | "
                f"{peers.fmt(best['chain_steps_per_s'])} ({best['chains']}, {best['dim']}) |"
            )
    return [*out, ""]


def render(suite, out_dir: Path, gpu_dir: Path, png_rel) -> str:
    m = suite["machine"]
    v = suite["versions"]
    date = suite["date"]
    t = suite.get("total_s")
    lines = [
        "# numpyro-ebm benchmarks" + (" (quick smoke test)" if suite["quick"] else ""),
        "",
        f"Generated by `{suite['command']}` on {date}"
        + (f" in {t / 60:.1f} minutes" if t else "")
        + f"; revision {suite['git']}.",
        "",
        f"Machine: {m['nproc']} CPU cores, {m['cpu_model']} ({m['cpu_flags']}), {m['memory']}; "
        f"{m['platform']}. JAX backend: {suite['device'].get('backend')} "
        f"({suite['device'].get('device_kind')}).",
        "",
        "Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val)
        + "".join(
            f"; TorchEBM venv: {k} {val}" if i == 0 else f", {k} {val}"
            for i, (k, val) in enumerate((suite.get("torchebm") or {}).items())
        ),
        "",
        "Every figure below is a ratio of two measurements taken in the same run, on the same "
        "machine: > 1 means numpyro-ebm is faster (or more efficient). '% peak' is the "
        f"achieved matmul FLOP/s over the {suite['peak_label']}. "
        + (
            f"This machine's f32 matmul peak, measured on 2026-12-06 after it began reporting "
            f"AVX-512, is about {_common.CPU_PEAK_GFLOPS:g} GFLOP/s (`_common.CPU_PEAK_GFLOPS`): "
            f"a '% peak' taken against {suite.get('peak_gflops'):g} GFLOP/s reads "
            f"{_common.CPU_PEAK_GFLOPS / suite['peak_gflops']:.1f}x too high, and above 100 % "
            "in the machine's fast phases. "
            if suite["device"].get("backend") == "cpu"
            and suite.get("peak_gflops")
            and suite["peak_gflops"] != _common.CPU_PEAK_GFLOPS
            else ""
        )
        + (
            "**This is a `--quick` smoke test: short runs, one process each; the ratios are "
            "indicative only.** "
            if suite["quick"]
            else ""
        )
        + "Sections not run by this command show their last results, with their own dates.",
        "",
    ]
    if not suite["quick"]:
        lines += [
            f"Cuts made to fit the suite in 15 minutes on 2 cores: peers {peers.FULL_REPS} fresh "
            "processes per cell by default (`--reps`; the peers' README: 3), "
            f"{flag(peers.FULL_FLAGS, '--repeats', '3')} timed repeats per process (3) and "
            f"{flag(peers.FULL_FLAGS, '--steps', '1000')} Langevin steps "
            "per timed call (1000); diagnostics 20 interleaved rounds at 4 x 1000 and 3 at "
            "1000 x 1000 after the first call (the script's default: 20 and 5); NUTS a first "
            "call then 3 compiled calls per model and side (the script's default); scaling "
            "about 2 s of timed calls per point.",
            "",
        ]
    lines += md_peers(load_json(out_dir / "peers.json"), suite)
    lines += md_nuts(load_json(out_dir / "nuts.json"), suite)
    lines += md_diagnostics(load_json(out_dir / "diagnostics.json"), suite)
    lines += md_scaling(load_json(out_dir / "scaling.json"), suite, png_rel)
    lines += md_gpu(suite["device"].get("backend", "cpu"), suite["device"], date, gpu_dir)
    return "\n".join(lines)
