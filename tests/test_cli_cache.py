"""The command's persistent compilation cache: a second run compiles nothing that the first
compiled, the opt-outs keep nothing, and JAX's settings are the command's only while it runs."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from numpyro_ebm import _arviz, _cli_cache, storage
from numpyro_ebm.cli import main

SPEC = {"network": "NoiseConditionalMLP", "event_shape": [2], "hidden": [8]}
SAMPLE = ["--no-progress", "sample", "--sampler", "mala", "--chains", "4", "--samples", "20",
          "--warmup", "10"]  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A `train` output folder holding an (untrained) noise-conditional network."""
    folder = tmp_path_factory.mktemp("model")
    network = storage.build_network(SPEC)
    storage.save_network(folder / "network", network, SPEC, {"sigmas": [1.0, 0.1]})
    return folder


def command(*argv, home, **environ) -> str:
    """Run the command in a fresh interpreter, as a user runs it, with ``XDG_CACHE_HOME=home``;
    check that it succeeds and return its stderr."""
    env = {"JAX_PLATFORMS": "cpu", "PATH": os.environ.get("PATH", ""), "XDG_CACHE_HOME": home}
    result = subprocess.run(
        [sys.executable, "-m", "numpyro_ebm.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env | environ,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def entries(folder) -> dict[str, int]:
    """The files under ``folder`` with their sizes."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_a_second_run_compiles_nothing_that_the_first_compiled(model, tmp_path):
    cache = tmp_path / "numpyro-ebm" / "jax"
    command(*SAMPLE, "--checkpoint", model, "--out", tmp_path / "a.nc", home=tmp_path)
    first = entries(cache)
    assert first, "the first run kept no compiled program"
    command(*SAMPLE, "--checkpoint", model, "--out", tmp_path / "b.nc", home=tmp_path)
    assert entries(cache) == first


@pytest.mark.parametrize(
    ("flag", "environ"),
    [(["--no-compilation-cache"], {}), ([], {"NUMPYRO_EBM_COMPILATION_CACHE": "0"})],
    ids=["flag", "environment"],
)
def test_the_opt_outs_keep_nothing(model, tmp_path, flag, environ):
    argv = [*flag, *SAMPLE, "--checkpoint", model, "--out", tmp_path / "a.nc"]
    command(*argv, home=tmp_path, **environ)
    assert not (tmp_path / "numpyro-ebm").exists()


@pytest.mark.filterwarnings("ignore:the draws run off")  # an untrained energy
def test_main_sets_the_cache_only_while_the_command_runs(model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = {name: jax.config.values[name] for name in _cli_cache._SETTINGS}
    # 3 chains: shapes that no other test compiled in this process
    argv = [*SAMPLE, "--chains", "3", "--checkpoint", str(model), "--out", str(tmp_path / "a.nc")]
    assert main(argv) == 0
    assert entries(tmp_path / "numpyro-ebm" / "jax")
    assert jax.config.jax_compilation_cache_dir is None
    assert {name: jax.config.values[name] for name in _cli_cache._SETTINGS} == before


def test_a_folder_set_for_jax_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = jax.config.values["jax_persistent_cache_min_compile_time_secs"]
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "own"))
    try:
        with _cli_cache.compilation_cache() as folder:
            assert folder == tmp_path / "own"
            assert jax.config.values["jax_persistent_cache_min_compile_time_secs"] == before
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
    assert not (tmp_path / "xdg").exists()


def test_the_folder_and_the_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _cli_cache.cache_folder() == tmp_path / "numpyro-ebm" / "jax"
    for relative_or_empty in ("relative/path", ""):
        monkeypatch.setenv("XDG_CACHE_HOME", relative_or_empty)
        assert _cli_cache.cache_folder() == _cli_cache.Path.home() / ".cache/numpyro-ebm/jax"
    assert _cli_cache.wanted(False) and not _cli_cache.wanted(True)
    for off in ("0", "false", "No", " off "):
        monkeypatch.setenv("NUMPYRO_EBM_COMPILATION_CACHE", off)
        assert not _cli_cache.wanted(False)
    monkeypatch.setenv("NUMPYRO_EBM_COMPILATION_CACHE", "1")
    assert _cli_cache.wanted(False)


def test_a_cache_folder_that_cannot_be_written_is_a_one_line_warning(tmp_path):
    (tmp_path / "numpyro-ebm").write_text("a file where the folder would be")
    path = tmp_path / "draws.nc"
    draws = np.random.default_rng(0).normal(size=(4, 100))
    _arviz.to_netcdf(_arviz.from_dict({"posterior": {"x": draws}}), path)
    stderr = command("diagnose", path, home=tmp_path)
    assert stderr.startswith("numpyro-ebm: warning: compiled programs are not kept"), stderr
    assert stderr.count("\n") == 1, stderr
