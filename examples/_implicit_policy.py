r"""An implicit policy (Florence et al. 2021) shared by ``imitation_learning.py`` and
``gail.py``: an energy :math:`E_\theta(s, a)` on concatenated state-action pairs, trained by
persistent contrastive divergence (``ne.training.pcd``) on the joint
:math:`p_\theta(s, a) \propto e^{-E_\theta(s, a)}`, whose conditionals are the policy.

The negative chains' kernel alternates a local random-walk Metropolis step with an independent
Metropolis-Hastings step whose proposal is uniform on a box: both leave :math:`p_\theta`
invariant, and the global one moves chains between separated modes with the model's odds,
which local samplers alone do not (see ``imitation_learning.py``).
"""

from __future__ import annotations

import functools

import blackjax
import jax
import jax.numpy as jnp
import optax
from blackjax.base import SamplingAlgorithm
from flax import nnx

import numpyro_ebm as ne
from numpyro_ebm.training import objectives


def local_global_kernel(logdensity_fn, low, high, step: float = 0.1) -> SamplingAlgorithm:
    """One transition = a Gaussian random-walk Metropolis step (sd ``step``) followed by an
    independent Metropolis-Hastings step with a uniform proposal on the box
    ``[low, high]``. Both are BlackJAX kernels on the same ``RMHState`` and both leave the
    target invariant."""
    low, high = jnp.asarray(low), jnp.asarray(high)
    local = blackjax.normal_random_walk(logdensity_fn, step * jnp.ones(low.shape))
    uniform = lambda key: jax.random.uniform(key, low.shape, minval=low, maxval=high)
    jump = blackjax.irmh(logdensity_fn, uniform)

    def step_fn(key, state):
        key_local, key_jump = jax.random.split(key)
        state, _ = local.step(key_local, state)
        return jump.step(key_jump, state)

    return SamplingAlgorithm(local.init, step_fn)


def train_energy(
    pairs,
    key: jax.Array,
    *,
    low,
    high,
    hidden: tuple[int, ...],
    num_steps: int,
    chain_steps: int,
    buffer_size: int,
    batch_size: int = 128,
):
    """PCD on ``pairs`` (rows of concatenated ``(s, a)``) with the local/global kernel on the
    box ``[low, high]`` and a replay buffer of uniform-box noise, Adam with a cosine-decayed
    learning rate. Returns the energy ``E(pair)`` of one pair and ``fit``'s history."""
    key_init, key_fit = jax.random.split(key)
    net = ne.MLPEnergy((pairs.shape[1],), hidden=hidden, rngs=nnx.Rngs(params=key_init))
    apply, params = ne.as_pure(net)

    def noise(k, shape):
        return jax.random.uniform(k, shape, minval=low, maxval=high)

    objective = objectives.pcd(
        apply,
        k=chain_steps,
        alpha=0.01,
        kernel=functools.partial(local_global_kernel, low=low, high=high),
        noise=noise,
        capacity=buffer_size,
    )
    schedule = optax.cosine_decay_schedule(1e-3, num_steps, alpha=0.01)
    result = ne.fit(
        objective,
        params,
        pairs,
        key=key_fit,
        optimizer=optax.adam(schedule, b1=0.5),
        num_steps=num_steps,
        batch_size=batch_size,
        steps_per_chunk=min(250, num_steps),
        progress=False,
    )
    return functools.partial(apply, result.params), result.history
