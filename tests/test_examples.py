"""The examples run end to end at ``--smoke`` size and write the figures they promise.

Each example runs in its own subprocess (``sys.executable examples/<name>.py --smoke --out
DIR``) on the CPU. A smoke run is mostly JAX compilation, which is largely single-threaded, so
the examples run two at a time: a module-scoped pool starts them all on first use and each
test waits for its own. Smoke sizes train for a few hundred steps, so the tests check that the
runs complete and report finite, well-formed numbers, not their quality (the full-size runs
are what show it; their numbers are in the examples' docstrings and the project's notes).
"""

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT_S = 600  # generous: a loaded CI machine can be several times slower than 40 s

#: example -> the figures it promises
FIGURES = {
    "ncsn_digits": ["samples.png", "loss.png"],
    "inverse_problem": ["reconstruction.png", "posterior_draws.png", "ess_per_second.png"],
    "imitation_learning": ["imitation.png"],
    "compare_samplers": [
        "ess_per_second.png",
        "rank_mala.png",
        "rank_hmc.png",
        "posterior_tau.png",
    ],
    "rbm_digits": ["loglik.png", "samples.png", "filters.png"],
    "ising": ["curves.png", "autocorrelation.png"],
    "ising_denoising": ["denoising.png", "sigma.png"],
    "ising_parameters": ["posterior.png", "coverage.png"],
    "evidence": ["bayes_factor.png"],
    "ring_prior": ["posteriors.png"],
    "reward_model": ["reward.png", "hacking.png"],
    "jem_digits": ["samples.png", "basins.png"],
    "gan_energy": ["gan.png", "entropy.png"],
    "gail": ["trajectories.png", "training.png"],
}


