"""The Ising and pairwise binary models: energies against hand-computed sums, local fields
against energy differences, Onsager's curves against exact and transfer-matrix values, the
discrete NumPyro distribution, and bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

from numpyro_ebm import _spins, datasets
from numpyro_ebm.energy import DiscreteEnergyDistribution
from numpyro_ebm.evidence import exact
from numpyro_ebm.models import ising
from numpyro_ebm.models.ising import Ising, PairwiseBinary
from tests.stats import assert_mean_close


def random_spins(key, shape):
    return 2.0 * jax.random.bernoulli(key, 0.5, shape) - 1.0


def bond_sum_by_hand(s):
    L = s.shape[0]
    return sum(
        s[i, j] * (s[(i + 1) % L, j] + s[i, (j + 1) % L]) for i in range(L) for j in range(L)
    )


def test_ising_energy_is_the_periodic_bond_sum_and_logdensity_is_minus_beta_energy():
    model = Ising(5, J=0.7, h=-0.3, beta=0.4)
    s = random_spins(jax.random.key(0), (5, 5))
    energy = -0.7 * bond_sum_by_hand(np.asarray(s)) + 0.3 * float(s.sum())
    assert float(model.energy(s)) == pytest.approx(energy, rel=1e-6)
    assert float(model(s)) == pytest.approx(-0.4 * energy, rel=1e-6)
    assert float(model.energy(jnp.ones((5, 5)))) == pytest.approx(-2 * 0.7 * 25 - (-0.3) * 25)


def test_01_encoding_is_the_pm1_model_of_2x_minus_1():
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (4, 4)).astype(jnp.float32)
    pm1, bits = Ising(4, J=1.2, h=0.5, beta=0.3), Ising(4, J=1.2, h=0.5, beta=0.3, spins="01")
    assert float(bits.energy(x)) == pytest.approx(float(pm1.energy(2 * x - 1)))
    assert float(bits.magnetization(x)) == pytest.approx(float(pm1.magnetization(2 * x - 1)))


def test_local_field_gives_every_single_flip_energy_difference_and_the_gradient():
    model = Ising(4, J=0.8, h=0.2, beta=0.5)
    s = random_spins(jax.random.key(2), (4, 4))
    field = np.asarray(model.local_field(s))
    for i, j in itertools.product(range(4), range(4)):
        flipped = s.at[i, j].multiply(-1)
        delta = float(model.energy(flipped) - model.energy(s))
        assert delta == pytest.approx(2 * float(s[i, j]) * field[i, j], abs=1e-5)
    # log p = -beta E is affine in each site: its gradient is beta times the local field
    np.testing.assert_allclose(jax.grad(model)(s), model.beta * field, rtol=1e-6)


def test_sublattice_masks_colour_the_periodic_lattice_without_equal_neighbours():
    even, odd = Ising(6).sublattice_masks()
    assert int(even.sum()) == int(odd.sum()) == 18 and not bool(jnp.any(even & odd))
    for axis in (0, 1):
        assert not bool(jnp.any(even & jnp.roll(even, 1, axis)))


def test_pairwise_binary_energy_is_the_sum_over_pairs_in_both_encodings():
    d = 6
    upper = np.triu(np.asarray(jax.random.normal(jax.random.key(3), (d, d))), 1)
    couplings, fields = upper + upper.T, np.linspace(-1, 1, d)
    for spins, x in (
        ("pm1", np.array([1, -1, 1, 1, -1, -1.0])),
        ("01", np.array([1, 0, 1.0, 0, 0, 1])),
    ):
        model = PairwiseBinary(couplings, fields, spins=spins)
        pairs = sum(couplings[i, j] * x[i] * x[j] for i in range(d) for j in range(i + 1, d))
        assert float(model.energy(jnp.asarray(x))) == pytest.approx(-pairs - fields @ x, rel=1e-5)
        assert float(model(jnp.asarray(x))) == pytest.approx(pairs + fields @ x, rel=1e-5)


def test_critical_beta_and_onsager_curves_at_known_points():
    beta_c = ising.critical_beta()
    assert beta_c == pytest.approx(0.4406867935097715, rel=1e-12)
    assert float(ising.onsager_energy(beta_c)) == pytest.approx(-np.sqrt(2), rel=1e-12)
    # continuous through beta_c (the product (2 tanh^2 - 1) K -> 0)
    near = ising.onsager_energy(np.array([beta_c * (1 - 1e-7), beta_c * (1 + 1e-7)]))
    np.testing.assert_allclose(near, -np.sqrt(2), atol=1e-4)
    np.testing.assert_array_equal(ising.onsager_magnetization(np.array([0.2, beta_c])), 0.0)
    assert float(ising.onsager_magnetization(3.0)) == pytest.approx(1.0, abs=1e-9)
    # high temperature: u = -2 tanh(beta) + O(beta^3) per site
    assert float(ising.onsager_energy(1e-3)) == pytest.approx(-2e-3, rel=1e-4)


@pytest.mark.parametrize("beta", [0.3, 0.6])
def test_transfer_matrix_strips_converge_to_onsagers_energy_far_from_criticality(beta):
    """-d log Z / d beta / N of periodic R x 200 strips, by central differences, approaches
    Onsager's infinite-lattice energy geometrically in the width R (finite-size terms
    O(exp(-R / xi)), xi < 2 at these betas): the 8-row error is below 5e-3 and under a third of
    the 6-row error (measured: 0.3 -> 1.5e-2, 3.7e-3; 0.6 -> 9.0e-3, 8.0e-4)."""
    cols, step = 200, 1e-4
    errors = []
    for rows in (6, 8):
        log_z = [exact.transfer_matrix_log_partition(rows, cols, beta + d) for d in (-step, step)]
        energy = -(log_z[1] - log_z[0]) / (2 * step) / (rows * cols)
        errors.append(abs(energy - float(ising.onsager_energy(beta))))
    assert errors[1] < 5e-3 and errors[1] < errors[0] / 3


def test_discrete_energy_distribution_samples_exactly_and_enumerates_its_support():
    """3x3 Ising at beta = 0.4: i.i.d. exact draws (ESS = number of draws) of |m| and the
    energy per site agree with enumeration within 4 MCSE; log_prob is -beta E."""
    model = Ising(3, beta=0.4)
    distribution = DiscreteEnergyDistribution(model.energy, (3, 3), temperature=1 / 0.4)
    states = distribution.enumerate_support()
    assert states.shape == (512, 3, 3) and len(np.unique(np.asarray(states), axis=0)) == 512
    draws = distribution.sample(jax.random.key(4), (4, 1000))
    statistic = jax.vmap(jax.vmap(lambda s: jnp.stack([jnp.abs(s.mean()), model.energy(s) / 9])))
    truth = exact.expectation(
        model, lambda s: jnp.stack([jnp.abs(s.mean()), model.energy(s) / 9]), (3, 3)
    )
    assert_mean_close(statistic(draws), np.asarray(truth))
    np.testing.assert_allclose(distribution.log_prob(draws[0, :5]), jax.vmap(model)(draws[0, :5]))


def test_discrete_energy_distribution_sits_in_a_numpyro_model_and_validates_values():
    model = Ising(2, beta=0.5, spins="01")
    distribution = DiscreteEnergyDistribution(
        model.energy, (2, 2), support="01", temperature=2.0, validate_args=True
    )

    def numpyro_model():
        numpyro.sample("spins", distribution)

    draws = numpyro.infer.Predictive(numpyro_model, num_samples=7)(jax.random.key(5))["spins"]
    assert draws.shape == (7, 2, 2) and set(np.unique(draws)) <= {0.0, 1.0}
    assert distribution.support.base_constraint.is_discrete
    with pytest.raises(ValueError, match="value must hold only 0 and 1"):
        distribution.log_prob(jnp.full((2, 2), -1.0))
    large = DiscreteEnergyDistribution(Ising(5).energy, (5, 5))
    with pytest.raises(NotImplementedError, match="2\\^25 states"):
        large.sample(jax.random.key(0))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: Ising(4, beta=0.0), ValueError, "beta must be positive"),
        (lambda: Ising(4, beta=-1.0), ValueError, "beta must be positive"),
        (lambda: Ising(1), ValueError, "L must be an integer >= 2"),
        (lambda: Ising(4.5), TypeError, "L must be an integer"),
        (lambda: Ising(4, J=np.nan), ValueError, "J holds 1 non-finite"),
        (lambda: Ising(4, spins="ud"), ValueError, "spins must be 'pm1' or '01'"),
        (lambda: PairwiseBinary(np.ones((3, 3)) - np.eye(3), np.zeros(2)), ValueError, "fields"),
        (lambda: PairwiseBinary(np.triu(np.ones((3, 3)), 1), np.zeros(3)), ValueError, "symmetric"),
        (lambda: PairwiseBinary(np.ones((3, 3)), np.zeros(3)), ValueError, "zero diagonal"),
        (lambda: PairwiseBinary(np.ones(3), np.zeros(3)), ValueError, "square"),
        (
            lambda: DiscreteEnergyDistribution(Ising(2).energy, (2, 2), support="spin"),
            ValueError,
            "spins must be",
        ),
        (lambda: _spins.check_spins("s", np.array([1, -1, 2]), "pm1"), ValueError, "first 2"),
        (lambda: _spins.check_spins("s", np.array(["a"]), "pm1"), TypeError, "numeric"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_models_are_pytrees_whose_parameters_can_be_traced():
    model = Ising(4, J=1.0, beta=0.5)
    s = random_spins(jax.random.key(6), (4, 4))
    grad = jax.grad(lambda m: m(s))(model)
    assert float(grad.J) == pytest.approx(0.5 * bond_sum_by_hand(np.asarray(s)), rel=1e-6)
    logdensities = jax.vmap(lambda b: model.with_beta(b)(s))(jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(logdensities, -jnp.array([0.1, 0.2]) * model.energy(s), rtol=1e-6)


def test_binarized_digits_are_the_digits_thresholded_at_half_intensity():
    images, labels = datasets.binarized_digits()
    counts, _ = datasets.digits(scale=False)
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    np.testing.assert_array_equal(images, (np.asarray(counts) >= 8).astype(np.float32))


def test_ising_configurations_match_the_exact_4x4_law():
    """64 independent Swendsen-Wang draws of the 4x4 lattice at beta = 0.3 (ESS = 64): mean
    |m| and energy per site within 4 MCSE of enumeration; the same key gives the same draws."""
    model = Ising(4, beta=0.3)
    draws = datasets.ising_configurations(jax.random.key(8), 64, L=4, beta=0.3, num_sweeps=50)
    again = datasets.ising_configurations(jax.random.key(8), 64, L=4, beta=0.3, num_sweeps=50)
    np.testing.assert_array_equal(draws, again)
    statistic = lambda s: jnp.stack([jnp.abs(model.magnetization(s)), model.energy(s) / 16])
    truth = exact.expectation(model, statistic, (4, 4))
    assert_mean_close(jax.vmap(statistic)(draws)[None], np.asarray(truth))
    bits = datasets.ising_configurations(jax.random.key(8), 2, L=4, spins="01", num_sweeps=2)
    assert set(np.unique(bits)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="J > 0"):
        datasets.ising_configurations(jax.random.key(8), 2, L=4, J=-1.0)
