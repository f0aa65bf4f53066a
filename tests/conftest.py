"""Test configuration: the platform comes from the environment, float32 by default.

* By default the tests run on the CPU with 4 virtual devices (``JAX_PLATFORMS=cpu`` and
  ``--xla_force_host_platform_device_count=4`` added to ``XLA_FLAGS``), so that the sharding
  tests see several devices on any machine.
* ``NUMPYRO_EBM_TEST_PLATFORM=gpu`` runs them on the GPU (``JAX_PLATFORMS=cuda,cpu``: the GPU
  is the default device, the CPU stays reachable for CPU-vs-GPU comparisons); an explicit
  ``JAX_PLATFORMS`` other than ``cpu`` (``cuda``, ``tpu``, ...) is respected as it is. In both
  cases nothing forces the CPU or a device count.
* The command's compilation cache (under ``XDG_CACHE_HOME``) goes to a temporary folder of the
  test session, removed at its end: tests never write to the user's cache, nor read programs
  an earlier session compiled there.
"""

import atexit
import os
import shutil
import tempfile

import pytest

PLATFORMS = {"cpu": "cpu", "gpu": "cuda,cpu", "cuda": "cuda,cpu"}
_FORCE_DEVICES = "--xla_force_host_platform_device_count=4"


def _configure(environ) -> None:
    platform = environ.get("NUMPYRO_EBM_TEST_PLATFORM", "").strip().lower()
    if platform and platform not in PLATFORMS:
        raise ValueError(
            f"NUMPYRO_EBM_TEST_PLATFORM must be one of {sorted(PLATFORMS)}, got {platform!r}"
        )
    if platform in ("gpu", "cuda"):
        environ["JAX_PLATFORMS"] = PLATFORMS[platform]
        return
    if environ.get("JAX_PLATFORMS", "cpu").strip().lower() not in ("", "cpu"):
        return  # an explicit accelerator platform, respected as it is
    environ["JAX_PLATFORMS"] = "cpu"
    flags = environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        environ["XLA_FLAGS"] = f"{flags} {_FORCE_DEVICES}".strip()


_configure(os.environ)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="numpyro-ebm-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test module, drop JAX's and the library's caches of compiled programs. One
    process that runs the whole suite (``-n 1``) otherwise keeps every executable it compiled,
    each holding memory maps, towards the kernel's per-process limit (vm.max_map_count,
    65530 here); such a run died in XLA's compiler near the end of the suite."""
    yield
    import jax

    import numpyro_ebm

    numpyro_ebm.clear_cache()
    jax.clear_caches()
