"""Render the benchmark suite's ``README.md`` from its JSON results (``benchmarks/run.py``
runs and collects; this module only reads and formats)."""

from __future__ import annotations

import json
from pathlib import Path

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


def section_note(suite: dict, name: str) -> str:
    s = suite.get("sections", {}).get(name)
    if not s:
        return ""
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


def md_peers(res: dict | None, suite: dict) -> list[str]:
    out = ["## Langevin samplers and training: numpyro-ebm vs bare JAX vs TorchEBM", ""]
    if not res or "runs" not in res:
        return [*out, "Not run: `python benchmarks/run.py --only peers`.", ""]
    meta = res["meta"]
    libs = list(meta["libs"])
    summary = peers.summarize(res["runs"], libs, meta.get("peak_gflops"))
    reps = meta["reps"]
    out += [
        section_note(suite, "peers"),
        "",
        f"Values: median over {reps} fresh process(es) per library and configuration (seeds "
        "1..n, interleaved), each the median of its timed repeats; brackets: range over "
        "processes; `n` = clean processes. Ratios are of medians, > 1: numpyro-ebm faster. "
        f"Flags for every library: `{' '.join(meta['flags'])}`. Raw runs: `peers.json`, "
        "per-run detail: `peers.md`.",
        "",
        *peers.tables_markdown(summary, libs),
        f"Attempts: {res['attempts']}, discarded (contaminated or failed): {res['discarded']}.",
        "",
        *(f"* {n}" for n in peers.NOTES + meta.get("notes", [])),
        (
            f"* Budget cut (suite under 15 minutes on 2 cores): {reps} fresh processes per "
            "cell (the peers' README: 3), 2 timed repeats per process instead of 3, 500 Langevin "
            "steps per timed call instead of 1000; identical flags for all three libraries. "
            "Dim 64 uses 1024 chains (the peers' README used 256)."
            if meta["flags"][: len(peers.FULL_FLAGS)] == peers.FULL_FLAGS
            else "* Smoke-test flags: one process per library, short timed windows, dim 2 only."
            if meta["flags"][: len(peers.QUICK_FLAGS)] == peers.QUICK_FLAGS
            else f"* Custom flags: `{' '.join(meta['flags'])}`, {reps} process(es) per cell."
        ),
        "",
    ]
    return out


def md_diagnostics(res: dict | None, suite: dict) -> list[str]:
    out = ["## On-device R-hat / ESS vs ArviZ", ""]
    if not res:
        return [*out, "Not run: `python benchmarks/run.py --only diagnostics`.", ""]
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
            ("ours_three", "arviz_three", "rhat + ess_bulk + ess_tail, one jit", "three"),
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
    c = res["config"]
    out += [
        section_note(suite, "nuts"),
        "",
        f"`numpyro_ebm.compare(model, ['nuts', 'numpyro_nuts'])`, {c['num_chains']} chains x "
        f"{c['num_samples']} draws after {c['num_warmup']} warm-up, same key and initial "
        "positions, an untimed first call; ESS = min bulk ESS over all posterior coordinates; "
        "seconds exclude compilation (`jax.monitoring`, with synchronous CPU dispatch so that "
        "none overlaps a run) and include warm-up; gradients count draws only. "
        f"Cells: ours / NumPyro, first seed; ratios: median over {c.get('seeds', 1)} seeds "
        "(range in brackets). Accuracy against posteriordb's reference: |Δmean|/sd = max "
        "|mean − ref mean| / ref sd; z = max |mean − ref mean| / sqrt(mcse² + ref mcse²) "
        f"(≲ 3 for a correct sampler). Measured {res['date']}; file `nuts.json`.",
        "",
        "| model | ESS/s | ratio | ESS per 1k grads | ratio | min bulk ESS | seconds | "
        "compile s | max R-hat | divergences | max abs Δmean / sd | max z |",
        "| --- |" + " --- |" * 11,
    ]
    for name, m in res["models"].items():
        a, b = (m["samplers"][s]["table"] for s in ("nuts", "numpyro_nuts"))
        aa, ba = (m["samplers"][s]["accuracy"] for s in ("nuts", "numpyro_nuts"))
        r, span = m["ratio_ours_over_numpyro"], m.get("ratio_range", {})

        def ratio(k, r=r, span=span):
            low_high = span.get(k)
            return f"**{f3(r[k])}**" + (
                f" [{f3(low_high[0])}, {f3(low_high[1])}]" if low_high else ""
            )

        def pair(x, y, spec=".3g"):
            return f"{f3(x, spec)} / {f3(y, spec)}"

        out.append(
            f"| {name} | {pair(a['ess_per_s'], b['ess_per_s'])} | {ratio('ess_per_s')} | "
            f"{pair(a['ess_per_1k_grads'], b['ess_per_1k_grads'])} | "
            f"{ratio('ess_per_1k_grads')} | "
            f"{pair(a['min_ess_bulk'], b['min_ess_bulk'], '.0f')} | "
            f"{pair(a['wall_s'], b['wall_s'])} | {pair(a['compile_s'], b['compile_s'], '.1f')} | "
            f"{pair(a['max_rhat'], b['max_rhat'], '.3f')} | "
            f"{pair(a['divergences'], b['divergences'], '.0f')} | "
            f"{pair(aa['max_std_mean_error'], ba['max_std_mean_error'], '.3f')} | "
            f"{pair(aa['max_z'], ba['max_z'], '.2f')} |"
        )
    out += [
        "",
        "Models in NumPyro with the Stan programs' parameterization (see "
        "`benchmarks/bench_nuts.py`). One run's minimum bulk ESS varies by 10-20 % between seeds; "
        "the ratios are medians over the seeds.",
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
        f"{res['peak_label']}. Measured {res['date']}; file `scaling.json`.",
        "",
    ]
    if png_rel:
        out += [f"![scaling]({png_rel})", ""]
    mem = (
        "device_peak_mib"
        if any(p.get("device_peak_mib") for p in res["vs_chains"] + res["vs_dim"])
        else None
    )
    head = "| sweep | chains | dim | ms / step | chain-steps/s | GFLOP/s | % peak | peak RSS MiB "
    head += "| extra MiB |" + (" device peak MiB |" if mem else "")
    out += [head, "|" + " --- |" * (head.count("|") - 1)]
    for sweep, label in (("vs_chains", "chains"), ("vs_dim", "dim")):
        for p in res[sweep]:
            if "error" in p:
                out.append(f"| {label} | {p['chains']} | {p['dim']} | failed | | | | | |")
                continue
            row = (
                f"| {label} | {p['chains']:,} | {p['dim']} | {p['s_per_step'] * 1e3:.3g} | "
                f"{peers.fmt(p['chain_steps_per_s'])} | {p['matmul_gflops']:.3g} | "
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
            "Cuts made to fit the suite in 15 minutes on 2 cores: peers 2 fresh processes per "
            "cell by default (`--reps`; the peers' README: 3), 2 timed repeats per process (3) "
            "and 500 Langevin steps "
            "per timed call (1000); diagnostics 3 repeats (the script's default: 5); NUTS one "
            "run per model; scaling about 2 s of timed calls per point.",
            "",
        ]
    lines += md_peers(load_json(out_dir / "peers.json"), suite)
    lines += md_nuts(load_json(out_dir / "nuts.json"), suite)
    lines += md_diagnostics(load_json(out_dir / "diagnostics.json"), suite)
    lines += md_scaling(load_json(out_dir / "scaling.json"), suite, png_rel)
    lines += md_gpu(suite["device"].get("backend", "cpu"), suite["device"], date, gpu_dir)
    return "\n".join(lines)
