"""devices=: chains (sample) and minibatches (fit) split over 4 CPU devices, the same results
as on one, nothing gathered, bad meshes rejected, checkpoints and several processes."""

import functools
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec
from stats import assert_covariance_close, assert_mean_close

import numpyro_ebm as ne
from numpyro_ebm import sharding
from numpyro_ebm._programs import build_programs
from numpyro_ebm.samplers import get_sampler
from numpyro_ebm.training import objectives

DIM = 3
MEAN = np.array([-1.0, 0.0, 1.0])
SCALE = np.array([0.5, 1.0, 2.0])
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


def gaussian_energy(x):
    return 0.5 * jnp.sum(((x - MEAN) / SCALE) ** 2)


def noise_conditional_gaussian(x, sigma):
    return 0.5 * jnp.sum((x - MEAN) ** 2 / (SCALE**2 + sigma**2))


def regression(x, y=None):
    loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("y", dist.Normal(loc * x, scale), obs=y)


def test_conftest_gives_four_devices():
    assert jax.device_count() == 4


# --- sample -------------------------------------------------------------------------------

CASES = {
    "mala": dict(target=gaussian_energy, sampler="mala"),
    "parallel_tempering": dict(
        target=gaussian_energy, sampler="parallel_tempering", num_replicas=3, max_temperature=4.0
    ),
    "annealed_langevin": dict(
        target=noise_conditional_gaussian,
        sampler="annealed_langevin",
        sigmas=np.geomspace(3.0, 0.3, 4),
        step_size=0.05,
        num_steps_per_level=5,
        metropolis=True,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sample_is_the_same_on_one_and_four_devices(case):
    options = dict(
        key=jax.random.key(0), event_shape=(DIM,), num_chains=8, num_samples=10, num_warmup=10
    )
    one = ne.sample(**CASES[case], **options)
    four = ne.sample(**CASES[case], **options, devices="all")
    # the same per-chain keys and arithmetic; XLA may round differently for another
    # per-device batch shape, hence a float tolerance rather than equality
    np.testing.assert_allclose(
        four.posterior["x"].values, one.posterior["x"].values, rtol=1e-4, atol=1e-4
    )
    for name in ("potential_energy", "step_size", "num_grad_evals"):
        np.testing.assert_allclose(
            four.sample_stats[name].values, one.sample_stats[name].values, rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("sampler", ["nuts", "hmc"])
def test_long_hmc_and_nuts_runs_on_four_devices_sample_the_target(sampler):
    # Long HMC/NUTS trajectories amplify rounding differences between device layouts (see
    # docs/scaling.md), so over 400 draws the check is statistical: the 4-device chains
    # sample the same Gaussian, their moments within 4 Monte Carlo standard errors of it.
    options = {"num_integration_steps": 8} if sampler == "hmc" else {}
    four = ne.sample(
        gaussian_energy,
        sampler,
        key=jax.random.key(1),
        event_shape=(DIM,),
        num_chains=8,
        num_samples=400,
        num_warmup=300,
        devices="all",
        **options,
    )
    draws = four.posterior["x"].values
    assert_mean_close(draws, MEAN)
    assert_covariance_close(draws, MEAN, np.diag(SCALE**2))


def test_a_model_is_sampled_and_constrained_on_two_devices():
    x = jnp.linspace(-1.0, 1.0, 20)
    y = 0.5 * x + 0.3 * jax.random.normal(jax.random.key(1), (20,))
    options = dict(
        key=jax.random.key(2),
        num_chains=4,
        num_samples=10,
        num_warmup=10,
        model_args=(x,),
        model_kwargs={"y": y},
    )
    one = ne.sample(regression, "mala", **options)
    two = ne.sample(regression, "mala", devices=jax.devices()[:2], **options)
    for site in ("loc", "scale"):
        np.testing.assert_allclose(
            two.posterior[site].values, one.posterior[site].values, rtol=1e-4, atol=1e-5
        )
    assert (two.posterior["scale"].values > 0).all()


@pytest.mark.parametrize("sampler", ["mala", "nuts"])
def test_chains_stay_split_over_the_devices_and_nothing_is_gathered(sampler):
    mesh = sharding.device_mesh("all", "chains")
    target = ne.energy_target(gaussian_energy, init_position=jnp.zeros((8, DIM)), num_chains=8)
    chain_sampler = get_sampler(sampler).chain_sampler(target)
    positions = sharding.place(target.initial_position, sharding.sharded(mesh, "chains"))
    key = sharding.place(jax.random.key(0), sharding.replicated(mesh))
    warmup, run_chunk, _ = build_programs(
        chain_sampler, target, 5, 2, mesh, ("kept", "stats"), None
    )
    state, parameters = warmup(key, positions)
    for leaf in jax.tree.leaves((state, parameters)):
        assert leaf.sharding.spec == PartitionSpec("chains")
        assert {shard.data.shape[0] for shard in leaf.addressable_shards} == {2}
    chunk = (state, parameters, key, 0, 3)
    state, out = run_chunk(*chunk, length=3)
    assert out["kept"].sharding.spec == PartitionSpec(None, "chains")
    assert out["kept"].shape == (3, 8, DIM)
    for program, args, static in (
        (warmup, (key, positions), {}),
        (run_chunk, chunk, {"length": 3}),
    ):
        hlo = program.lower(*args, **static).compile().as_text()
        # each device steps its own chains: no collective at all, not even the all-reduce of
        # "is any chain still in its NUTS loop" that a partitioned vmapped while_loop needs
        assert not [op for op in COLLECTIVES if f"{op}(" in hlo or f"{op}-start(" in hlo]


# --- fit ----------------------------------------------------------------------------------

DATA = jax.random.normal(jax.random.key(1), (200, 2))


def _fit(objective, devices, **overrides):
    apply, params = ne.as_pure(ne.MLPEnergy((2,), hidden=(16,), rngs=nnx.Rngs(0)))
    options = dict(
        key=jax.random.key(0),
        optimizer=optax.adam(1e-2),
        num_steps=30,
        batch_size=32,
        steps_per_chunk=10,
        progress=False,
        devices=devices,
    )
    if objective == "pcd":
        capacity = overrides.pop("capacity", 100)
        loss = objectives.pcd(apply, k=3, step_size=1e-2, capacity=capacity)
    else:
        loss = objectives.dsm(apply, 0.3)
    options.update(overrides)
    return ne.fit(loss, params, DATA, **options)


def _assert_close(a, b, tol=1e-5):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


@functools.cache
def _cached_fit(objective, devices):
    return _fit(objective, devices)


@pytest.mark.parametrize("objective", ["dsm", "pcd"])
def test_fit_is_the_same_on_one_and_four_devices(objective):
    one = _cached_fit(objective, None)
    four = _cached_fit(objective, "all")
    # the gradient is a mean over the batch: the all-reduce only changes summation order
    _assert_close(four.params, one.params)
    _assert_close(four.opt_state, one.opt_state)
    _assert_close(four.loss_state, one.loss_state)
    np.testing.assert_allclose(four.history["loss"], one.history["loss"], rtol=1e-4, atol=1e-5)
    for leaf in jax.tree.leaves((four.params, four.opt_state)):
        assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
    if objective == "pcd":
        samples = four.loss_state.samples
        assert samples.sharding.spec == PartitionSpec("data")
        assert {shard.data.shape for shard in samples.addressable_shards} == {(25, 2)}


def test_pcd_negative_chains_are_split_over_the_data_axis(monkeypatch):
    # The starts are gathered from the replay buffer at random slots (here a 100-slot buffer,
    # replicated: 100 is not a multiple of 4), so without fit's mesh in context the
    # partitioner would run every chain on every device.
    layouts = []
    negatives = objectives._negatives

    def spy(*args):
        ends = negatives(*args)
        jax.debug.inspect_array_sharding(ends, callback=layouts.append)
        return ends

    monkeypatch.setattr(objectives, "_negatives", spy)
    _fit("pcd", "all", num_steps=10)
    assert layouts
    assert all(layout.spec == PartitionSpec("data") for layout in layouts)


def test_sharded_checkpoints_resume_bitwise_and_on_one_device(tmp_path):
    class Killed(Exception):
        pass

    def kill_at_20(step, params, history):
        if step == 20:
            raise Killed

    # the run dies after its step-20 checkpoint and resumes there for the last 10 steps
    options = dict(checkpoint_dir=tmp_path, checkpoint_every=10)
    with pytest.raises(Killed):
        _fit("pcd", "all", callbacks=[kill_at_20], **options)
    resumed = _fit("pcd", "all", resume=True, **options)
    full = _cached_fit("pcd", "all")
    for a, b in zip(jax.tree.leaves(resumed[:3]), jax.tree.leaves(full[:3]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.loss_state.samples.sharding.spec == PartitionSpec("data")
    # a checkpoint written on 4 devices continues on the default device
    longer = _fit("pcd", None, resume=True, num_steps=35, **options)
    np.testing.assert_array_equal(longer.history["step"], [10, 20, 30, 35])


# --- bad input ----------------------------------------------------------------------------


def test_device_mesh_forms():
    assert sharding.device_mesh(None, "chains") is None
    everything = sharding.device_mesh("all", "chains")
    assert everything.axis_names == ("chains",) and everything.devices.size == 4
    two = sharding.device_mesh(jax.devices()[2:], "data")
    assert list(two.devices) == jax.devices()[2:]
    assert sharding.device_mesh(jax.devices()[1], "data").devices.size == 1
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("chains", "other"))
    assert sharding.device_mesh(mesh, "chains") is mesh


@pytest.mark.parametrize(
    ("devices", "error", "match"),
    [
        ("gpu", ValueError, r"devices must be None, 'all'.*got 'gpu'"),
        ([], ValueError, "empty sequence"),
        (lambda: [jax.devices()[0]] * 2, ValueError, "more than once"),
        ([0, 1], TypeError, "must hold jax devices, got 0"),
        (4, TypeError, "got 4"),
        (lambda: Mesh(np.array(jax.devices()), ("batch",)), ValueError, r"axes \('batch',\)"),
    ],
)
def test_bad_devices_are_rejected_by_name(devices, error, match):
    devices = devices() if callable(devices) else devices
    with pytest.raises(error, match=match):
        ne.sample(gaussian_energy, "mala", key=jax.random.key(0), event_shape=(2,), devices=devices)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_chains": 6}, r"num_chains=6 must be a multiple of the 4 devices"),
        ({"sampler": "tempered_smc"}, r"\['devices'\] need a sampler that draws chain by chain"),
        ({"sampler": "numpyro_nuts"}, "'numpyro_nuts' runs as a whole"),
    ],
)
def test_sample_rejects_what_it_cannot_shard(kwargs, match):
    options = dict(sampler="mala", key=jax.random.key(0), event_shape=(DIM,), devices="all")
    with pytest.raises(ValueError, match=match):
        ne.sample(gaussian_energy, **(options | kwargs))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"batch_size": 30}, r"batch_size=30 must be a multiple of the 4 devices"),
        (
            {"capacity": 102},
            r"shape \(102, 2\).*not a multiple of the 4 devices",
        ),
        ({"devices": Mesh(np.array(jax.devices()), ("chains",))}, r"axis named 'data'"),
    ],
)
def test_fit_rejects_what_it_cannot_shard(overrides, match):
    with pytest.raises(ValueError, match=match):
        _fit("pcd", overrides.pop("devices", "all"), **overrides)


