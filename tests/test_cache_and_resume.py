"""Issue 26: a program cache that cannot be stale, a resume= that refuses another target, an
until= check compiled once, and initial positions and stop rules that cannot be misread."""

import functools
import sys
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import numpyro_ebm as ne
from numpyro_ebm import _arviz, diagnostics
from numpyro_ebm._mixing import mixing_so_far

# Short MALA runs of a unit Gaussian in 2-D: a mean of 200 draws x 2 chains is within 0.5 of
# the centre (about 5 standard errors at the ESS these runs reach), so a centre moved from 0
# to 5 cannot be confused with the old one.
RUN = dict(event_shape=(2,), num_chains=2, num_samples=200, num_warmup=100)
CENTRE = 0.0


def _mean(energy, **options) -> float:
    idata = ne.sample(energy, "mala", key=jax.random.key(0), **(RUN | options))
    return float(idata.posterior["x"].values.mean())


def _compiles(call) -> list[str]:
    """Names of the programs XLA compiles while ``call()`` runs."""
    names = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        call()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return names


# --- the program cache keys what an energy computes ---------------------------------------


def _global_case(monkeypatch):
    def energy(x):
        return 0.5 * jnp.sum((x - CENTRE) ** 2)

    return energy, lambda: monkeypatch.setattr(sys.modules[__name__], "CENTRE", 5.0)


def _array_case(monkeypatch, dtype=np.float32):
    centre = np.zeros(2, dtype)

    def energy(x):
        return 0.5 * jnp.sum((x - centre) ** 2)

    def move():
        centre[:] = 5.0

    return energy, move


class _Shifted:
    def __init__(self):
        self.centre = 0.0

    def energy(self, x):
        return 0.5 * jnp.sum((x - self.centre) ** 2)


def _bound_method_case(monkeypatch):
    shifted = _Shifted()
    return shifted.energy, lambda: setattr(shifted, "centre", 5.0)


def _nnx_case(monkeypatch):
    nnx = pytest.importorskip("flax.nnx")

    class Centre(nnx.Module):
        def __init__(self):
            self.mu = nnx.Param(jnp.zeros(2))

    module = Centre()

    def energy(x):
        return 0.5 * jnp.sum((x - module.mu[...]) ** 2)

    def train():  # as the README writes trained parameters back
        nnx.update(module, jax.tree.map(lambda p: p + 5.0, nnx.state(module)))

    return energy, train


@pytest.mark.parametrize(
    "case",
    [
        _global_case,
        _array_case,
        # JAX narrows a float64 array to a float32 copy kept per array object: changed in
        # place, it was read stale (by the key and the program) until the cache was cleared
        functools.partial(_array_case, dtype=np.float64),
        _bound_method_case,
        _nnx_case,
    ],
    ids=["global", "closed_over_array", "closed_over_float64_array", "bound_method", "nnx_update"],
)
def test_a_changed_energy_gets_its_own_draws(case, monkeypatch):
    energy, change = case(monkeypatch)
    before = _mean(energy)
    change()
    after = _mean(energy)
    assert abs(before) < 0.5
    assert abs(after - 5.0) < 0.5


def test_a_ready_target_is_keyed_again_when_sampled(monkeypatch):
    energy, change = _global_case(monkeypatch)
    target = ne.energy_target(energy, key=jax.random.key(1), event_shape=(2,), num_chains=2)
    assert abs(_mean(target, event_shape=None, num_chains=None)) < 0.5
    change()
    assert abs(_mean(target, event_shape=None, num_chains=None) - 5.0) < 0.5