def _run(name: str, out: Path, processes: list) -> subprocess.CompletedProcess:
    env = os.environ | {"JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    env.pop("XLA_FLAGS", None)  # the examples run on one plain CPU device
    command = [sys.executable, str(EXAMPLES_DIR / f"{name}.py"), "--smoke", "--out", str(out)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    processes.append(process)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, request):
    """name -> (future of the CompletedProcess, output directory); the examples whose smoke
    tests this session runs start on first use, two at a time. Runs still going at teardown
    are killed."""
    processes: list[subprocess.Popen] = []
    pool = ThreadPoolExecutor(max_workers=2)
    runs = {}
    selected = {item.name for item in request.session.items}
    for name in FIGURES:
        if f"test_{name}_smoke" not in selected:
            continue
        out = tmp_path_factory.mktemp(name)
        runs[name] = (pool.submit(_run, name, out, processes), out)
    yield runs
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _finished(smoke_runs, name) -> tuple[Path, dict, str]:
    future, out = smoke_runs[name]
    result = future.result()
    assert result.returncode == 0, (
        f"{name} --smoke exited with {result.returncode}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    for figure in FIGURES[name]:
        path = out / figure
        assert path.is_file(), f"{name} did not write {figure}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{figure} is not a PNG"
    warnings = [line for line in result.stderr.splitlines() if "Warning:" in line]
    assert not warnings, f"{name} emitted warnings:\n" + "\n".join(warnings)
    return out, json.loads((out / "metrics.json").read_text()), result.stdout


def _is_finite(*values) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


@pytest.mark.slow
def test_ncsn_digits_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "ncsn_digits")
    assert "mean nearest-neighbour distance to the training set" in stdout
    assert metrics["num_samples"] == 16
    assert _is_finite(
        metrics["nn_distance_samples"],
        metrics["nn_distance_heldout_digits"],
        metrics["nn_distance_uniform_noise"],
        metrics["final_loss"],
    )
    # the reference distances do not depend on the model: held-out digits are far closer to
    # the training set than uniform noise images are
    assert metrics["nn_distance_heldout_digits"] < 0.5 * metrics["nn_distance_uniform_noise"]
    classes = metrics["classes"]
    assert 0.0 <= classes["kl"] and abs(sum(classes["frequencies"]) - 1.0) < 1e-6
    assert metrics["classifier_accuracy"] > 0.8


@pytest.mark.slow
def test_inverse_problem_smoke(smoke_runs):
    out, metrics, stdout = _finished(smoke_runs, "inverse_problem")
    assert "reconstruction RMSE" in stdout and "max_rhat" in stdout
    assert metrics["num_digits"] == 2 and metrics["mask"] == "bottom"
    # every sampler ran through ne.compare on the one model, and each row says whether its
    # chains mixed and, if not, why: none is silently presented as good
    assert metrics["samplers"] == ["nuts", "annealed_langevin"]
    assert set(metrics["table"]) == set(metrics["samplers"])
    for row in metrics["table"].values():
        assert isinstance(row["mixed"], bool) and isinstance(row["reason"], str)
        assert row["mixed"] == (row["reason"] == "")
        assert _is_finite(row["max_rhat"], row["grad_evals"])
    # annealed Langevin draws independent sweeps: check_bias=True measured its bias
    assert _is_finite(metrics["table"]["annealed_langevin"]["bias_z"])
    unmixed = [name for name, row in metrics["table"].items() if not row["mixed"]]
    for name in unmixed:
        assert any(note.startswith(f"{name} is not ranked") for note in metrics["notes"])
    assert (out / "comparison.csv").is_file()
    assert all((out / f"{name}.nc").is_file() for name in metrics["samplers"])
    for name in ("baseline", *metrics["samplers"]):
        assert _is_finite(metrics[f"{name}_rmse"], metrics[f"{name}_rmse_hidden"])
    for name in metrics["samplers"]:
        assert 0.0 <= metrics[f"{name}_coverage_2sd_hidden"] <= 1.0
    # the baseline copies the observed pixels: its error there is the noise alone, so over all
    # pixels it is below its error on the hidden ones
    assert metrics["baseline_rmse"] < metrics["baseline_rmse_hidden"]
    # annealed Langevin's last level is the prior NUTS uses
    assert metrics["langevin_sigmas"][-1] == metrics["sigma_prior"]


@pytest.mark.slow
def test_imitation_learning_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "imitation_learning")
    assert "fraction of actions within" in stdout
    for key in ("ebm_follows_expert", "regression_follows_expert", "ebm_upper_mode_fraction"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["num_actions"] == 2 * 30 * 9
    assert _is_finite(metrics["regression_mse"], metrics["swap_acceptance"])


@pytest.mark.slow
def test_compare_samplers_smoke(smoke_runs):
    out, metrics, stdout = _finished(smoke_runs, "compare_samplers")
    assert "max_rhat" in stdout
    assert set(metrics["table"]) == {"mala", "hmc"}
    for row in metrics["table"].values():
        assert _is_finite(row["max_rhat"], row["min_ess_bulk"], row["grad_evals"])
    # the reference's own accuracy columns are zero by construction
    assert metrics["table"]["hmc"]["mean_error"] == 0.0
    assert (out / "comparison.csv").is_file()
    assert (out / "mala.nc").is_file() and (out / "hmc.nc").is_file()


@pytest.mark.slow
def test_rbm_digits_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "rbm_digits")
    assert "held-out log-likelihood" in stdout
    assert set(metrics["final_test_loglik"]) == {"CD-1", "CD-10", "PCD-1"}
    for value in metrics["final_test_loglik"].values():
        # 64 binary pixels: any model is above 64 log(1/2) only if it learned something,
        # and a log-likelihood is never positive
        assert _is_finite(value) and -64 * math.log(2) < value < 0
    assert set(metrics["large_ais"]) == {"PCD-1", "PCD-1, decaying rate", "replica exchange"}
    for result in metrics["large_ais"].values():
        assert _is_finite(result["test_loglik"], result["log_z_stderr"])
    assert metrics["classifier_accuracy"] > 0.8
    for classes in [*metrics["large_classes"].values(), metrics["small_classes"]]:
        assert _is_finite(classes["kl"], classes["kl_standard_error"]) and classes["kl"] >= 0.0
    table = metrics["sampler_or_model"]["table"]
    assert set(table) == {"block_gibbs", "parallel_tempering"}


@pytest.mark.slow
def test_ising_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "ising")
    assert "tau(|m|) at beta_c" in stdout
    assert set(metrics["curves"]) == {
        "gibbs",
        "checkerboard",
        "parallel_tempering",
        "swendsen_wang",
    }
    for per_beta in metrics["curves"].values():
        for summary in per_beta.values():
            assert _is_finite(*summary["mean"], *summary["mcse"], *summary["tau"])
            assert 0.0 <= summary["mean"][0] <= 1.0 and -2.0 <= summary["mean"][1] <= 2.0
    assert all(len(v) == len(metrics["sizes"]) for v in metrics["tau_at_beta_c"].values())


@pytest.mark.slow
def test_evidence_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "evidence")
    assert "log Bayes factor M1 vs M2, closed form" in stdout
    truth = metrics["closed_form"]["log_bayes_factor"]
    assert set(metrics["estimates"]) == {"ais", "smc"}
    for row in metrics["estimates"].values():
        assert _is_finite(row["log_bayes_factor"], row["standard_error"], truth)
        assert row["standard_error"] > 0 and row["num_grad_evals"] > 0
        # smoke sizes: a coarse agreement only (the full run's figures are in the report)
        assert abs(row["log_bayes_factor"] - truth) < 1.0


