"""Replica exchange: round trips counted walker by walker, and a ladder tuned to equal swap
rejection rates (Syed et al. 2021, Algorithm 4), checked against the closed form for a
Gaussian, whose optimal ladder is geometric."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_ebm.kernels import replica_exchange as rx

DIM = 2
NUM_REPLICAS = 6
MAX_TEMPERATURE = 100.0
STEPS_PER_ROUND = 2000
NUM_CHAINS = 16
NUM_STEPS = 2000


def gaussian_logdensity(x):
    return -0.5 * jnp.sum(x**2)


def factory(logdensity, temperature):
    return blackjax.mala(logdensity, 0.5 * temperature)


def swap(num_replicas, pair):
    """The permutation that swaps temperatures ``pair`` and ``pair + 1``."""
    permutation = np.arange(num_replicas)
    permutation[[pair, pair + 1]] = [pair + 1, pair]
    return jnp.asarray(permutation)


def test_round_trips_are_counted_on_a_hand_made_sequence_of_swaps():
    """Three temperatures, walkers a, b, c start at T0, T1, T2. Walker a climbs to T2 and
    back (swaps 1-5), b goes T1 -> T0 -> T2 -> T0 (swaps 1, 4, 7): two round trips, at swaps
    5 and 7. c starts hot and reaches T0 (swap 3) before it was ever cold: no round trip, the
    start of one."""
    walkers, direction = jnp.arange(3), jnp.asarray([rx.UP, rx.UNSEEN, rx.UNSEEN])
    counted = []
    for pair in (0, 1, 0, 1, 0, 1, 0):
        walkers, direction, completed = rx.track_round_trips(walkers, direction, swap(3, pair))
        counted.append(int(completed))
    # after the swaps: (b a c) (b c a) (c b a) (c a b) (a c b) (a b c) (b a c)
    assert counted == [0, 0, 0, 0, 1, 0, 1]
    np.testing.assert_array_equal(walkers, [1, 0, 2])
    # a and b were last at the cold end, heading hot; c was cold, then hot: heading cold
    np.testing.assert_array_equal(direction, [rx.UP, rx.UP, rx.DOWN])
    # no move, no count, no change
    same = rx.track_round_trips(walkers, direction, jnp.arange(3))
    assert int(same[2]) == 0 and np.array_equal(same[1], direction)


def test_the_kernel_counts_round_trips_of_its_own_swaps():
    """The state's running count equals the sum of the per-step counts and a replay of the
    recorded swaps through ``track_round_trips``."""
    temperatures = rx.geometric_ladder(4, 10.0)
    kernel = rx.build_kernel(factory)
    state = rx.init(jnp.zeros((4, DIM)), gaussian_logdensity, temperatures, factory)

    def body(state, key):
        state, info = kernel(key, state, gaussian_logdensity, temperatures)
        return state, (info.is_swapped, info.round_trips)

    final, (swapped, trips) = jax.jit(lambda s, k: jax.lax.scan(body, s, k))(
        state, jax.random.split(jax.random.key(0), 400)
    )
    walkers, direction, total = jnp.arange(4), jnp.asarray([rx.UP] + [rx.UNSEEN] * 3), 0
    track = jax.jit(rx.track_round_trips)
    for row in np.asarray(swapped):
        permutation = np.arange(4)
        for pair in np.flatnonzero(row):
            permutation[[pair, pair + 1]] = [pair + 1, pair]
        walkers, direction, completed = track(walkers, direction, jnp.asarray(permutation))
        total += int(completed)
    assert total == int(final.round_trips) == int(trips.sum()) > 0
    np.testing.assert_array_equal(final.walkers, walkers)


def test_the_barrier_and_the_tuned_ladder_by_hand():
    """Rejections (0.6, 0.2, 0.2) on betas (1, 1/2, 1/4, 1/8): the cumulative barrier is
    (0, 0.6, 0.8, 1.0); its thirds 1/3 and 2/3 fall at betas interpolated linearly."""
    temperatures = jnp.asarray([1.0, 2.0, 4.0, 8.0])
    barrier = rx.communication_barrier(jnp.asarray([0.6, 0.2, 0.2]), temperatures)
    np.testing.assert_allclose(barrier, [0.0, 0.6, 0.8, 1.0], rtol=1e-6)
    tuned = rx.tune_ladder(jnp.asarray([0.6, 0.2, 0.2]), temperatures)
    beta_1 = 1.0 + (1 / 3) / 0.6 * (0.5 - 1.0)
    beta_2 = 0.5 + (2 / 3 - 0.6) / 0.2 * (0.25 - 0.5)
    np.testing.assert_allclose(tuned, 1 / np.array([1.0, beta_1, beta_2, 0.125]), rtol=1e-5)
    # equal rates leave the ladder where it is
    np.testing.assert_allclose(rx.tune_ladder(jnp.full(3, 0.3), temperatures), temperatures)
    with pytest.raises(ValueError, match=r"rejection_rates must have shape \(K - 1,\) = \(3,\)"):
        rx.communication_barrier(jnp.ones(4), temperatures)


def _swap_statistics(temperatures, key):
    """Per-pair mean swap rejection, its standard error over independent chains, and round
    trips per step, from ``NUM_CHAINS`` chains of ``NUM_STEPS`` steps."""
    kernel = rx.build_kernel(factory)

    def one_chain(key):
        state = rx.init(jnp.zeros((NUM_REPLICAS, DIM)), gaussian_logdensity, temperatures, factory)

        def body(state, key):
            state, info = kernel(key, state, gaussian_logdensity, temperatures)
            return state, info.swap_acceptance

        state, acceptance = jax.lax.scan(body, state, jax.random.split(key, NUM_STEPS))
        return 1.0 - jnp.nanmean(acceptance, axis=0), state.round_trips

    rejection, trips = jax.jit(jax.vmap(one_chain))(jax.random.split(key, NUM_CHAINS))
    rejection, trips = np.asarray(rejection), np.asarray(trips, float) / NUM_STEPS
    root = np.sqrt(NUM_CHAINS)
    rejection_se, trips_se = rejection.std(0, ddof=1) / root, trips.std(ddof=1) / root
    return rejection.mean(0), rejection_se, trips.mean(), trips_se


@pytest.mark.slow
def test_an_adapted_ladder_is_geometric_on_a_gaussian_and_equalizes_the_swaps():
    r"""For :math:`p = \mathcal{N}(0, I)` the local barrier is :math:`\lambda(\beta) \propto
    1/\beta` (the energy under :math:`\pi_\beta` is :math:`\chi^2_d / 2\beta`), so the optimal
    ladder is geometric. Started from a ladder linear in T, which crowds the hot end,
    ``adapt_ladder`` must find it, equalize the rejection rates, and raise the round-trip
    rate."""
    linear = jnp.linspace(1.0, MAX_TEMPERATURE, NUM_REPLICAS)
    state = rx.init(jnp.zeros((NUM_REPLICAS, DIM)), gaussian_logdensity, linear, factory)
    adapt = jax.jit(
        lambda key, state: rx.adapt_ladder(
            key, state, gaussian_logdensity, factory, linear, 4, STEPS_PER_ROUND
        )
    )
    state, tuned = adapt(jax.random.key(1), state)
    geometric = np.asarray(rx.geometric_ladder(NUM_REPLICAS, MAX_TEMPERATURE))
    assert tuned[0] == 1.0 and tuned[-1] == pytest.approx(MAX_TEMPERATURE)
    # the rates are estimated from one chain's last round: sd of a rate ~ sqrt(r(1-r)/n)
    before, _, trips_before, trips_before_se = _swap_statistics(linear, jax.random.key(2))
    after, after_se, trips_after, trips_after_se = _swap_statistics(tuned, jax.random.key(3))
    tuning_se = np.sqrt(after.mean() * (1 - after.mean()) / (STEPS_PER_ROUND / 2))
    spread = np.abs(after - after.mean())
    assert np.all(spread < 4 * np.hypot(after_se, tuning_se)), (after, after_se, tuning_se)
    assert np.ptp(before) > 10 * np.ptp(after)
    np.testing.assert_allclose(np.log(tuned), np.log(geometric), atol=0.15)
    z = (trips_after - trips_before) / np.hypot(trips_after_se, trips_before_se)
    assert z > 4, (trips_before, trips_after, z)
