"""Structure that the discrete models and samplers assume is checked, not assumed (issue 26,
the discrete rows of the 2026-12-06 probe): each row of the probe is a test here, the call as
the probe made it and the error it now gets, plus the checks that must not fire.

Statistical assertions compare a Monte Carlo mean with exact enumeration within ``Z`` Monte
Carlo standard errors (``tests/stats.py``); keys are fixed.
"""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from stats import assert_mean_close

import numpyro_ebm as ne
from numpyro_ebm.evidence.rbm_ais import rbm_ais
from numpyro_ebm.kernels import checkerboard
from numpyro_ebm.models.dbn import DBN
from numpyro_ebm.models.ising import Ising, PairwiseBinary
from numpyro_ebm.models.rbm import BernoulliRBM, GaussianBernoulliRBM

Z = 4.0  # two-sided z of the one statistical assertion: false-alarm probability 6e-5


def same_colour_bond(x):
    """The probe's energy E = -2 x00 x02: sites (0, 0) and (0, 2) of a 4x4 lattice, both of
    the even colour, coupled and nothing else."""
    return -2.0 * x[0, 0] * x[0, 2]


def agree(x):
    return (x[..., 0, 0] == x[..., 0, 2]).astype(jnp.float32)


def run(energy, sampler, event_shape, support="pm1", key=0, num_samples=10):
    """A small ``ne.sample`` run: 4 chains of ``num_samples`` draws after 50 warm-up steps."""
    return ne.sample(
        energy,
        sampler,
        key=jax.random.key(key),
        support=support,
        event_shape=event_shape,
        num_chains=4,
        num_samples=num_samples,
        num_warmup=50,
    )


# --- checkerboard on an energy coupling two sites of one colour --------------------------------


def test_checkerboard_refuses_an_energy_coupling_two_sites_of_one_colour_and_names_them():
    with pytest.raises(ValueError, match=r"couples sites \(0, 0\) and \(0, 2\), both even.*gibbs"):
        run(same_colour_bond, "checkerboard", (4, 4), num_samples=500)
    # a refused target caches nothing: the same call is refused again
    with pytest.raises(ValueError, match="couples sites"):
        run(same_colour_bond, "checkerboard", (4, 4), num_samples=500)


def test_parallel_tempering_over_checkerboard_checks_the_untempered_target():
    """The replicas' tempered log densities are traced under vmap, where the check cannot run
    (unchecked, this run gave P(x00 = x02) = 0.82 against 0.982)."""
    sampler = ne.samplers.parallel_tempering(
        inner=ne.samplers.checkerboard(), num_replicas=4, max_temperature=4.0
    )
    with pytest.raises(ValueError, match=r"couples sites \(0, 0\) and \(0, 2\)"):
        run(same_colour_bond, sampler, (4, 4))


def test_gibbs_the_sampler_the_refusal_points_to_gets_the_exact_agreement_probability():
    """P(x00 = x02) = 1 / (1 + e^-4) = 0.982 (checkerboard gave 0.54 before the check)."""
    truth = ne.evidence.exact.expectation(lambda x: -same_colour_bond(x), agree, (4, 4))
    assert float(truth) == pytest.approx(1 / (1 + np.exp(-4.0)), rel=1e-5)
    idata = run(same_colour_bond, "gibbs", (4, 4), key=1, num_samples=500)
    draws = np.asarray(agree(idata.posterior["x"].values))
    assert_mean_close(draws[..., None], [float(truth)], z=Z)