# --- several processes --------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, sys
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    address, count, index, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if count > 1:
        jax.distributed.initialize(address, num_processes=count, process_id=index)
    import jax.numpy as jnp, numpy as np, optax
    import numpyro_ebm as ne

    def energy(x):
        return 0.5 * jnp.sum(x**2)

    idata = ne.sample(energy, "mala", key=jax.random.key(0), event_shape=(3,), num_chains=8,
                      num_samples=10, num_warmup=10, devices="all")
    data = jax.random.normal(jax.random.key(1), (64, 3))
    loss = ne.training.from_loss(lambda w, batch, key: (jnp.mean((batch - w) ** 2), {}))
    fitted = ne.fit(loss, jnp.zeros(3), data,
                    key=jax.random.key(2), optimizer=optax.sgd(0.1), num_steps=10,
                    batch_size=8, progress=False, devices="all")
    np.savez(out, x=idata.posterior["x"].values, w=np.asarray(fitted.params))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_sample_what_one_process_samples(tmp_path):
    """The multi-host recipe of docs/scaling.md, as two local processes of two CPU devices
    each (4 devices), against one process of two."""
    address = f"localhost:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}

    def start(count, index):
        out = tmp_path / f"{count}-{index}.npz"
        command = [sys.executable, "-c", WORKER, address, str(count), str(index), str(out)]
        return subprocess.Popen(command, env=env), out

    workers = [start(2, 0), start(2, 1), start(1, 0)]
    for process, _ in workers:
        assert process.wait(timeout=300) == 0
    first, second, alone = (np.load(out) for _, out in workers)
    for name in ("x", "w"):
        # every process holds every chain's draws, and the replicated parameters
        np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_allclose(first[name], alone[name], rtol=1e-4, atol=1e-4)
    assert first["x"].shape == (8, 10, 3)
