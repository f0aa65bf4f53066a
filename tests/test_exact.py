"""Exact log Z and expectations by enumeration, against closed forms and the transfer
matrix."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ebm.evidence import exact
from numpyro_ebm.models.ising import Ising, PairwiseBinary


def test_independent_sites_give_the_product_partition_function_in_both_encodings():
    fields = jnp.linspace(-1.5, 2.0, 7)
    model = PairwiseBinary(jnp.zeros((7, 7)), fields)
    expected_pm1 = float(jnp.sum(jnp.log(2 * jnp.cosh(fields))))
    assert float(exact.log_partition(model, (7,))) == pytest.approx(expected_pm1, rel=1e-6)
    bits = PairwiseBinary(jnp.zeros((7, 7)), fields, spins="01")
    expected_01 = float(jnp.sum(jnp.log1p(jnp.exp(fields))))
    assert float(exact.log_partition(bits, (7,), values=(0, 1))) == pytest.approx(
        expected_01, rel=1e-6
    )
    means = exact.expectation(bits, lambda x: x, (7,), values=(0, 1))
    np.testing.assert_allclose(means, jax.nn.sigmoid(fields), rtol=1e-5)


@pytest.mark.parametrize(("beta", "h"), [(0.2, 0.0), (0.4406867935, 0.0), (0.7, 0.3)])
def test_enumeration_matches_the_transfer_matrix_on_the_4x4_periodic_lattice(beta, h):
    model = Ising(4, beta=beta, h=h)
    log_z = float(exact.log_partition(model, (4, 4), chunk_size=16384))
    assert log_z == pytest.approx(exact.transfer_matrix_log_partition(4, 4, beta, h=h), rel=1e-6)


def test_chunking_does_not_change_the_result_even_when_it_does_not_divide_the_states():
    model = Ising(3, beta=0.5, h=0.1)
    reference = exact.transfer_matrix_log_partition(3, 3, 0.5, h=0.1)
    for chunk_size in (1, 100, 512, 10_000):
        assert float(exact.log_partition(model, (3, 3), chunk_size=chunk_size)) == pytest.approx(
            reference, rel=1e-6
        )


def test_expectations_of_a_pytree_statistic_and_a_known_derivative():
    """<E> = -d log Z / d beta, and the probabilities sum to 1."""
    beta, step = 0.5, 1e-3
    model = Ising(3, beta=beta)
    one, energy = exact.expectation(model, lambda s: (jnp.ones(()), model.energy(s)), (3, 3))
    log_z = [exact.transfer_matrix_log_partition(3, 3, beta + d) for d in (-step, step)]
    assert float(one) == pytest.approx(1.0, rel=1e-5)
    assert float(energy) == pytest.approx(-(log_z[1] - log_z[0]) / (2 * step), rel=1e-4)


def test_states_numbers_sites_by_bits_row_major():
    np.testing.assert_array_equal(
        exact.states(jnp.array([0, 1, 6]), (2, 2)),
        [[[-1, -1], [-1, -1]], [[1, -1], [-1, -1]], [[-1, 1], [1, -1]]],
    )


def test_transfer_matrix_handles_rectangles_and_fields():
    def energy_3x5(s):
        return -jnp.sum(s * (jnp.roll(s, -1, 0) + jnp.roll(s, -1, 1))) + 0.4 * jnp.sum(s)

    log_z = float(exact.log_partition(lambda s: -0.3 * energy_3x5(s), (3, 5)))
    assert log_z == pytest.approx(exact.transfer_matrix_log_partition(3, 5, 0.3, h=-0.4), rel=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: exact.log_partition(Ising(5), (5, 5)), ValueError, "shape=\\(5, 5\\) has 2\\^25"),
        (lambda: exact.expectation(Ising(5), jnp.sum, (21,)), ValueError, "2\\^21"),
        (lambda: exact.log_partition(Ising(2), (2, 2), values=(1, 1)), ValueError, "values"),
        (lambda: exact.log_partition(Ising(2), (2, 2), chunk_size=0), ValueError, "chunk_size"),
        (lambda: exact.log_partition(Ising(2), 4), TypeError, "shape must be a tuple"),
        (lambda: exact.transfer_matrix_log_partition(13, 4, 0.4), ValueError, "rows"),
        (lambda: exact.transfer_matrix_log_partition(4, 4, -0.4), ValueError, "beta"),
    ],
)
def test_bad_enumeration_requests_are_refused_before_anything_compiles(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_max_states_is_two_to_the_twenty():
    assert exact.MAX_STATES == 2**20 == math.prod((2,) * 20)
