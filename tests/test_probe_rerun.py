"""Rows of the 2026-12-06 bad-input table that the re-run found answered but that no test
pinned: each is the table's call, and the error it now gets (docs/concepts/bad-input.md)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import numpyro_ebm
import numpyro_ebm as ne
from numpyro_ebm import storage
from numpyro_ebm.cli import main

DATA = jnp.linspace(-1.0, 1.0, 100)


def subsampled():
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("N", 100, subsample_size=10) as idx:
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=DATA[idx])


def discrete():
    z = numpyro.sample("z", dist.Bernoulli(0.5))
    numpyro.sample("x", dist.Normal(z, 1.0))


def run_mcmc(kernel, num_chains=1):
    MCMC(
        kernel,
        num_warmup=5,
        num_samples=5,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    ).run(jax.random.key(0))


# --- ne.infer: models the NumPyro kernels cannot sample ---------------------------------------


def test_infer_mala_refuses_a_subsampled_model_in_our_words():
    # table row: NumPyro's "Missing random key to generate subsample indices"
    with pytest.raises(ValueError, match=r"subsamples its data \(plate 'N' draws subsample_size="):
        run_mcmc(ne.infer.MALA(subsampled))


def test_infer_parallel_tempering_refuses_a_discrete_latent_site_in_our_words():
    # table row: NumPyro's "ImportError ... install funsor" (MALA: tests/test_probe_weak_rows.py)
    with pytest.raises(ValueError, match=r"discrete latent site \('z'\)"):
        run_mcmc(ne.infer.ParallelTempering(discrete), num_chains=2)


# --- the command line: output places that refuse writes even to root ------------------------


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A `train` output folder holding an (untrained) noise-conditional network."""
    folder = tmp_path_factory.mktemp("model")
    spec = {"network": "NoiseConditionalMLP", "event_shape": [2], "hidden": [8]}
    storage.save_network(folder / "network", storage.build_network(spec), spec, {"sigmas": [1.0]})
    return folder


@pytest.fixture
def no_work(monkeypatch):
    """Sampling or comparing fails the test: the command must refuse before."""

    def boom(*args, **kwargs):
        raise AssertionError("the command started work before checking --out")

    monkeypatch.setattr(numpyro_ebm, "sample", boom)
    monkeypatch.setattr(numpyro_ebm, "compare", boom)


def one_line_error(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("numpyro-ebm: error: "), err
    return err


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="no procfs mount here")
def test_sample_out_under_procfs_is_refused_before_sampling(capsys, network, no_work):
    # table row: the whole run completed, then h5py's "Unable to synchronously create file"
    err = one_line_error(
        capsys, "--no-progress", "sample", "--checkpoint", network, "--out", "/proc/x.nc"
    )
    assert "--out '/proc/x.nc' cannot be written: a file cannot be created in '/proc'" in err


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="no sysfs mount here")
def test_train_out_under_sysfs_is_refused_naming_the_flag(capsys, tmp_path):
    # table row: the raw OS text "[Errno 1] Operation not permitted: '<sysfs>/o'", no --out
    data = tmp_path / "ring.npy"
    angle = np.random.default_rng(0).uniform(0, 2 * np.pi, 50)
    np.save(data, np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32))
    err = one_line_error(capsys, "--no-progress", "train", "--data", data, "--out", "/sys/o")
    assert "--out '/sys/o' cannot be written: a file cannot be created in '/sys'" in err
