"""Ill-posed targets and frozen or exploding chains are named, in the same words, by sample(),
the NumPyro kernels of ne.infer, mixing_report and AIS (issue 26, the probe of 2026-12-06);
well-posed runs stay silent (the suite runs with warnings as errors)."""

import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import numpyro_ebm as ne
from numpyro_ebm import _arviz, _health
from numpyro_ebm.diagnostics import pareto_khat_threshold
from numpyro_ebm.energy import evaluate_energy
from numpyro_ebm.evidence import ais, exact, smc
from numpyro_ebm.evidence.references import Gaussian

IMPROPER = r"the target (looks|may be) improper|a possibly improper target"
BASE = Gaussian(jnp.zeros(2), jnp.ones(2))


def improper(x):
    return -(jnp.sum(x**2) ** 2)


def gaussian(x):
    return 0.5 * jnp.sum(x**2)


def flat_model():
    numpyro.sample("z", dist.ImproperUniform(dist.constraints.real, (), (2,)))


def _messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]


# --- sample() --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler,num_warmup,num_samples",
    [("nuts", 50, 50), ("mala", 200, 300), ("parallel_tempering", 50, 100)],
)
def test_an_improper_energy_is_named_as_such(sampler, num_warmup, num_samples):
    """E = -|x|^4: finite draws drifting outwards, each move lowering the energy."""
    with pytest.warns(RuntimeWarning) as record:  # frozen chains may be named as well
        data = ne.sample(
            improper,
            sampler,
            key=jax.random.key(0),
            event_shape=(2,),
            num_warmup=num_warmup,
            num_samples=num_samples,
        )
    assert any(
        m.startswith("the draws run off") and re.search(IMPROPER, m) for m in _messages(record)
    )
    attrs = data.sample_stats.attrs
    assert "draws run off: the target looks improper" in list(attrs["health"])
    assert any(m in list(attrs["health_warnings"]) for m in _messages(record))


@pytest.mark.parametrize("sampler", ["nuts", "mala", "parallel_tempering"])
def test_a_gaussian_raises_no_health_warning(sampler):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = ne.sample(
            gaussian,
            sampler,
            key=jax.random.key(1),
            event_shape=(2,),
            num_warmup=100,
            num_samples=200,
        )
    assert "health" not in data.sample_stats.attrs
    assert ne.mixing_report(data, display=False).health == ()


def test_a_flat_model_is_named_by_its_exploded_step_size_in_sample_and_mixing_report(tmp_path):
    """ImproperUniform under MALA: every move accepted, the step size driven to 1e17."""
    with pytest.warns(RuntimeWarning, match=r"step size exploded to .* the target looks improper"):
        data = ne.sample(flat_model, "mala", key=jax.random.key(0), num_warmup=50, num_samples=60)
    reason = "step size exploded: the target looks flat (improper)"
    assert list(data.sample_stats.attrs["health"]) == [reason]
    path = tmp_path / "flat.nc"
    _arviz.to_netcdf(data, path)
    for run in (data, _arviz.from_netcdf(path)):
        report = ne.mixing_report(run, display=False)
        assert report.health == (reason,)
        (message,) = data.sample_stats.attrs["health_warnings"]
        assert message in report.warnings
        assert not report.ok


def test_an_energy_that_returns_a_python_number_is_sampled_and_named_flat():
    """Our finiteness check no longer trips over a constant under jit; the constant energy
    is a flat target, named as such."""
    assert evaluate_energy(lambda x: 3, jnp.zeros(2)) == 3
    assert jax.jit(lambda x: evaluate_energy(lambda y: 3, x))(jnp.zeros(2)) == 3
    with pytest.raises(ValueError, match=r"energy is not finite at the given point"):
        jax.jit(lambda x: evaluate_energy(lambda y: math.nan, x))(jnp.zeros(2))
    with pytest.warns(RuntimeWarning, match=r"step size exploded"):
        ne.sample(
            lambda x: 3,
            "mala",
            key=jax.random.key(0),
            event_shape=(2,),
            num_warmup=50,
            num_samples=60,
        )


