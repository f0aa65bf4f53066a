"""The command-line rows of the 2026-12-06 probe: RBM checkpoints and exact resume, --sampler and
--step-size honoured or refused, sizes that cannot fit in memory, damaged saved models, and
warnings, each answered in one line that names the flag or the file."""

import json
import os
import subprocess
import sys
from argparse import Namespace

import jax
import numpy as np
import pytest

import numpyro_ebm
from numpyro_ebm import _arviz, _cli_commands, _cli_inputs, _cli_interrupt, storage
from numpyro_ebm.cli import main
from numpyro_ebm.models import rbm
from numpyro_ebm.training import rbm as rbm_training

# Only against a hang (a loaded machine may take minutes where an idle one takes seconds).
HANG_GUARD_S = 1800
TRAIN_RBM = ["--no-progress", "train", "--model", "rbm", "--objective", "pcd", "--hidden", "4",
             "--batch-size", "20", "--lr", "0.05", "--checkpoint-every", "100"]  # fmt: skip


def one_line_error(capsys, *argv) -> str:
    """Run the command in this process; check the one-line error (exit status 2)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("numpyro-ebm: error: "), err
    return err


@pytest.fixture(scope="module")
def bits(tmp_path_factory):
    """300 rows of 6 independent bits, as a boolean .npy (the natural binary format)."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("bits") / "bits.npy"
    np.save(path, rng.uniform(size=(300, 6)) < np.linspace(0.2, 0.8, 6))
    return path


@pytest.fixture(scope="module")
def saved_rbm(tmp_path_factory, bits):
    """A folder written by `train --model rbm` (200 steps, checkpoints at 100 and 200)."""
    out = tmp_path_factory.mktemp("rbm") / "model"
    assert main([*TRAIN_RBM, "--data", str(bits), "--out", str(out), "--steps", "200"]) == 0
    return out


@pytest.fixture
def no_work(monkeypatch):
    """Sampling or training fails the test: the command must refuse before."""

    def boom(*args, **kwargs):
        raise AssertionError("the command started work before checking its input")

    work = [(numpyro_ebm, "sample"), (numpyro_ebm, "compare"), (rbm_training, "train_rbm")]
    for module, name in work:
        monkeypatch.setattr(module, name, boom)


# --------------------------------------------------------------------------------------------
# train --model rbm: checkpoints, --resume, boolean data


def test_an_rbm_run_is_checkpointed_and_resume_continues_it_bit_for_bit(saved_rbm, bits, tmp_path):
    assert sorted(p.name for p in (saved_rbm / "checkpoints").iterdir()) == ["100", "200"]
    out = tmp_path / "resumed"
    common = [*TRAIN_RBM, "--data", str(bits), "--out", str(out)]
    assert main([*common, "--steps", "100"]) == 0
    assert main([*common, "--steps", "200", "--resume"]) == 0
    straight, resumed = storage.load_rbm(saved_rbm)[1], storage.load_rbm(out)[1]
    for a, b in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_used_rbm_folder_names_the_flag_that_continues_it(capsys, saved_rbm, bits, no_work):
    err = one_line_error(capsys, *TRAIN_RBM, "--data", bits, "--out", saved_rbm)
    assert "already holds the checkpoints of a training run" in err and "add --resume" in err


def test_interrupted_says_whether_checkpoints_were_kept(tmp_path):
    args = Namespace(command="train", out=str(tmp_path))
    nothing = "interrupted before the first checkpoint: nothing was kept"
    assert _cli_interrupt.interrupted(args) == nothing
    (tmp_path / "checkpoints" / "100").mkdir(parents=True)
    assert _cli_interrupt.interrupted(args) == (
        f"interrupted; the checkpoints written so far are kept in {tmp_path}/checkpoints "
        "(continue with train --resume)"
    )


# --------------------------------------------------------------------------------------------
# sample of an RBM: --sampler honoured where it applies, refused where not


def test_sample_of_an_rbm_uses_the_sampler_asked_for(capsys, saved_rbm, tmp_path):
    out = tmp_path / "draws.nc"
    argv = ["--no-progress", "sample", "--checkpoint", str(saved_rbm), "--out", str(out),
            "--chains", "2", "--samples", "20", "--warmup", "5"]  # fmt: skip
    assert main([*argv, "--sampler", "gibbs"]) == 0
    posterior = _arviz.group(_arviz.from_netcdf(out), "posterior")
    assert posterior.attrs["sampler"] == "gibbs" and set(np.unique(posterior["x"])) <= {0, 1}
    out.unlink()
    assert main(argv) == 0  # block Gibbs by default
    assert _arviz.group(_arviz.from_netcdf(out), "posterior").attrs["sampler"] == "block_gibbs"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--sampler", "nuts"], "sampler 'nuts' samples energy or model targets, not a discrete"),
        (["--sampler", "nuts", "--step-size", "0.5"], "not a discrete target"),
        (["--step-size", "0.5"], "--step-size does not apply to the sampler 'block_gibbs'"),
    ],
    ids=["nuts", "nuts-step-size", "block-gibbs-step-size"],
)
def test_sample_of_an_rbm_refuses_what_does_not_apply(
    capsys, saved_rbm, tmp_path, options, message
):
    err = one_line_error(
        capsys, "sample", "--checkpoint", saved_rbm, "--out", tmp_path / "x.nc", *options
    )
    assert message in err and not (tmp_path / "x.nc").exists()


