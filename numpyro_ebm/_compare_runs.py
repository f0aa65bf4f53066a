"""Running the samplers of :func:`~numpyro_ebm.compare`: the sampler values and their row
labels from what the caller gave, the budgets, each run timed apart from its compilation, and a
run's row of cost and mixing figures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import jax
import numpy as np

from numpyro_ebm import _arviz
from numpyro_ebm._checks import check_int
from numpyro_ebm.report import MixingReport
from numpyro_ebm.samplers import Sampler, get_sampler
from numpyro_ebm.sampling import sample

_COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)


@contextlib.contextmanager
def _compile_clock() -> Iterator[list[float]]:
    """Seconds JAX spent tracing, lowering and compiling while the block ran.

    JAX reports each event's duration when it ends; a function jitted inside another is
    traced within its parent's trace, so the events nest. Each event is taken as the interval
    ``[end - duration, end]`` and the clock is the length of their union, which counts
    nested time once.
    """
    spans: list[tuple[float, float]] = []
    total = [0.0]

    def listener(event: str, duration: float, **kwargs) -> None:
        if event in _COMPILE_EVENTS:
            end = time.perf_counter()
            spans.append((end - duration, end))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield total
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
        covered, reach = 0.0, float("-inf")
        for start, end in sorted(spans):
            if end > reach:
                covered += end - max(start, reach)
                reach = end
        total[0] = covered


def timed_sample(target, sampler, *, key, budget, progress, **sample_kwargs):
    """One run: ``(data, seconds after compilation, compilation seconds)``."""
    with _compile_clock() as compile_s:
        start = time.perf_counter()
        data = sample(target, sampler, key=key, progress=progress, **budget, **sample_kwargs)
        wall = time.perf_counter() - start
    return data, max(wall - compile_s[0], 0.0), compile_s[0]


def table_row(report: MixingReport, data, run_s: float, compile_s: float, floor: float) -> dict:
    stats = _arviz.group(data, "sample_stats")
    grads = int(np.asarray(stats["num_grad_evals"].values).sum())
    min_ess = float(report.table["ess_bulk"].min())
    return {
        "wall_s": run_s,
        "compile_s": compile_s,
        "grad_evals": grads,
        "max_rhat": float(report.table["rhat"].max()),
        "min_ess_bulk": min_ess,
        "min_ess_tail": float(report.table["ess_tail"].min()),
        "ess_per_s": min_ess / run_s if run_s >= floor else float("nan"),
        "ess_per_1k_grads": 1000.0 * min_ess / grads if grads else float("nan"),
        "divergences": report.divergences,
        "nonfinite_chains": report.nonfinite_chains,
        "min_bfmi": min(report.bfmi) if report.bfmi else float("nan"),
        "max_nested_rhat": float(report.table["nested_rhat"].max())
        if "nested_rhat" in report.table
        else float("nan"),
    }


def _value(item, sampler_options: dict) -> Sampler:
    """A sampler value from a value, a name or a ``(name, options)`` pair (with the
    ``sampler_options`` given for that name)."""
    if isinstance(item, Sampler):
        return item
    if isinstance(item, str):
        return get_sampler(item, **sampler_options.get(item, {}))
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
        name = str(item[0])
        return get_sampler(name, **(sampler_options.get(name, {}) | item[1]))
    raise TypeError(
        f"samplers must hold sampler values, names or (name, options) pairs, got {item!r}"
    )


def row_labels(values: list[Sampler]) -> list[str]:
    """One row label per sampler: its name, or for several settings of one sampler its name
    with the options in which they differ, e.g. ``mala(step_size=0.05)``."""
    if len(set(values)) != len(values):
        raise ValueError(f"samplers has duplicates: {[repr(value) for value in values]}")
    labels = []
    for value in values:
        same = [other for other in values if other.name == value.name]
        differ = [
            f"{option}={setting!r}"
            for option, setting in value.options.items()
            if any(repr(other.options[option]) != repr(setting) for other in same)
        ]
        labels.append(f"{value.name}({', '.join(differ)})" if len(same) > 1 else value.name)
    return labels


def parse_samplers(samplers, sampler_options, reference) -> tuple[list[Sampler], Sampler | None]:
    """The sampler values to run and the one of a reference run (``None`` without one);
    unknown names and options fail here, before anything runs."""
    if isinstance(samplers, str | Sampler):
        raise TypeError(
            f"samplers must be a sequence of samplers, got the single {samplers!r}: write "
            f"[{samplers!r}]"
        )
    options = dict(sampler_options or {})
    values = [_value(item, options) for item in samplers]
    names = [value.name for value in values]
    if not values:
        raise ValueError("samplers must name at least one sampler")
    run = None
    if isinstance(reference, str | Sampler) or (
        isinstance(reference, tuple) and len(reference) == 2 and isinstance(reference[1], dict)
    ):
        run = _value(reference, options)
    stray = sorted(set(options) - set(names) - {run.name if run else None})
    if stray:
        raise ValueError(f"sampler_options for {stray}, which are not in samplers {names}")
    return values, run


def check_budgets(budgets, names) -> dict[str, dict]:
    """``budgets`` checked: sampler names -> ``{"num_samples", "num_warmup"}`` subsets."""
    if budgets is None:
        return {}
    if not isinstance(budgets, dict):
        raise TypeError(
            f"budgets must be a dict {{sampler: {{num_samples, ...}}}}, got {budgets!r}"
        )
    for name, own in budgets.items():
        if name not in names:
            raise ValueError(f"budgets for {name!r}, which is not in samplers {names}")
        if not isinstance(own, dict) or not set(own) <= {"num_samples", "num_warmup"}:
            raise ValueError(
                f"budgets[{name!r}] may set num_samples and num_warmup only, got {own!r}"
            )
        for field_name, value in own.items():
            check_int(field_name, value, minimum=1 if field_name == "num_samples" else 0)
    return budgets


def check_against_data(against_data, names, data) -> tuple[str, ...]:
    if isinstance(against_data, str):
        raise TypeError(
            f"against_data must be a sequence of names, got the string {against_data!r}"
        )
    against = tuple(against_data)
    stray = sorted(set(against) - set(names))
    if stray:
        raise ValueError(f"against_data names {stray}, which are not in samplers {names}")
    if against and data is None:
        raise ValueError(f"against_data={list(against)} needs data= (draws of the data)")
    return against