@pytest.mark.parametrize(
    "energy,step",
    [
        (lambda x: 1e30 * jnp.sum(x**2), r"the step size collapsed to \S+ \(\S+ times its initial"),
        (lambda x: 1e30 + 0.5 * jnp.sum(x**2), r"step size \d"),
    ],
    ids=["1e30 |x|^2", "1e30 + |x|^2/2"],
)
def test_an_energy_of_1e30_freezes_the_chains_and_is_named_by_its_scale(energy, step):
    with pytest.warns(RuntimeWarning, match=r"4 of 4 chain\(s\) .* are frozen, acceptance near 0"):
        data = ne.sample(
            energy, "mala", key=jax.random.key(0), event_shape=(2,), num_warmup=50, num_samples=60
        )
    (message,) = data.sample_stats.attrs["health_warnings"]
    assert re.search(step, message)
    assert re.search(r"the energy is about \d(\.\d+)?e\+3[01] at the draws", message)
    assert list(data.sample_stats.attrs["health"]) == ["chains frozen (acceptance near 0)"]


def test_an_energy_nan_on_part_of_the_space_is_named():
    """MALA rejects every move into x0 > 1.5, where the energy is NaN: a truncated target."""

    def energy(x):
        return jnp.where(x[0] > 1.5, jnp.nan, 0.5 * jnp.sum(x**2))

    match = r"the energy is NaN or infinite on part of the space: at \d+ of 1024 points"
    with pytest.warns(RuntimeWarning, match=match + r".* the target is truncated there"):
        data = ne.sample(
            energy,
            "mala",
            key=jax.random.key(0),
            init_position=jnp.zeros((4, 2)),
            num_warmup=100,
            num_samples=100,
        )
    assert (data.posterior.x.values[..., 0] <= 1.5).all()
    assert list(data.sample_stats.attrs["health"]) == ["energy NaN or infinite near the draws"]


# --- ne.infer: NumPyro MCMC ----------------------------------------------------------------