def _conjugate(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("passed", ["closed_over", "model_args"])
def test_a_model_given_changed_data_gets_its_own_draws(passed, dtype):
    data = np.zeros(4, dtype)

    def model():
        _conjugate(data)

    def posterior_mean():
        idata = ne.sample(
            model if passed == "closed_over" else _conjugate,
            "mala",
            key=jax.random.key(2),
            model_args=() if passed == "closed_over" else (data,),
            num_chains=2,
            num_samples=200,
            num_warmup=100,
        )
        return float(idata.posterior["mu"].values.mean())

    assert abs(posterior_mean()) < 0.5  # exact posterior N(0, 1/4)
    data[:] = 5.0
    assert abs(posterior_mean() - 5.0) < 0.5  # exact N(4.99, 1/4)


class _Experiment:
    """Reads a float32 centre; keeps a float64 log it writes in place, which it never reads."""

    def __init__(self):
        self.centre = np.zeros(2, np.float32)
        self.log = np.zeros(3)

    def energy(self, x):
        return 0.5 * jnp.sum((x - self.centre) ** 2)


class _Opaque:
    __slots__ = ("values",)

    def __getattr__(self, name):  # raises KeyError, not AttributeError
        return {}[name]


def test_the_array_check_skips_what_it_cannot_read_and_clears_only_for_arrays_read():
    experiment = _Experiment()
    _mean(experiment.energy)
    experiment.log[:] = 1.0  # held, never read: nothing is forgotten or compiled again
    assert _compiles(lambda: _mean(experiment.energy)) == []

    opaque = _Opaque()

    def energy(x, debug=False):
        if debug:
            print(later, opaque)  # a cell not assigned yet when sampled, an opaque object
        return 0.5 * jnp.sum(x**2)

    assert abs(_mean(energy)) < 0.5
    later = 1


def test_an_unchanged_energy_or_model_compiles_nothing_new():
    nnx = pytest.importorskip("flax.nnx")
    net = nnx.Linear(2, 1, rngs=nnx.Rngs(0))

    def energy(x):
        return 0.5 * jnp.sum(x**2) + 0.1 * jnp.sum(net(x) ** 2)

    y = np.array([0.3, -0.1, 0.8], np.float32)
    calls = [
        lambda: ne.sample(energy, "mala", key=jax.random.key(0), **(RUN | {"num_samples": 20})),
        lambda: ne.sample(
            _conjugate,
            "mala",
            key=jax.random.key(0),
            model_args=(y,),
            **(RUN | {"event_shape": None, "num_samples": 20}),
        ),
    ]
    for call in calls:
        first = call()
        again = []
        assert _compiles(lambda call=call: again.append(call())) == []
        name = next(iter(first.posterior.data_vars))
        np.testing.assert_array_equal(first.posterior[name].values, again[0].posterior[name].values)


def test_a_second_fit_of_the_same_objective_compiles_no_chunk_and_a_changed_one_does():
    """training.fit keeps its chunk programs in the program cache by content: another seed of
    the same RBM fit compiles no chunk (it was 1 s of a 1.6 s fit); other data of the same
    shape is an argument, not a constant, so it compiles nothing either; another learning rate
    (a constant of the program) compiles its own."""
    from numpyro_ebm.models.rbm import BernoulliRBM
    from numpyro_ebm.training.rbm import fit_rbm, rbm_optimizer

    model = BernoulliRBM(6, 3)
    data = np.asarray(jax.random.bernoulli(jax.random.key(0), 0.5, (40, 6)), np.float32)

    def fit(seed, rate=0.05, values=data):
        params = model.init(jax.random.key(seed), 0.01)
        return fit_rbm(
            model, params, values, key=jax.random.key(seed), num_steps=20, batch_size=4,
            steps_per_chunk=10, optimizer=rbm_optimizer(rate),
        )  # fmt: skip

    fit(0)
    chunks = [name for name in _compiles(lambda: fit(1)) if "chunk" in name]
    assert chunks == []
    assert [name for name in _compiles(lambda: fit(2, values=1.0 - data)) if "chunk" in name] == []
    assert [name for name in _compiles(lambda: fit(3, rate=0.01)) if "chunk" in name]


def test_an_energy_that_draws_random_numbers_when_traced_is_refused():
    import random

    with pytest.raises(ValueError, match="the energy is not a pure function"):
        ne.sample(
            lambda x: random.uniform(0.1, 10) * jnp.sum(x**2), "mala", key=jax.random.key(0), **RUN
        )
    with pytest.raises(ValueError, match="the energy is not a pure function"):
        ne.sample(
            lambda x: jnp.sum((x - np.random.default_rng().normal(size=2)) ** 2),
            "mala",
            key=jax.random.key(0),
            **RUN,
        )

    def model():
        numpyro.sample("mu", dist.Normal(np.random.default_rng().normal(), 1.0))

    with pytest.raises(ValueError, match="the model is not a pure function"):
        ne.sample(model, "mala", key=jax.random.key(0), num_chains=2)


# --- resume= continues only the target that made the run ----------------------------------


def _gaussian(x):
    return 0.5 * jnp.sum(x**2)


def _shifted(x):
    return 0.5 * jnp.sum((x - 5.0) ** 2)


@pytest.fixture(scope="module")
def first_run():
    return ne.sample(_gaussian, "mala", key=jax.random.key(3), **(RUN | {"num_samples": 10}))


@pytest.mark.parametrize(
    "energy, options, match",
    [
        (_shifted, {}, r"another target \(another energy"),
        (_gaussian, {"temperature": 100.0}, r"temperature=1\.0, not temperature=100\.0"),
        (_gaussian, {"event_shape": (3,)}, r"event_shape \(2,\) float32, not \(3,\) float32"),
        (_gaussian, {"init_position": jnp.full((2, 2), 100.0)}, "init_position would be ignored"),
    ],
    ids=["energy", "temperature", "event_shape", "init_position"],
)
def test_resume_refuses_another_target(first_run, energy, options, match):
    with pytest.raises(ValueError, match=match):
        ne.sample(energy, "mala", resume=first_run, **(RUN | {"num_samples": 5} | options))


def test_resume_checks_a_run_read_back_from_netcdf(first_run, tmp_path):
    path = tmp_path / "run.nc"
    _arviz.to_netcdf(first_run, path)
    stored = _arviz.from_netcdf(path)
    with pytest.raises(ValueError, match=r"temperature=1\.0, not temperature=2\.0"):
        ne.sample(_gaussian, "mala", resume=stored, temperature=2.0, **(RUN | {"num_samples": 5}))
    more = ne.sample(_gaussian, "mala", resume=stored, **(RUN | {"num_samples": 5}))
    assert more.posterior["x"].shape == (2, 5, 2)


def test_resume_refuses_an_energy_changed_since(monkeypatch):
    energy, change = _global_case(monkeypatch)
    first = ne.sample(energy, "mala", key=jax.random.key(3), **(RUN | {"num_samples": 10}))
    change()
    with pytest.raises(ValueError, match="another energy"):
        ne.sample(energy, "mala", resume=first, **(RUN | {"num_samples": 5}))


# --- until= compiles its check once -------------------------------------------------------


def test_until_compiles_its_mixing_check_once_for_all_blocks():
    # a shape no other test checks, so that the check is compiled here
    until = ne.Until(ess_bulk=1e9, block=20)  # never met: every block is checked
    options = dict(event_shape=(3,), num_chains=3, num_samples=100, num_warmup=10, until=until)
    results = []
    names = _compiles(
        lambda: results.append(ne.sample(_gaussian, "mala", key=jax.random.key(4), **options))
    )
    attrs = results[0].sample_stats.attrs
    assert attrs["until_num_draws"] == 100 and attrs["until_reason"] == "max_draws"  # 5 blocks
    assert names.count("jit(mixing_so_far)") == 1
    # no program compiled twice; an eager cast (jit(convert_element_type)) is compiled once per
    # input shape and dtype, so which casts a fresh process still needs depends on the tests
    # that ran before in it: those are not programs of the run
    programs = [name for name in names if name != "jit(convert_element_type)"]
    assert max(Counter(programs).values()) == 1, names
    assert _compiles(lambda: ne.sample(_gaussian, "mala", key=jax.random.key(5), **options)) == []


@pytest.mark.parametrize("count", [4, 5, 37, 60])
def test_the_until_check_equals_max_rhat_min_ess_of_the_draws_so_far(count):
    # AR(1) chains (slow mixing), one of them offset; a discrete coordinate (ties); a constant
    # one; what lies past the count (NaN here) is ignored
    key = jax.random.key(6)
    noise = jax.random.normal(key, (3, 60, 2))
    ar = jax.lax.scan(
        lambda c, e: (0.8 * c + e, 0.8 * c + e), jnp.zeros((3, 2)), noise.swapaxes(0, 1)
    )[1]
    ar = ar.swapaxes(0, 1) + jnp.array([0.0, 0.0, 0.7])[:, None, None]
    draws = {
        "x": np.asarray(ar),
        "bits": np.asarray(noise[..., 0] > 0.3, np.float32),
        "fixed": np.ones((3, 60), np.float32),
    }
    buffers = [
        np.where(np.arange(60)[None, :, None] < count, x.reshape(3, 60, -1), np.nan)
        for x in draws.values()
    ]
    ours = mixing_so_far(buffers, np.int32(count))
    exact = diagnostics.max_rhat_min_ess({k: v[:, :count] for k, v in draws.items()})
    np.testing.assert_allclose(np.asarray(ours), np.asarray(exact), rtol=2e-4)
    buffers[0][1, count // 2] = np.nan  # a broken chain fails the check
    assert np.isnan(np.asarray(mixing_so_far(buffers, np.int32(count)))).all()


# --- what cannot be read two ways ---------------------------------------------------------


def test_a_one_dimensional_start_of_num_chains_entries_needs_num_chains_or_event_shape():
    key = jax.random.key(0)
    short = dict(num_samples=5, num_warmup=5)
    with pytest.raises(ValueError, match=r"can be read two ways.*num_chains=4.*broadcast_to"):
        ne.sample(_gaussian, "mala", key=key, init_position=jnp.zeros(4), **short)
    with pytest.raises(ValueError, match="can be read two ways"):
        ne.energy_target(_gaussian, init_position=jnp.zeros(4))
    for said in ({"num_chains": 4}, {"event_shape": ()}):
        idata = ne.sample(_gaussian, "mala", key=key, init_position=jnp.zeros(4), **short, **said)
        assert idata.posterior["x"].shape == (4, 5)


def test_a_fractional_event_shape_or_an_unreachable_rhat_is_refused():
    with pytest.raises(TypeError, match=r"event_shape must be a tuple of ints, got \(2\.5,\)"):
        ne.sample(_gaussian, "mala", key=jax.random.key(0), event_shape=(2.5,))
    for rhat in (0.5, 1.0):
        with pytest.raises(ValueError, match=f"until.rhat must be above 1.*got {rhat}"):
            ne.sample(_gaussian, "mala", key=jax.random.key(0), until=ne.Until(rhat=rhat), **RUN)
