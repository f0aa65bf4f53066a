"""Memory of sample(): what is kept, not the number of steps; 20,000 MLP chains; chunking."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_ebm as ne
from numpyro_ebm import sampling

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)"
)

RUN = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp
    import numpyro_ebm as ne

    options = json.loads(sys.argv[1])
    mlp = options.pop("mlp", None)
    if mlp is None:
        def energy(x):
            return 0.5 * jnp.sum(x**2)
    else:
        from flax import nnx
        apply, params = ne.as_pure(ne.MLPEnergy((2,), hidden=mlp, rngs=nnx.Rngs(0)))
        def energy(x):
            return apply(params, x)
    idata = ne.sample(energy, "mala", key=jax.random.key(0), event_shape=(2,), **options)
    x = idata.posterior["x"].values
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    print(json.dumps({"peak_mib": int(status.split()[0]) / 1024, "shape": list(x.shape),
                      "finite": bool(jax.numpy.isfinite(x).all())}))
    """
)


def _start(**options) -> subprocess.Popen:
    """sample() in a fresh process, which prints its peak resident memory (VmHWM) in MiB."""
    command = [sys.executable, "-c", RUN, json.dumps(options)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_memory_follows_the_kept_draws_not_the_steps():
    chains, draws = 50_000, 40
    kept_mib = chains * draws * (2 * 4 + 18) / 2**20  # float32 positions + 18 B of statistics
    runs = [
        _start(num_chains=chains, num_samples=draws, num_warmup=5, thinning=1),
        # 10 times the transitions, the same draws kept
        _start(num_chains=chains, num_samples=draws, num_warmup=5, thinning=10),
        # 5 times the draws kept
        _start(num_chains=chains, num_samples=5 * draws, num_warmup=5, thinning=1),
    ]
    base, thinned, more = (_result(run) for run in runs)
    assert thinned["shape"] == base["shape"] == [chains, draws, 2]
    # keeping every transition would add 9 * kept_mib; allow run-to-run noise only
    assert thinned["peak_mib"] - base["peak_mib"] < 0.5 * kept_mib, (base, thinned, kept_mib)
    growth = (more["peak_mib"] - base["peak_mib"]) / (4 * kept_mib)
    assert 0.5 < growth < 1.6, (base, more, kept_mib)


def test_twenty_thousand_chains_of_an_mlp_energy():
    run = _start(mlp=[128, 128], num_chains=20_000, num_samples=5, num_warmup=20, thinning=2)
    result = _result(run)
    assert result["shape"] == [20_000, 5, 2] and result["finite"]
    assert result["peak_mib"] < 2048, result


def test_chunk_size_does_not_change_the_draws(monkeypatch):
    def run():
        return ne.sample(
            lambda x: 0.5 * jnp.sum(x**2),
            "mala",
            key=jax.random.key(4),
            event_shape=(2,),
            num_chains=4,
            num_samples=25,
            num_warmup=5,
        )

    whole = run()
    monkeypatch.setattr(sampling, "CHUNK_BYTES", 4 * (2 * 4 + 18) * 3)  # 3 draws a chunk
    chunked = run()
    for group in ("posterior", "sample_stats"):
        for name, value in getattr(whole, group).items():
            np.testing.assert_array_equal(getattr(chunked, group)[name].values, value.values)


def test_keep_stats_keeps_the_named_statistics_and_nonfinite():
    options = dict(key=jax.random.key(5), event_shape=(2,), num_chains=2, num_samples=6)
    energy = lambda x: 0.5 * jnp.sum(x**2)
    idata = ne.sample(energy, "mala", num_warmup=5, keep_stats=["acceptance_rate"], **options)
    assert sorted(idata.sample_stats.data_vars) == ["acceptance_rate", "nonfinite"]
    assert idata.sample_stats.acceptance_rate.shape == (2, 6)
    bare = ne.sample(energy, "mala", num_warmup=5, keep_stats=(), **options)
    assert list(bare.sample_stats.data_vars) == ["nonfinite"]
    np.testing.assert_array_equal(bare.posterior["x"].values, idata.posterior["x"].values)
    with pytest.raises(ValueError, match=r"names no statistic.*\['swap_acceptance'\]"):
        ne.sample(energy, "mala", num_warmup=5, keep_stats=["swap_acceptance"], **options)
    with pytest.raises(TypeError, match="sequence of statistic names"):
        ne.sample(energy, "mala", num_warmup=5, keep_stats="acceptance_rate", **options)
