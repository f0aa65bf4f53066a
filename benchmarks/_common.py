"""Helpers shared by the benchmark scripts: machine, versions, revision, peak FLOP/s."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# f32 matmul peak of this 2-core machine (AMD EPYC, AVX-512): bench_peak.py, a jitted jnp.dot
# of two 4096 x 4096 float32 matrices, 40 calls, best 424 GFLOP/s (median 395) on 2026-12-06,
# 423 (392) on 2026-12-07 (results/peak.json). Before 2026-12-06 the machine reported AVX2
# only and the constant was 150 (issue 7); rates measured before then are not comparable.
CPU_PEAK_GFLOPS = 420.0
PACKAGES = ("numpyro-ebm", "jax", "jaxlib", "flax", "optax", "blackjax", "numpyro", "arviz")
# f32 peaks of the accelerators the suite may meet, GFLOP/s (vendor datasheets, dense, no
# sparsity). JAX runs float32 matmuls on the GPU at its default precision, which may use TF32
# tensor cores: against the plain-FP32 peak the fraction can then exceed 100 %.
GPU_PEAK_GFLOPS = {"H100": 67_000.0, "H200": 67_000.0}


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def machine_info() -> dict:
    """CPU model (with its family, model and stepping numbers, which tell hosts of one
    marketing name apart), flags, core count and memory of this machine."""
    model, flags, mem, family = "unknown", "", "", {}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key in ("cpu family", "model", "stepping"):
                family.setdefault(key, value.strip())
            if not line.strip():  # the first processor's block ends
                break
        flags = " ".join(f for f in ("avx2", "avx512f", "fma") if f" {f}" in text)
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "cpu_family_model_stepping": "/".join(
            family.get(key, "?") for key in ("cpu family", "model", "stepping")
        ),
        "cpu_flags": flags,
        "memory": mem,
        "platform": platform.platform(),
    }


def local_versions(names=PACKAGES) -> dict:
    """Python and package versions of this interpreter."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def versions(python: str, names=PACKAGES) -> dict:
    """Python and package versions of another interpreter (a venv's python)."""
    code = (
        "import importlib.metadata as m, json, platform\n"
        "out = {'python': platform.python_version()}\n"
        f"for n in {list(names)!r}:\n"
        "    try: out[n] = m.version(n)\n"
        "    except Exception: out[n] = None\n"
        "print(json.dumps(out))"
    )
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
        return json.loads(p.stdout.strip().splitlines()[-1])
    except Exception as e:
        return {"error": repr(e)}


def command_line(script: str, argv=None) -> str:
    """The command that reproduces a run: ``python benchmarks/<script> <arguments>``, the
    arguments being ``argv`` (a ``main(argv)`` call) or, for ``None``, the process's own."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{script}", *map(str, args)])


def git_revision() -> str:
    """Short HEAD revision, marked dirty when the library has uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "numpyro_ebm"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return (rev or "unknown") + ("+dirty(numpyro_ebm)" if dirty else "")
    except OSError:
        return "unknown"


def jax_device() -> dict:
    """Backend and first device of the JAX in this process."""
    import jax

    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": str(dev),
        "device_kind": getattr(dev, "device_kind", "unknown"),
        "num_devices": jax.device_count(),
    }


def peak_gflops(device: dict, cpu_peak: float = CPU_PEAK_GFLOPS) -> tuple[float | None, str]:
    """The f32 matmul peak used for '% of peak' on this device, and its label."""
    if device.get("backend") == "cpu":
        return cpu_peak, f"{cpu_peak:g} GFLOP/s f32 matmul peak (2-core CPU, measured 2026-12-06)"
    kind = device.get("device_kind", "")
    for name, peak in GPU_PEAK_GFLOPS.items():
        if name in kind:
            return peak, f"{peak / 1000:g} TFLOP/s FP32 (non-tensor) peak of the {name}"
    return None, f"no known peak for {kind!r}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (VmHWM), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=float) + "\n")


def _jiffies() -> int:
    """Busy CPU jiffies of the whole machine (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6]


def _own_cpu_s() -> float:
    """CPU seconds of this process (all threads) and its reaped children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def busy_cores(seconds: float = 3.0) -> float:
    """Cores the whole machine kept busy over ``seconds`` (this process included)."""
    import time

    hz = os.sysconf("SC_CLK_TCK")
    before = _jiffies()
    time.sleep(seconds)
    return (_jiffies() - before) / hz / seconds


class Contention:
    """The contention guard of a standalone benchmark script (``run.py`` guards its sections
    the same way): on entry, wait up to ``max_wait`` seconds for a machine where other
    processes keep at most ``max_foreign`` cores busy; inside, time the measurement and count
    the CPU time other processes used meanwhile (the machine's busy jiffies minus this
    process's and its children's), with the load averages at both ends.

    ``record()`` is what a result file keeps: ``wall_s``, ``cpu_s`` (this process),
    ``foreign_cores`` (others' mean load while measuring), ``busy_before``, ``waited_s``,
    ``loadavg_start`` / ``loadavg_end`` and ``contaminated`` (others above ``max_foreign``
    cores). A script writes its result either way, marked; the README renders a contaminated
    figure as such. Usage::

        with _common.Contention() as guard:
            ...  # the measurement
        result["contention"] = guard.record()
    """

    def __init__(self, max_foreign: float = 0.3, max_wait: float = 600.0):
        self.max_foreign, self.max_wait = max_foreign, max_wait

    def __enter__(self):
        import time

        start = time.perf_counter()
        self.busy_before = busy_cores()
        while (
            self.busy_before > self.max_foreign + 0.05
            and time.perf_counter() - start < self.max_wait
        ):
            time.sleep(5.0)
            self.busy_before = busy_cores()
        self.waited_s = time.perf_counter() - start
        self.load_start = os.getloadavg()
        self._jiffies, self._cpu = _jiffies(), _own_cpu_s()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import time

        self.wall_s = time.perf_counter() - self._t0
        hz = os.sysconf("SC_CLK_TCK")
        self.cpu_s = _own_cpu_s() - self._cpu
        machine = (_jiffies() - self._jiffies) / hz
        self.foreign_cores = max(0.0, machine - self.cpu_s) / max(self.wall_s, 1e-9)
        self.load_end = os.getloadavg()
        return False

    @property
    def contaminated(self) -> bool:
        return self.foreign_cores > self.max_foreign

    def record(self) -> dict:
        return {
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "foreign_cores": round(self.foreign_cores, 3),
            "busy_before": round(self.busy_before, 3),
            "waited_s": round(self.waited_s, 1),
            "loadavg_start": [round(x, 2) for x in self.load_start],
            "loadavg_end": [round(x, 2) for x in self.load_end],
            "max_foreign": self.max_foreign,
            "contaminated": self.contaminated,
        }