@pytest.mark.parametrize(
    ("logdensity_fn", "shape", "spins", "match"),
    [
        # a next-nearest (diagonal) neighbour: both odd
        (
            lambda s: Ising(4)(s) + 0.5 * s[0, 1] * s[1, 0],
            (4, 4),
            "pm1",
            r"couples sites \(0, 1\) and \(1, 0\), both odd",
        ),
        # one long-range bond among the 2 x 2048^2 same-colour pairs of a 64 x 64 lattice
        (
            lambda s: Ising(64)(s) + 0.3 * s[5, 7] * s[40, 2],
            (64, 64),
            "pm1",
            r"couples sites \(5, 7\) and \(40, 2\), both even .* by 1\.2 ",
        ),
        # a three-site term in bits: zero unless all three are 1 (the all-ones test point)
        (
            lambda x: Ising(8, spins="01")(x) + x[1, 1] * x[5, 7] * x[4, 2],
            (8, 8),
            "01",
            r"couples sites \((1, 1|4, 2)\) and \((4, 2|5, 7)\), both even",  # any two
        ),
        # not affine in a site: the gradient is not the flip log ratio
        (lambda s: Ising(4)(s) + 0.5 * s[1, 2] ** 2, (4, 4), "pm1", r"not affine in site \(1, 2\)"),
    ],
)
def test_checkerboard_init_refuses_any_same_colour_coupling_however_sparse(
    logdensity_fn, shape, spins, match
):
    algorithm = checkerboard.as_top_level_api(logdensity_fn, spins=spins)
    with pytest.raises(ValueError, match=match):
        algorithm.init(jnp.ones(shape))


@pytest.mark.parametrize(
    ("logdensity_fn", "shape", "spins"),
    [
        (Ising(2, beta=0.4), (2, 2), "pm1"),
        (Ising(4, J=-1.0, h=0.3, beta=0.7, spins="01"), (4, 4), "01"),
        (lambda s: jnp.sum(s * (0.8 * jnp.roll(s, 1, 0) - 0.3 * jnp.roll(s, 1, 1))), (4, 6), "pm1"),
        (lambda s: 0.9 * jnp.sum(s * jnp.roll(s, 1)) + 0.2 * jnp.sum(s), (6,), "pm1"),
    ],
)
def test_checkerboard_check_accepts_nearest_neighbour_models(logdensity_fn, shape, spins):
    checkerboard.check_sublattices(logdensity_fn, shape, spins)
    state = checkerboard.as_top_level_api(logdensity_fn, spins=spins).init(jnp.ones(shape))
    assert state.position.shape == shape


# --- Ising energy of another lattice ----------------------------------------------------------


def test_ising_energy_refuses_a_configuration_of_another_lattice():
    with pytest.raises(
        ValueError,
        match=r"Ising\(L=4\) takes one configuration of shape "
        r"\(4, 4\), got shape \(3, 3\)",
    ):
        run(Ising(4).energy, "gibbs", (3, 3))
    model = Ising(4)
    for method in (model.energy, model.logdensity, model.local_field, model.magnetization):
        with pytest.raises(ValueError, match=r"got shape \(3, 3\)"):
            method(jnp.ones((3, 3)))
    with pytest.raises(ValueError, match=r"got shape \(2, 4, 4\); batch with jax.vmap"):
        model.energy(jnp.ones((2, 4, 4)))
    assert float(model.energy(jnp.ones((4, 4)))) == -32.0


# --- RBM and DBN parameters of another model --------------------------------------------------


def test_rbm_log_partition_refuses_the_parameters_of_another_rbm():
    params_5x4 = BernoulliRBM(5, 4).init(jax.random.key(0), scale=1.0)
    model = BernoulliRBM(6, 4)
    match = r"params.W has shape \(5, 4\), but BernoulliRBM\(n_visible=6, n_hidden=4\) needs"
    with pytest.raises(ValueError, match=match):
        model.log_partition(params_5x4)
    with pytest.raises(ValueError, match=match):  # shapes are static: checked under jit too
        jax.jit(model.log_partition)(params_5x4)
    with pytest.raises(ValueError, match=match):
        rbm_ais(jax.random.key(1), model, params_5x4, num_betas=10)
    gaussian = GaussianBernoulliRBM(6, 4)
    params = gaussian.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"params.log_var has shape \(5,\), but Gaussian"):
        gaussian.log_partition(params._replace(log_var=params.log_var[:5]))
    with pytest.raises(
        ValueError,
        match=r"must be the GaussianRBMParams of .*, got a RBMParams \(no field 'log_var'\)",
    ):
        gaussian.log_partition(model.init(jax.random.key(0)))


