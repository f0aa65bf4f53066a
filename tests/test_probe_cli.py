"""Every command-line row of the bad-input probe (2026-11-30), answered in our words: one line
``numpyro-ebm: error: ...`` on stderr, exit status 2, no traceback, nothing computed lost."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import numpyro_ebm
from numpyro_ebm import _arviz, storage
from numpyro_ebm.cli import main

SPEC = {"network": "NoiseConditionalMLP", "event_shape": [2], "hidden": [8]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A `train` output folder holding an (untrained) noise-conditional network."""
    folder = tmp_path_factory.mktemp("model")
    network = storage.build_network(SPEC)
    storage.save_network(folder / "network", network, SPEC, {"sigmas": [1.0, 0.1]})
    return folder


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 200)
    path = tmp_path_factory.mktemp("data") / "ring.npy"
    np.save(path, np.stack([1.5 * np.cos(angle), 1.5 * np.sin(angle)], 1))
    return path


@pytest.fixture
def no_sampling(monkeypatch):
    """Sampling or comparing fails the test: the command must stop before."""

    def boom(*args, **kwargs):
        raise AssertionError("the command sampled before checking its input")

    monkeypatch.setattr(numpyro_ebm, "sample", boom)
    monkeypatch.setattr(numpyro_ebm, "compare", boom)