@pytest.mark.slow
def test_ring_prior_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "ring_prior")
    assert "posterior mean error" in stdout
    assert len(metrics["observations"]) == 3
    for observation in metrics["observations"]:
        posteriors = observation["posteriors"]
        assert set(posteriors) == {"true prior", "score matching alone", "default training"}
        # the true prior is its own truth; the others are measured against it
        assert posteriors["true prior"]["mean_error_in_sd"] == 0.0
        assert _is_finite(*(p["mean_error_in_sd"] for p in posteriors.values()))
        assert _is_finite(observation["sampled"]["z_against_quadrature"])


@pytest.mark.slow
def test_ising_parameters_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "ising_parameters")
    assert "coverage of the 90 % intervals" in stdout
    assert set(metrics["samplers"]) == {"exchange", "pseudo_likelihood"}
    for row in metrics["samplers"].values():
        for name in ("beta", "h"):
            assert _is_finite(row["seconds"], row[name]["mean"], row[name]["ess_per_s"])
            assert row[name]["sd_ratio"] > 0
    assert all(0 <= r <= 1 for rates in metrics["coverage_90"].values() for r in rates.values())


@pytest.mark.slow
def test_ising_denoising_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "ising_denoising")
    assert "ours / NumPyro, ESS per second" in stdout
    assert set(metrics["samplers"]) == {"hmc_gibbs", "numpyro_discrete_hmc_gibbs"}
    for row in metrics["samplers"].values():
        assert _is_finite(row["seconds"], row["sigma_mean"], row["ess_per_s_sigma"])
        assert 0 <= row["wrong_pixels"] <= metrics["L"] ** 2


@pytest.mark.slow
def test_reward_model_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "reward_model")
    assert "tilt at beta" in stdout
    for name in (
        "heldout_preference_accuracy",
        "heldout_label_accuracy",
        "bayes_label_accuracy",
        "tilted_mean_z",
        "model_error",
    ):
        assert _is_finite(metrics[name]), name
    assert 0 <= metrics["heldout_preference_accuracy"] <= 1
    assert set(metrics["compare"]) >= {"nuts", "mala"}
    for row in metrics["by_num_pairs"].values():
        assert len(row["hacking"]["true_gain"]) == len(row["hacking"]["beta"])
        assert _is_finite(*row["hacking"]["true_gain"], *row["hacking"]["kl"])


def test_gan_energy_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "gan_energy")
    assert "after / before (parallel tempering)" in stdout
    assert _is_finite(
        metrics["energy_distance_before"],
        metrics["energy_distance_after"],
        metrics["energy_distance_ratio"],
        metrics["latent_max_rhat"],
        metrics["elbo_with_entropy"],
        metrics["elbo_with_entropy_se"],
        metrics["log_z_true"],
    )
    assert metrics["energy_distance_before"] > 0 and metrics["energy_distance_after"] > 0
    assert set(metrics["latent_mcmc"]) == {"mala", "parallel_tempering"}
    for key in ("modes_covered_without_entropy", "modes_covered_with_entropy"):
        assert 0.0 <= metrics[key] <= 1.0
    # the mixture's log density is normalized: the log Z of exp(-E) = p_data is 0, and the
    # bound lies below it up to its Monte Carlo error whatever the fit
    assert abs(metrics["log_z_true"]) < 1e-3
    bound, se = metrics["elbo_with_entropy"], metrics["elbo_with_entropy_se"]
    assert bound < metrics["log_z_true"] + 4 * se


@pytest.mark.slow
def test_jem_digits_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "jem_digits")
    assert "class-conditional samples" in stdout
    for name in ("test_accuracy", "ece", "ood_auroc_permuted", "ood_auroc_noise"):
        assert _is_finite(metrics[name], metrics["classifier"][name]), name
    assert 0 <= metrics["conditional_sample_accuracy"] <= 1
    assert 0 <= metrics["spurious_basins"]["fraction"] <= 1


def test_gail_smoke(smoke_runs):
    _, metrics, stdout = _finished(smoke_runs, "gail")
    assert "evaluation episodes" in stdout
    for name in ("expert", "bc", "gail", "ebm_il"):
        assert _is_finite(metrics[f"{name}_return"], metrics[f"{name}_return_se"]), name
        for share in ("left_share", "right_share"):
            assert 0.0 <= metrics[f"{name}_{share}"] <= 1.0
        assert metrics[f"{name}_left_share"] + metrics[f"{name}_right_share"] <= 1.0 + 1e-6
    assert metrics["expert_return"] > 0.9  # the expert solves the task at any size
    assert isinstance(metrics["gail_goal_met"], bool) and isinstance(metrics["bc_below_gail"], bool)