def test_rbm_log_partition_refuses_a_nan_weight():
    model = BernoulliRBM(6, 4)
    params = model.init(jax.random.key(0), scale=1.0)
    nan_weight = params._replace(W=params.W.at[2, 1].set(jnp.nan))
    with pytest.raises(ValueError, match=r"params.W holds 1 non-finite .* index \(2, 1\)"):
        model.log_partition(nan_weight)
    with pytest.raises(ValueError, match=r"params.c holds 1 non-finite"):
        model.log_likelihood(params._replace(c=params.c.at[0].set(jnp.inf)), jnp.ones((3, 6)))
    assert np.isfinite(float(model.log_partition(params)))


def test_dbn_sample_refuses_the_parameters_of_another_dbn():
    model = DBN((6, 4, 3))
    with pytest.raises(
        ValueError,
        match=r"params\[0\].W has shape \(6, 5\), but "
        r"BernoulliRBM\(n_visible=6, n_hidden=4\) needs \(6, 4\)",
    ):
        model.sample(jax.random.key(0), DBN((6, 5, 3)).init(jax.random.key(1)), 3, 5)
    with pytest.raises(ValueError, match=r"params\[1\].W has shape \(4, 2\)"):
        model.sample(jax.random.key(0), DBN((6, 4, 2)).init(jax.random.key(1)), 3, 5)
    draws = model.sample(jax.random.key(0), model.init(jax.random.key(1)), 3, 5)
    assert draws.shape == (3, 6)


# --- block Gibbs and the declared support -------------------------------------------------------


def test_block_gibbs_refuses_a_support_other_than_bits():
    rbm = BernoulliRBM(6, 4)
    energy = ne.BoundEnergy(rbm.free_energy, rbm.init(jax.random.key(0), scale=1.0))
    with pytest.raises(ValueError, match="support must be '01', got support='pm1'"):
        run(energy, "block_gibbs", (6,), support="pm1")
    gaussian = GaussianBernoulliRBM(3, 2)
    energy = ne.BoundEnergy(gaussian.free_energy, gaussian.init(jax.random.key(0)))
    with pytest.raises(ValueError, match="has real-valued visible units"):
        run(energy, "block_gibbs", (3,), support="01")


def test_the_bound_energy_docstring_shows_a_block_gibbs_call_that_runs():
    call = re.search(r"``(ne\.sample\(BoundEnergy.*?\))``", ne.BoundEnergy.__doc__, re.S)
    assert call is not None and "model=" not in ne.BoundEnergy.__doc__
    rbm = BernoulliRBM(5, 3)
    namespace = {
        "ne": ne,
        "BoundEnergy": ne.BoundEnergy,
        "rbm": rbm,
        "params": rbm.init(jax.random.key(0), scale=1.0),
        "key": jax.random.key(1),
    }
    idata = eval(call.group(1), namespace)
    draws = idata.posterior["x"].values
    assert draws.shape[-1] == 5 and set(np.unique(draws)) <= {0.0, 1.0}
    assert idata.posterior.attrs["sampler"] == "block_gibbs"


# --- complex couplings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: PairwiseBinary(jnp.array([[0, 1j], [1j, 0]]), jnp.zeros(2)),
            "couplings must hold real numbers, got dtype complex",
        ),
        (
            lambda: PairwiseBinary(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([1j, 0])),
            "fields must hold real numbers, got dtype complex",
        ),
        (lambda: Ising(4, J=1j), "J must hold real numbers"),
        (lambda: Ising(4, beta=1 + 1j), "beta must hold real numbers"),
    ],
)
def test_complex_couplings_are_refused_without_numpys_complex_warning(build, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning would fail the test
        with pytest.raises(TypeError, match=match):
            build()