def one_line_error(capsys, *argv, status=2) -> str:
    """Run the command in this process; check the one-line error and return it."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argument errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == status, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("numpyro-ebm"), err
    return err


@pytest.fixture
def afile(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "--out", "{afile}/x.nc"], "--out '.*afile/x.nc' lies under '.*afile'"),
        (["sample", "--out", "{tmp}"], "--out '.*' is a folder; give a file name"),
        (["compare", "--out", "{afile}/c"], "--out '.*afile/c' lies under '.*afile'"),
        (["compare", "--out", "{afile}"], "--out '.*afile' is a file, not a folder"),
    ],
    ids=["sample-under-a-file", "sample-onto-a-folder", "compare-under-a-file", "compare-file"],
)
def test_sample_and_compare_check_their_output_before_sampling(
    capsys, model, afile, tmp_path, no_sampling, argv, message
):
    argv = [a.format(afile=afile, tmp=tmp_path) for a in argv]
    err = one_line_error(capsys, "--no-progress", *argv, "--checkpoint", model)
    assert re.search(message, err), err
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["train", "demo"])
def test_train_and_demo_check_their_output_folder_first(capsys, ring, afile, command):
    data = ["--data", ring] if command == "train" else []
    err = one_line_error(capsys, command, *data, "--out", afile / "o")
    assert "lies under" in err and "afile" in err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"1,2\n3,4\n", "is not a NumPy .npy file"),
        (np.array([1 + 2j, 3j]), r"holds complex numbers \(dtype complex128\); give real data"),
        (np.array([[1.0, 2.0], [1e300, 0.0]]), "1 row\\(s\\) hold values beyond float32's range"),
        (np.array([object(), 1], dtype=object), "Python objects, which numpyro-ebm never"),
        (np.array([True, False]), r"does not hold numbers \(dtype bool\)"),
        (np.zeros((3, 0)), r"expected a table of shape \(n, d\) with n >= 2 and d >= 1"),
    ],
    ids=["empty", "text", "complex", "float32-overflow", "objects", "bool", "no-columns"],
)
def test_bad_npy_files_are_refused_in_our_words(capsys, tmp_path, content, message):
    path = tmp_path / "data.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)
    err = one_line_error(capsys, "train", "--data", path, "--out", tmp_path / "o")
    assert re.search(message, err), err
    assert "allow_pickle" not in err and not (tmp_path / "o").exists()


def test_a_diverging_learning_rate_ends_in_one_line(capsys, ring, tmp_path):
    err = one_line_error(
        capsys, "--no-progress", "train", "--data", ring, "--out", tmp_path / "o",
        "--objective", "dsm", "--steps", "200", "--hidden", "8", "--checkpoint-every", "100",
        "--lr", "1e12",
    )  # fmt: skip
    assert "non-finite loss or gradient" in err and "a smaller --lr may help" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", str(2**70), "diagnose", "x.nc"], "--seed: must be an integer from 0 to"),
        (["--seed", str(2**32), "diagnose", "x.nc"], "--seed: must be an integer from 0 to"),
        (["--seed", "-1", "diagnose", "x.nc"], "--seed: must be an integer from 0 to"),
        (["train", "--data", "d.npy", "--out", "o", "--lr", "nan"], "--lr: must be a positive"),
        (["train", "--data", "d.npy", "--out", "o", "--lr", "-1"], "--lr: must be a positive"),
        (["sample", "--checkpoint", "m", "--warmup", "-5"], "--warmup: must be an integer >= 0"),
        (["sample", "--checkpoint", "m", "--chains", "x"], "--chains: must be an integer >= 1"),
    ],
)
def test_bad_numbers_are_refused_by_the_parser_in_one_line(capsys, argv, message):
    assert message in one_line_error(capsys, *argv)


def test_diagnose_on_a_netcdf_without_a_posterior(capsys, tmp_path):
    path = tmp_path / "stats.nc"
    _arviz.to_netcdf(_arviz.from_dict({"sample_stats": {"lp": np.zeros((2, 10))}}), path)
    err = one_line_error(capsys, "diagnose", path)
    assert "holds no posterior group (groups: ['sample_stats'])" in err


@pytest.mark.parametrize("command", ["train", "demo"])
def test_a_used_folder_names_the_flag_that_continues_it(capsys, ring, tmp_path, command):
    (tmp_path / "checkpoints" / "500").mkdir(parents=True)
    data = ["--data", ring] if command == "train" else []
    err = one_line_error(capsys, command, *data, "--out", tmp_path)
    assert "already holds the checkpoints of a training run" in err
    assert ("add --resume" in err) == (command == "train") and "resume=True" not in err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"activation": "display"}, "activation must be one of"),
        ({"activation": "getattr"}, "activation must be one of"),
        ({"hidden": [16]}, "do not fit the network described"),
        ({"output": "score"}, "do not fit the network described"),
        ({"format": 2}, "has format 2; this numpyro-ebm reads format 1"),
    ],
)
def test_a_tampered_saved_model_is_refused_before_sampling(
    capsys, model, tmp_path, no_sampling, change, message
):
    (tmp_path / "network").mkdir()
    (tmp_path / "network" / "state").symlink_to(model / "network" / "state")
    record = json.loads((model / "network" / "network.json").read_text())
    record.update({k: v for k, v in change.items() if k == "format"})
    record["spec"].update({k: v for k, v in change.items() if k != "format"})
    (tmp_path / "network" / "network.json").write_text(json.dumps(record))
    err = one_line_error(capsys, "sample", "--checkpoint", tmp_path, "--out", tmp_path / "x.nc")
    assert message in err


def command(*argv, cache, **popen):
    """The command in a fresh interpreter, as a user runs it, with an empty cache folder (ArviZ
    0.23 warns on its first import of the day, as recorded there)."""
    env = {"JAX_PLATFORMS": "cpu", "PATH": os.environ.get("PATH", ""), "XDG_CACHE_HOME": cache}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    # a child of a background job inherits an ignored SIGINT; a user's terminal delivers it
    popen.setdefault("preexec_fn", lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.Popen(
        [sys.executable, "-m", "numpyro_ebm.cli", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def interrupt_after_checkpoint(process, checkpoint) -> str:
    """Send Ctrl-C once ``checkpoint`` exists; return stderr after checking exit status 130."""
    deadline = time.monotonic() + 300
    while not checkpoint.is_dir() and process.poll() is None:
        assert time.monotonic() < deadline, f"no {checkpoint} within 300 s"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert checkpoint.is_dir()
    return stderr


def test_ctrl_c_ends_training_in_one_line_and_keeps_its_checkpoints(tmp_path, ring):
    out = tmp_path / "train"
    process = command(
        "--no-progress", "train", "--data", ring, "--out", out, "--objective", "dsm",
        "--hidden", "8", "--steps", "10000000", "--checkpoint-every", "100", cache=tmp_path,
    )  # fmt: skip
    stderr = interrupt_after_checkpoint(process, out / "checkpoints" / "100")
    assert stderr == (
        f"numpyro-ebm: interrupted; the checkpoints written so far are kept in {out}/checkpoints"
        " (continue with train --resume)\n"
    )


@pytest.mark.slow
def test_ctrl_c_ends_the_demo_in_one_line_and_keeps_its_checkpoints(tmp_path):
    out = tmp_path / "demo"
    process = command("--no-progress", "demo", "--out", out, "--steps", "100000", cache=tmp_path)
    stderr = interrupt_after_checkpoint(process, out / "checkpoints" / "500")
    assert stderr == (
        f"numpyro-ebm: interrupted; the checkpoints written so far are kept in {out}/checkpoints\n"
    )


def test_a_normal_run_prints_no_third_party_warning(tmp_path):
    path = tmp_path / "draws.nc"
    draws = np.random.default_rng(0).normal(size=(4, 100))
    _arviz.to_netcdf(_arviz.from_dict({"posterior": {"x": draws}}), path)
    process = command("diagnose", path, cache=tmp_path)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0 and "4 chains x 100 draws" in stdout, stderr
    assert stderr == ""