def test_a_gaussian_rbm_is_sampled_in_real_values(capsys, tmp_path):
    model = rbm.GaussianBernoulliRBM(3, 2)
    storage.save_rbm(tmp_path / "g", model, model.init(jax.random.key(0), 0.1))
    out = tmp_path / "g.nc"
    argv = ["--no-progress", "sample", "--checkpoint", tmp_path / "g", "--out", out,
            "--chains", "2", "--samples", "20", "--warmup", "20"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    posterior = _arviz.group(_arviz.from_netcdf(out), "posterior")
    assert posterior.attrs["sampler"] == "mala" and len(np.unique(posterior["x"])) > 2


# --------------------------------------------------------------------------------------------
# --step-size on a network: passed as the sampler's step size, or refused


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A `train` output folder holding an (untrained) noise-conditional network."""
    folder = tmp_path_factory.mktemp("model")
    spec = {"network": "NoiseConditionalMLP", "event_shape": [2], "hidden": [8]}
    storage.save_network(folder / "network", storage.build_network(spec), spec, {"sigmas": [1.0]})
    return folder


@pytest.mark.parametrize(
    "sampler, option",
    [("mala", "step_size"), ("nuts", "initial_step_size"), ("annealed_langevin", "step_size")],
)
def test_step_size_reaches_the_sampler(monkeypatch, network, tmp_path, sampler, option):
    seen = {}

    def record(energy, name, **kwargs):
        seen.update(kwargs, sampler=name)
        raise KeyboardInterrupt  # stop there

    monkeypatch.setattr(numpyro_ebm, "sample", record)
    argv = ["sample", "--checkpoint", network, "--out", tmp_path / "x.nc", "--sampler", sampler,
            "--step-size", "0.3"]  # fmt: skip
    assert main([str(a) for a in argv]) == 130
    assert seen["sampler"] == sampler and seen[option] == 0.3


@pytest.mark.parametrize("command", ["sample", "compare"])
def test_step_size_for_a_sampler_without_one_is_refused(
    capsys, network, tmp_path, command, no_work
):
    flag = "--sampler" if command == "sample" else "--samplers"
    err = one_line_error(
        capsys, command, "--checkpoint", network, "--out", tmp_path / "x.nc", flag,
        "tempered_smc", "--step-size", "0.3",
    )  # fmt: skip
    assert "--step-size does not apply to the sampler 'tempered_smc'" in err
    assert "step_scale" in err  # its options are listed


# --------------------------------------------------------------------------------------------
# sizes that cannot fit in memory: refused before anything is read or built


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hidden", "100000000", "--batch-size", "256"],
         "--hidden 100000000 with --batch-size 256 (weights, gradients and a minibatch's "
         "activations) needs at least 96.1 GiB to train, more than the 8.0 GiB available"),
        (["--model", "rbm", "--objective", "pcd", "--hidden", "100000000", "--batch-size", "256"],
         "--hidden 100000000 with --batch-size 256"),
        (["--model", "rbm", "--objective", "pcd", "--hidden", "200000000", "--batch-size", "1"],
         "an RBM with --hidden 200000000 on 6 visible units in batches of 1 needs at least 15.6 "
         "GiB"),
    ],
    ids=["mlp", "rbm", "rbm-per-example-gradients"],
)  # fmt: skip
def test_sizes_beyond_memory_are_refused_before_training(
    capsys, monkeypatch, bits, tmp_path, no_work, argv, message
):
    monkeypatch.setattr(_cli_inputs, "available_memory", lambda: 8 * 2**30)
    monkeypatch.setattr(storage, "build_network", lambda *a, **k: pytest.fail("built"))
    out = tmp_path / "o"
    err = one_line_error(capsys, "train", "--data", bits, "--out", out, *argv)
    assert message in err and not out.exists()


def test_an_out_of_memory_error_of_xla_ends_in_one_line(capsys, monkeypatch, tmp_path):
    def exhausted(args):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 617600025736 bytes.\n...")

    monkeypatch.setattr(_cli_commands, "diagnose_command", exhausted)
    err = one_line_error(capsys, "diagnose", tmp_path / "x.nc")
    assert err == (
        "numpyro-ebm: error: RESOURCE_EXHAUSTED: Out of memory allocating 617600025736 bytes; "
        "use smaller sizes (--hidden, --batch-size, --chains)\n"
    )


# --------------------------------------------------------------------------------------------
# damaged saved models: one line naming the file


def _write(folder, name, content):
    if isinstance(content, dict) and name.endswith(".npz"):
        np.savez(folder / name, **content)
    else:
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))


GOOD_ARRAYS = {"W": np.zeros((6, 4)), "b": np.zeros(6), "c": np.zeros(4)}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("rbm.json", [1, 2], "rbm.json must hold a JSON object (the RBM's format, kind and "
                             "sizes), got an array"),
        ("rbm.json", "{'kind': 1}", "rbm.json is not JSON (Expecting property name"),
        ("rbm.json", {"format": "numpyro-ebm/rbm", "kind": "BernoulliRBM"},
         "rbm.json gives no n_visible and no n_hidden"),
        ("rbm.json", {"format": "numpyro-ebm/rbm", "kind": "BernoulliRBM", "n_visible": "6",
                      "n_hidden": 4}, "rbm.json: n_visible must be an integer"),
        ("params.npz", {"W": np.zeros((6, 4)), "b": np.zeros(6)},
         "params.npz holds no array c (it holds ['W', 'b'])"),
        ("params.npz", {**GOOD_ARRAYS, "W": np.full((6, 4), np.nan)},
         "array W in {folder}/params.npz holds 24 non-finite value(s)"),
        ("params.npz", {**GOOD_ARRAYS, "b": np.zeros(6, complex)},
         "array b in {folder}/params.npz has dtype complex128: parameters are real numbers"),
        ("params.npz", {**GOOD_ARRAYS, "c": np.array(["a"] * 4)}, "array c in {folder}/params"),
        ("params.npz", "not an archive", "params.npz is not a NumPy .npz archive of numbers"),
        ("params.npz", None, "holds rbm.json but no params.npz"),
    ],
    ids=["list", "not-json", "no-sizes", "text-size", "no-c", "nan", "complex", "strings",
         "not-npz", "no-params"],
)  # fmt: skip
def test_a_damaged_saved_rbm_is_refused_naming_the_file(
    capsys, saved_rbm, tmp_path, no_work, name, content, message
):
    folder = tmp_path / "damaged"
    folder.mkdir()
    for original in ("rbm.json", "params.npz"):
        (folder / original).write_bytes((saved_rbm / original).read_bytes())
    if content is None:
        (folder / name).unlink()
    else:
        _write(folder, name, content)
    err = one_line_error(capsys, "sample", "--checkpoint", folder, "--out", tmp_path / "x.nc")
    assert message.format(folder=folder) in err and str(folder) in err


def test_compare_names_a_saved_rbm_for_what_it_is(capsys, saved_rbm, tmp_path, no_work):
    err = one_line_error(capsys, "compare", "--checkpoint", saved_rbm, "--out", tmp_path / "c")
    assert f"{saved_rbm} holds a saved RBM (rbm.json), not a network" in err
    assert f"sample the RBM with `sample --checkpoint {saved_rbm}`" in err


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"sigmas": [-1, "a"]}, "metadata.sigmas (the noise ladder) must be a list of positive"),
        ({"sigmas": []}, "metadata.sigmas (the noise ladder) must be a list of positive"),
        ({}, "describes a noise-conditional network but gives no noise ladder"),
    ],
    ids=["negative-and-text", "empty", "missing"],
)
@pytest.mark.parametrize("command", ["sample", "compare"])
def test_a_bad_noise_ladder_is_refused_naming_network_json(
    capsys, network, tmp_path, no_work, metadata, message, command
):
    folder = tmp_path / "edited"
    (folder / "network").mkdir(parents=True)
    (folder / "network" / "state").symlink_to(network / "network" / "state")
    record = json.loads((network / "network" / "network.json").read_text())
    (folder / "network" / "network.json").write_text(json.dumps({**record, "metadata": metadata}))
    err = one_line_error(capsys, command, "--checkpoint", folder, "--out", tmp_path / "x")
    assert f"{folder}/network/network.json" in err and message in err


# --------------------------------------------------------------------------------------------
# warnings in one line


def test_warnings_are_printed_in_one_line(saved_rbm, bits, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for path in saved_rbm.rglob("*"):
        target = out / path.relative_to(saved_rbm)
        target.mkdir(exist_ok=True) if path.is_dir() else target.write_bytes(path.read_bytes())
    (out / "checkpoints" / "200" / "sha256.json").write_text("{}")  # damaged: moved aside
    result = subprocess.run(
        [sys.executable, "-m", "numpyro_ebm.cli", *TRAIN_RBM, "--data", str(bits), "--out",
         str(out), "--steps", "200", "--resume"],
        capture_output=True, text=True,
        env={"JAX_PLATFORMS": "cpu", "PATH": "", "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]},
        timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("numpyro-ebm: warning: checkpoint step 200 in ")
    assert result.stderr.count("\n") == 1 and "is damaged" in result.stderr, result.stderr
