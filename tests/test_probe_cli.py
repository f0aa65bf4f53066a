"""Every command-line row of the bad-input probe (2026-11-30), answered in our words: one line
``numpyro-ebm: error: ...`` on stderr, exit status 2, no traceback, nothing computed lost."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, NamedTuple

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


@pytest.fixture(scope="module")
def bits(tmp_path_factory):
    """A small .npy file of 300 rows of 6 independent bits."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("bits") / "bits.npy"
    np.save(path, (rng.uniform(size=(300, 6)) < np.linspace(0.2, 0.8, 6)).astype(np.float32))
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
        (np.array([True, False]), r"holds booleans \(dtype bool\), not numbers; for binary data"),
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
    assert "non-finite loss, gradient or update" in err and "a smaller --lr may help" in err


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
        # one noise level was taken, then refused naming an internal argument, num
        (["train", "--data", "d.npy", "--out", "o", "--num-sigmas", "1"], "--num-sigmas: must"),
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


# Only against a hang: a loaded machine may take minutes where an idle one takes seconds, so
# the tests wait for events (a checkpoint folder, the child's exit), never for a duration.
HANG_GUARD_S = 1800


class Child(NamedTuple):
    """A running command and the files its output goes to."""

    process: subprocess.Popen
    stdout: IO[str]
    stderr: IO[str]

    def output(self) -> tuple[str, str]:
        return _read_back(self.stdout), _read_back(self.stderr)

    def finish(self) -> tuple[int, str, str]:
        """Wait for its exit: ``(status, stdout, stderr)``."""
        return (self.process.wait(timeout=HANG_GUARD_S), *self.output())


def _read_back(handle: IO[str]) -> str:
    handle.flush()
    handle.seek(0)
    return handle.read()


@contextlib.contextmanager
def running(*argv, cache):
    """The command in a fresh interpreter, as a user runs it, with an empty cache folder (ArviZ
    0.23 warns on its first import of the day, as recorded there). Its output goes to files
    (a pipe that nobody reads could fill up and stall it); whatever happens, the child is
    killed if still running and reaped on the way out."""
    env = {"JAX_PLATFORMS": "cpu", "PATH": os.environ.get("PATH", ""), "XDG_CACHE_HOME": cache}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "numpyro_ebm.cli", *map(str, argv)],
            stdout=out,
            stderr=err,
            text=True,
            env=env,
            # a child of a background job inherits an ignored SIGINT; a user's terminal
            # delivers it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            yield Child(process, out, err)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def _whole_steps(folder) -> list[int]:
    """The whole checkpoint steps in ``folder`` (Orbax renames a step's folder into place, a
    number, once it is whole)."""
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def interrupt_after_checkpoint(child: Child, checkpoint) -> str:
    """Send Ctrl-C once a whole step of at least ``checkpoint``'s exists in its folder (not
    that step alone: on a fast machine the run can write and then drop it, with only the
    newest kept, between two looks); return stderr after checking exit status 130, and that
    only whole steps from that one on are kept and nothing half-written."""
    first = int(checkpoint.name)
    waited = 0.0
    while not [step for step in _whole_steps(checkpoint.parent) if step >= first]:
        assert child.process.poll() is None, f"the command ended first: {child.output()}"
        assert waited < HANG_GUARD_S, f"no {checkpoint} after {HANG_GUARD_S} s: a hang?"
        time.sleep(0.2)
        waited += 0.2
    child.process.send_signal(signal.SIGINT)
    status, _, stderr = child.finish()
    assert status == 130, stderr
    kept = [p.name for p in checkpoint.parent.iterdir()]
    assert kept and all(name.isdigit() and int(name) >= first for name in kept)
    return stderr


def test_ctrl_c_ends_training_in_one_line_and_keeps_its_checkpoints(tmp_path, ring):
    out = tmp_path / "train"
    with running(
        "--no-progress", "train", "--data", ring, "--out", out, "--objective", "dsm",
        "--hidden", "8", "--steps", "10000000", "--checkpoint-every", "100", cache=tmp_path,
    ) as child:  # fmt: skip
        stderr = interrupt_after_checkpoint(child, out / "checkpoints" / "100")
    assert stderr == (
        f"numpyro-ebm: interrupted; the checkpoints written so far are kept in {out}/checkpoints"
        " (continue with train --resume)\n"
    )


def test_ctrl_c_keeps_an_rbm_runs_checkpoints_and_resume_continues_it(tmp_path, bits):
    out = tmp_path / "rbm"
    train = ["--no-progress", "train", "--model", "rbm", "--data", bits, "--out", out,
             "--objective", "pcd", "--hidden", "4", "--batch-size", "20",
             "--checkpoint-every", "100"]  # fmt: skip
    with running(*train, "--steps", "100000000", cache=tmp_path) as child:
        stderr = interrupt_after_checkpoint(child, out / "checkpoints" / "100")
    assert stderr == (
        f"numpyro-ebm: interrupted; the checkpoints written so far are kept in {out}/checkpoints"
        " (continue with train --resume)\n"
    )
    steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir())
    assert all(step % 100 == 0 for step in steps)
    with running(*train, "--resume", "--steps", steps[-1] + 100, cache=tmp_path) as child:
        status, stdout, stderr = child.finish()
    assert status == 0 and stderr == "", stderr
    assert "trained a Bernoulli RBM (6 visible, 4 hidden)" in stdout
    assert (out / "rbm.json").is_file() and (out / "checkpoints" / str(steps[-1] + 100)).is_dir()


def test_ctrl_c_during_sampling_without_a_progress_bar_is_answered_within_a_chunk(tmp_path, model):
    """Probe row: without a progress bar one compiled chunk held the whole run, so Ctrl-C waited
    for its end. The run here is some 2,000,000 annealed-Langevin draws per chain (over ten
    minutes on a 2-core machine); the signal, sent whenever it lands (while compiling or
    sampling), is answered between two chunks of at most 1000 draws."""
    out = tmp_path / "draws.nc"
    with running(
        "--no-progress", "sample", "--checkpoint", model, "--out", out, "--chains", "4",
        "--samples", "2000000", cache=tmp_path,
    ) as child:  # fmt: skip
        time.sleep(10.0)
        assert child.process.poll() is None, child.output()
        child.process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        status, _, stderr = child.finish()
        answered = time.monotonic() - sent
    assert status == 130 and stderr.startswith("numpyro-ebm: interrupted"), stderr
    assert answered < 120.0, f"Ctrl-C answered after {answered:.0f} s"
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_ends_the_demo_in_one_line_and_keeps_its_checkpoints(tmp_path):
    out = tmp_path / "demo"
    with running("--no-progress", "demo", "--out", out, "--steps", "100000", cache=tmp_path) as c:
        stderr = interrupt_after_checkpoint(c, out / "checkpoints" / "500")
    assert stderr == (
        f"numpyro-ebm: interrupted; the checkpoints written so far are kept in {out}/checkpoints\n"
    )


def test_a_normal_run_prints_no_third_party_warning(tmp_path):
    path = tmp_path / "draws.nc"
    draws = np.random.default_rng(0).normal(size=(4, 100))
    _arviz.to_netcdf(_arviz.from_dict({"posterior": {"x": draws}}), path)
    with running("diagnose", path, cache=tmp_path) as child:
        status, stdout, stderr = child.finish()
    assert status == 0 and "4 chains x 100 draws" in stdout, stderr
    assert stderr == ""