def test_infer_mala_refuses_a_potential_that_is_nan_at_the_start():
    nan_potential = ne.infer.MALA(potential_fn=lambda z: jnp.nan * jnp.sum(z))
    one = MCMC(nan_potential, num_warmup=20, num_samples=20, progress_bar=False)
    with pytest.raises(ValueError, match=r"the potential at the initial point is not finite"):
        one.run(jax.random.key(0), init_params=jnp.zeros(2))
    two = MCMC(
        nan_potential,
        num_warmup=20,
        num_samples=20,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    with pytest.raises(ValueError, match=r"initial point of chain\(s\) \[0, 1\] is not finite"):
        two.run(jax.random.key(0), init_params=jnp.zeros((2, 2)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "kernel,num_chains,num_samples",
    [(ne.infer.MALA, 1, 200), (ne.infer.MALA, 2, 50), (ne.infer.ParallelTempering, 2, 50)],
)
def test_infer_kernels_name_an_improper_potential(kernel, num_chains, num_samples, seed):
    """Short runs too (the probe's 2 chains x 50 draws): MALA's steps overshoot far out, where
    its own acceptance rates fall near 0 (frozen); the inner moves of the coldest replicas of
    replica exchange all run off."""
    mcmc = MCMC(
        kernel(potential_fn=improper),  # U = E = -|x|^4
        num_warmup=50,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    start = jnp.full((num_chains, 2) if num_chains > 1 else (2,), 0.1)
    with pytest.warns(RuntimeWarning) as record:
        mcmc.run(jax.random.key(seed), init_params=start)
    assert any(re.search(IMPROPER, m) for m in _messages(record))
    assert mcmc.last_state.warned.any()


def test_infer_mala_on_a_gaussian_raises_no_health_warning():
    mcmc = MCMC(
        ne.infer.MALA(potential_fn=gaussian),
        num_warmup=100,
        num_samples=200,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mcmc.run(jax.random.key(1), init_params=jnp.zeros((2, 2)))
    assert not mcmc.last_state.warned.any()
    assert (mcmc.last_state.health.transitions == 200).all()


# --- AIS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "logdensity",
    [lambda x: jnp.sum(x**2) ** 2, lambda x: 0.0 * jnp.sum(x)],
    ids=["log f = |x|^4", "flat"],
)
def test_ais_flags_an_improper_target_by_the_base_scale_check(logdensity):
    match = r"ais: the runs depend on the base's scale .* the target looks improper"
    with pytest.warns(RuntimeWarning, match=match):
        result = ais.ais(
            jax.random.key(0), logdensity, BASE, num_particles=64, num_runs=4, num_steps=50
        )
    assert bool(result.is_finite) and not result.scale_consistent and not result.ok


def test_ais_log_likelihood_of_an_improper_energy_is_not_ok():
    data = jax.random.normal(jax.random.key(2), (50, 2))
    with pytest.warns(RuntimeWarning, match=r"the target looks improper"):
        result = ais.log_likelihood(
            jax.random.key(1), improper, data, num_particles=64, num_runs=4, num_steps=50
        )
    assert not result.ok


def test_ais_of_a_gaussian_is_ok_and_unchecked_without_a_gaussian_base():
    result = ais.ais(
        jax.random.key(0), lambda x: -gaussian(x), BASE, num_particles=64, num_runs=4, num_steps=50
    )
    assert result.ok and result.scale_consistent
    assert abs(float(result.log_normalizer) - math.log(2 * math.pi)) < 5 * result.standard_error
    assert result.pareto_khat < 0.5
    pair = (BASE.logdensity, BASE.sample)  # a pair of functions cannot be widened
    with pytest.warns(RuntimeWarning, match=r"heavy-tailed \(Pareto k-hat .* > 0\.\d\d\)"):
        unchecked = ais.ais(
            jax.random.key(0), lambda x: 0.0 * jnp.sum(x), pair, num_particles=16, num_runs=2
        )
    # the scale check needs a Gaussian base, but the weights 1 / p0(x) of a flat target are
    # heavy-tailed whatever the base: k-hat names it
    assert unchecked.scale_consistent and not unchecked.ok
    assert unchecked.pareto_khat > pareto_khat_threshold(32)


@pytest.mark.parametrize(
    "logdensity,base,match",
    [
        (lambda x: jnp.nan * jnp.sum(x), BASE, r"logdensity_fn is nan at the base's point"),
        (
            lambda x: -jnp.sum((x - jnp.ones(2)) ** 2),
            Gaussian(jnp.zeros(3), jnp.ones(3)),
            r"cannot take a point of the base's dimension d=3",
        ),
        (lambda x: -(x**2), BASE, r"must return a scalar for one point of shape \(2,\)"),
    ],
    ids=["nan", "base of another dimension", "vector-valued"],
)
def test_ais_refuses_an_undefined_target_early(logdensity, base, match):
    with pytest.raises(ValueError, match=match):
        ais.ais(jax.random.key(0), logdensity, base, num_particles=8, num_runs=2, num_steps=2)


def test_tempered_smc_refuses_a_log_density_that_is_nan_at_the_position():
    with pytest.raises(ValueError, match=r"logdensity_fn is nan at position: log Z would be"):
        smc.smc(jax.random.key(0), lambda x: jnp.nan * jnp.sum(x), jnp.zeros(2))


def test_reverse_ais_refuses_samples_of_another_dimension():
    with pytest.raises(ValueError, match=r"target_samples have dimension 3 but the base has"):
        ais.reverse_ais(jax.random.key(0), lambda x: -gaussian(x), BASE, jnp.zeros((8, 3)))


# --- exact enumeration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "logdensity,values,error,match",
    [
        (lambda s: jnp.nan * jnp.sum(s), (-1, 1), ValueError, r"NaN at 8 of the 8 states"),
        (
            lambda s: jnp.where(s[0] > 0, jnp.nan, 0.0),
            (-1, 1),
            ValueError,
            r"NaN at 4 of the 8 states",
        ),
        (lambda s: jnp.sum(s), ("a", "b"), TypeError, r"values must be two numbers"),
        (lambda s: s, (-1, 1), TypeError, r"must return a scalar for one configuration"),
    ],
    ids=["nan", "nan on half", "values of strings", "vector-valued"],
)
def test_exact_log_partition_refuses_what_has_no_log_z(logdensity, values, error, match):
    with pytest.raises(error, match=match):
        exact.log_partition(logdensity, (3,), values)


# --- the thresholds --------------------------------------------------------------------------


def _tally(*, transitions=100, moves=50, falls=0, rises=0):
    counts = (transitions, moves, 0.5 * transitions, transitions, falls, rises, falls, rises)
    return _health.Tally(*(np.array([count]) for count in counts))


def _flag(name, step_ratio=np.nan, **counts) -> bool:
    return bool(np.ravel(_health.flags(_tally(**counts), step_ratio)[name])[0])


def test_the_drift_check_needs_20_moves_one_way_or_4_in_5_of_many():
    assert _flag("improper", falls=20) and not _flag("improper", falls=19)  # 2^-20 < 1e-6
    assert _flag("improper", falls=80, rises=20) and not _flag("improper", falls=70, rises=30)
    assert not _flag("improper", falls=600, rises=400)  # significant, but a mild asymmetry


def test_the_drift_check_of_replica_exchange_pools_the_coldest_replicas_first():
    def replicas(falls, rises):  # one chain, counts per replica (coldest first)
        tally = _tally()._replace(energy_falls=np.array([falls]), energy_rises=np.array([rises]))
        return tally._replace(norm_rises=tally.energy_falls, norm_falls=tally.energy_rises)

    def improper(falls, rises) -> bool:
        return bool(_health.flags(replicas(falls, rises), np.nan)["improper"])

    # the cold pair ran off (30 of 30), the hot pair wanders (60 of 120): pooled only 90 of 150
    assert improper([15, 15, 30, 30], [0, 0, 30, 30])
    assert not improper([15, 15, 30, 30], [15, 15, 30, 30])  # balanced
    # Bonferroni over the 4 pools: 2^-22 < 1e-6 / 4 < 2^-21
    assert improper([22, 0, 0, 0], [0, 0, 0, 0]) and not improper([21, 0, 0, 0], [0, 0, 0, 0])
    message = _health.findings(replicas([15, 15, 30, 30], [0, 0, 30, 30]), 1.0, 1.0, 1.0)
    assert "the energy fell in 30 of 30 moves of the 2 coldest replica(s)" in message[0].message


def test_a_chain_whose_own_acceptance_averages_below_5_percent_is_frozen():
    def frozen(transitions, moves, acceptance) -> bool:
        tally = _tally(transitions=transitions, moves=moves)
        tally = tally._replace(acceptance_sum=np.array([acceptance * transitions]))
        return bool(_health.flags(tally, np.nan)["frozen"][0])

    assert frozen(50, 1, 0.02)  # 1 move: P(Bin(50, 1/4) <= 1) = 1e-5 alone is not rare
    assert not frozen(50, 1, 0.06)  # the kernel expects to move 3 times
    assert not frozen(19, 0, 0.0)  # too few transitions to judge
    assert not frozen(50, 3, 0.02)  # moved in 6 % of the transitions


def test_a_chain_is_frozen_only_when_a_chain_moving_a_quarter_of_the_time_rarely_moves_so_little():
    assert _flag("frozen", transitions=49, moves=0)  # 0.75^49 < 1e-6 < 0.75^48
    assert not _flag("frozen", transitions=48, moves=0)
    assert _flag("frozen", transitions=100, moves=4)
    assert not _flag("frozen", transitions=100, moves=5)  # not below 5 % of the transitions
    assert not _flag("frozen", transitions=1000, moves=60)


def test_the_step_size_explodes_only_with_every_move_accepted():
    accepted = _tally()._replace(acceptance_sum=np.array([99.5]))  # acceptance 0.995
    assert _health.flags(accepted, np.array([2e8]))["flat"][0]
    assert not _health.flags(accepted, np.array([5e7]))["flat"][0]
    assert not _flag("flat", step_ratio=np.array([2e8]))  # acceptance 0.5
