"""The numpyro-ebm command: train -> sample -> diagnose on a small file, and one-line errors."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from numpyro_ebm import _arviz
from numpyro_ebm.cli import main, read_data


def run(*args, cwd=None):
    """The command in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "numpyro_ebm.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"JAX_PLATFORMS": "cpu", "PATH": "", "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]},
    )


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    """A small .npy file: 500 points on a noisy ring of radius 1.5."""
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 500)
    radius = 1.5 + 0.1 * rng.normal(size=500)
    path = tmp_path_factory.mktemp("data") / "ring.npy"
    np.save(path, np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1))
    return path


def test_train_then_sample_then_diagnose(ring, tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert (
        main(
            [
                "--no-progress",
                "train",
                "--data",
                str(ring),
                "--objective",
                "ncsn",
                "--out",
                str(model_dir),
                "--steps",
                "400",
                "--hidden",
                "32",
                "32",
                "--checkpoint-every",
                "200",
                "--likelihood-steps",
                "100",
                "--likelihood-chains",
                "64",
            ]
        )
        == 0
    )
    assert (model_dir / "network" / "network.json").exists()
    assert (model_dir / "training_loss.png").stat().st_size > 5000
    checkpoints = model_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["200", "400", "likelihood"]
    assert sorted(p.name for p in (checkpoints / "likelihood").iterdir()) == ["100"]
    held_out = json.loads((model_dir / "training.json").read_text())["held_out"]
    assert held_out["num_points"] == 50 and np.isfinite(held_out["mean"])

    out = tmp_path / "draws.nc"
    assert (
        main(
            [
                "--no-progress",
                "sample",
                "--checkpoint",
                str(model_dir),
                "--sampler",
                "annealed_langevin",
                "--chains",
                "200",
                "--samples",
                "4",
                "--warmup",
                "0",
                "--steps-per-level",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    draws = np.asarray(_arviz.group(_arviz.from_netcdf(out), "posterior")["x"])
    assert draws.shape == (200, 4, 2) and np.all(np.isfinite(draws))
    # the trained energy moves the samples' median radius to the ring's (1.5), away from that
    # of the initial N(0, I) (1.18); their spread stays wider than the ring's after this short
    # run. Measured over --seed 0 to 7 (2026-12-06, CPU): medians 1.37 to 1.50 (mean 1.44, sd
    # 0.05), so a seed or platform would have to move it 4 sd to fail
    radius = np.linalg.norm(draws[:, -1], axis=-1)
    assert abs(np.median(radius) - 1.5) < 0.25, np.median(radius)

    capsys.readouterr()
    assert main(["diagnose", str(out)]) == 0
    text = capsys.readouterr().out
    assert "200 chains x 4 draws" in text and "x[1]" in text


def test_checkpoints_fall_every_checkpoint_every_steps(ring, tmp_path):
    # 150 is no multiple of the 100-step chunks: checkpoints fell at 100, 200, 300
    out = tmp_path / "model"
    argv = ["--no-progress", "train", "--data", str(ring), "--objective", "dsm", "--out", str(out),
            "--steps", "300", "--hidden", "4", "--likelihood-steps", "0", "--held-out", "0",
            "--checkpoint-every", "150"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir()) == [150, 300]


def test_diagnose_strict_fails_on_warnings(tmp_path):
    data = _arviz.from_dict(
        {
            "posterior": {
                "x": np.stack([np.zeros(50), np.ones(50)])
                + np.random.default_rng(0).normal(size=(2, 50))
            }
        }
    )
    _arviz.to_netcdf(data, tmp_path / "stuck.nc")
    assert main(["diagnose", str(tmp_path / "stuck.nc")]) == 0
    assert main(["diagnose", "--strict", str(tmp_path / "stuck.nc")]) == 1


@pytest.mark.parametrize(
    "variable, message",
    [
        (("a", np.zeros(3)), r"variable 'x' must have dimensions \(chain, draw, ...\)"),
        ((("chain", "draw"), np.full((2, 4), "s")), "variable 'x' must hold numbers"),
    ],
)
def test_diagnose_refuses_posteriors_it_cannot_read_in_one_line(tmp_path, variable, message):
    # a variable without (chain, draw) dimensions ended in a KeyError traceback, status 1
    import xarray

    xarray.Dataset({"x": variable}).to_netcdf(tmp_path / "odd.nc", group="posterior")
    result = run("diagnose", str(tmp_path / "odd.nc"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        (None, ".npy", "data file not found"),
        (b"not an array", ".npy", "is not a NumPy .npy file"),
        (b"1,2\n3,4\n", ".txt", "unsupported data format '.txt'"),
        (b"a,b\n1,2\nnan,4\n5,6\n", ".csv", "1 row(s) hold NaN or inf (first: row 1)"),
        (b"1,2\n3,x\n", ".csv", "cannot read"),
    ],
)
def test_bad_data_files_give_a_one_line_error(tmp_path, content, suffix, message):
    path = tmp_path / f"data{suffix}"
    if content is not None:
        path.write_bytes(content)
    result = run("train", "--data", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("numpyro-ebm: error:") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_dimension_and_missing_checkpoint_are_one_line_errors(tmp_path, ring):
    np.save(tmp_path / "cube.npy", np.zeros((4, 2, 2)))
    result = run("train", "--data", str(tmp_path / "cube.npy"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "expected a table of shape (n, d)" in result.stderr
    result = run("sample", "--checkpoint", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no such directory" in result.stderr
    result = run("diagnose", str(tmp_path / "missing.nc"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_csv_with_a_header_and_npz_are_read(tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    np.testing.assert_array_equal(read_data(tmp_path / "d.csv"), [[1, 2], [3, 4], [5, 6]])
    np.savez(tmp_path / "d.npz", data=np.ones((3, 2)), labels=np.zeros(3))
    assert read_data(tmp_path / "d.npz").shape == (3, 2)


def test_every_command_has_help():
    for command in ("demo", "train", "sample", "compare", "diagnose"):
        result = run(command, "--help")
        assert result.returncode == 0 and "usage: numpyro-ebm " + command in result.stdout


def test_the_choices_listed_by_help_are_the_librarys():
    from numpyro_ebm import _cli_parser, datasets, demo, workflow

    assert _cli_parser.OBJECTIVES == workflow.OBJECTIVES
    assert _cli_parser.DEMO_SAMPLERS == demo.DEMO_SAMPLERS
    assert set(_cli_parser.TOY_DATASETS) == set(datasets.TOY_DATASETS)


def test_the_options_left_out_are_train_settings_own_defaults():
    from numpyro_ebm._cli_parser import TrainDefault, build_parser, resolve_defaults
    from numpyro_ebm.workflow import TrainSettings

    args = build_parser().parse_args(["train", "--data", "d.npy", "--out", "o"])
    given = {name: value for name, value in vars(args).items() if isinstance(value, TrainDefault)}
    # every field the command sets (cd_steps, step_size, ... have no option)
    assert {value.field for value in given.values()} == {
        "objective", "num_steps", "batch_size", "learning_rate", "hidden", "num_sigmas",
        "sigma_max", "sigma_min", "sigma", "checkpoint_every", "likelihood_steps",
        "likelihood_chains", "max_temperature", "held_out",
    }  # fmt: skip
    resolve_defaults(args)
    for name, default in given.items():
        assert getattr(args, name) == TrainSettings._field_defaults[default.field], name
    assert build_parser().parse_args(["demo"]).steps.field == "num_steps"
    # and --help shows them, read from TrainSettings
    result = run("train", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    defaults = TrainSettings()
    assert (
        "--likelihood-chains LIKELIHOOD_CHAINS persistent replica-exchange chains of the "
        f"likelihood stage (default: {defaults.likelihood_chains})"
    ) in text
    assert f"(default: {' '.join(map(str, defaults.hidden))})" in text


def test_help_and_argument_errors_import_neither_jax_nor_numpy():
    # cli.py loaded on its own, as it is once numpyro_ebm/__init__.py imports lazily; the help
    # of train and demo is left out: it shows TrainSettings' defaults, which imports workflow
    # and JAX (1.4 s on a 2-core CPU)
    path = main.__code__.co_filename
    script = (
        "import importlib.util, sys, time\n"
        "start = time.perf_counter()\n"
        f"spec = importlib.util.spec_from_file_location('cli', {path!r})\n"
        "cli = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(cli)\n"
        "for argv in (['--help'], ['sample', '--help'], ['compare', '--help'],\n"
        "             ['--seed', '-1', 'diagnose', 'x'], ['train', '--steps', '0']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted({'jax', 'numpy', 'arviz', 'flax'} & set(sys.modules))\n"
        "print('HEAVY', heavy, 'SECONDS', time.perf_counter() - start, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY [] SECONDS" in result.stderr, result.stderr


def test_train_and_sample_an_rbm_on_binary_data(ring, tmp_path, capsys):
    rng = np.random.default_rng(1)
    bits = (rng.uniform(size=(300, 6)) < np.linspace(0.2, 0.8, 6)).astype(np.float32)
    path = tmp_path / "bits.npy"
    np.save(path, bits)
    model_dir = tmp_path / "rbm"
    common = ["--no-progress", "train", "--model", "rbm", "--data", str(path)]
    status = main([*common, "--objective", "pcd", "--hidden", "4", "--steps", "300",
                   "--batch-size", "20", "--lr", "0.05", "--out", str(model_dir)])
    assert status == 0
    line = capsys.readouterr().out
    assert "Bernoulli RBM (6 visible, 4 hidden) with pcd-1" in line and "(exact)" in line
    # the independent-bits model's log-likelihood: what an RBM should reach on these data
    # (measured over --seed 0 to 11: 0.0002 to 0.005 nats below it, far inside the 0.3 allowed)
    p = bits.mean(0)
    best = float(np.mean(np.sum(bits * np.log(p) + (1 - bits) * np.log(1 - p), axis=1)))
    value = float(line.split("log-likelihood ")[1].split(" ")[0])
    assert best - 0.3 < value < 0.0
    draws = tmp_path / "draws.nc"
    assert main(["--no-progress", "sample", "--checkpoint", str(model_dir), "--out", str(draws),
                 "--chains", "4", "--samples", "50", "--warmup", "10"]) == 0
    x = _arviz.group(_arviz.from_netcdf(draws), "posterior")["x"].values
    assert x.shape == (4, 50, 6) and set(np.unique(x)) <= {0.0, 1.0}


def test_rbm_training_refuses_non_binary_data_and_other_objectives(ring, tmp_path, capsys):
    assert main(["train", "--model", "rbm", "--data", str(ring), "--objective", "pcd",
                 "--hidden", "4", "--out", str(tmp_path / "a")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train", "--model", "rbm", "--data", str(ring), "--objective", "ncsn",
                 "--hidden", "4", "--out", str(tmp_path / "b")]) == 2
    assert "--objective cd or pcd" in capsys.readouterr().err
