r"""GAIL against behaviour cloning and energy-based imitation on a two-goal point mass.

**The task** (pure JAX, rollouts by ``jax.lax.scan`` over many episodes at once): a point mass
:math:`s \in \mathbb{R}^2` starts at the origin in every episode and moves by velocities,
:math:`s_{t+1} = s_t + \Delta t\, \mathrm{clip}(a_t)` with :math:`\Delta t = 0.1` and the
action's norm clipped to 1, for :math:`T = 20` steps. Two goals sit at :math:`g_\pm = (\pm 1,
1)`; the return is 1 when the episode ends within 0.2 of either goal, 0 otherwise. The expert
picks a goal by its own coin (the demonstrations hold 100 episodes to each goal) and steers to
it, :math:`a = \mathrm{clip}(3 (g - s) + \eta)`, :math:`\eta \sim \mathcal{N}(0, 0.1^2 I)`,
at full speed from its first step. The start carries no information on the goal: from the same
state the expert goes either way, so the conditional mean of its first action points straight
up, between the goals, and the horizon leaves little time to spare (the expert is within 0.2 of
its goal after about 13 of the 20 steps).

**Behaviour cloning** regresses :math:`a` on :math:`s` by mean-squared error (an MLP, optax
through ``ne.fit`` with ``ne.training.from_loss``) and acts by its mean, so all its episodes
are the same.

**GAIL** (Ho & Ermon 2016) solves :math:`\min_\pi \max_D \mathbb{E}_{\rho_E}[\log D(s, a)] +
\mathbb{E}_{\rho_\pi}[\log(1 - D(s, a))]`, which at the optimal discriminator is
:math:`2\,\mathrm{JS}(\rho_E \| \rho_\pi) - \log 4` for the occupancy measures
:math:`\rho`. *The discriminator is an energy*: :math:`D(s, a) = \sigma(-E_\phi(s, a))` with
:math:`E_\phi` an ``ne.MLPEnergy`` on the concatenated pair, so low energy means expert-like;
it is trained by the logistic loss :math:`\mathbb{E}_E[\mathrm{softplus}(E)] +
\mathbb{E}_\pi[\mathrm{softplus}(-E)]` plus the R1 gradient penalty (Mescheder et al. 2018)
:math:`\tfrac{1}{2}\mathbb{E}_E \|\nabla_{(s,a)} E_\phi\|^2`, one Adam step per iteration. The
policy is a Gaussian whose MLP outputs both the mean (:math:`\tanh`) and a *state-dependent*
log-std, so it can be wide at the start, where it must pick a side at random, and narrow
later; it is evaluated stochastically, as it was trained. It is trained by PPO-clip (Schulman
et al. 2017) with generalized advantage estimation (Schulman et al. 2016, :math:`\gamma =
0.99`, :math:`\lambda = 0.95`), a value baseline :math:`V(s, t)`, a small entropy bonus, four
epochs of four minibatches per batch of 128 episodes, 1500 iterations, both learning rates
cosine-decayed from 1e-3. The reward is :math:`r = -\log(1 - D) = \mathrm{softplus}(-E_\phi)`
(Ho & Ermon's form): it is bounded below, and with a fixed horizon its positive sign biases no
episode length. The AIRL-style :math:`\log D - \log(1 - D) = -E_\phi` (Fu et al. 2018)
failed in every setting tried.

**Energy-based imitation** (implicit behavioural cloning, Florence et al. 2021) is
``imitation_learning.py``'s learner (the shared ``_implicit_policy``): an energy
:math:`E_\theta(s, a)` trained by ``ne.training.pcd`` on the joint, with a BlackJAX kernel
mixing a random-walk step and an independent uniform proposal on the state-action box. It acts
in closed loop by sampling :math:`p_\theta(a \mid s_t) \propto e^{-E_\theta(s_t, a)}` for all
episodes at once: a few steps of the same local/global kernel on the action alone (vmapped over
episodes), started from each episode's previous action (uniform at the first step), so that an
episode keeps the mode it picked unless the model's odds say otherwise.

Full run, seed 0 (2 shared CPU cores, 2026-12-06): see ``docs/examples/gail.md`` for the
figures; it printed (1000 evaluation episodes per learner, mean return +- standard error,
shares of episodes ending at the left / right goal):

- expert 1.000 +- 0.000 (left 0.484, right 0.516);
- behaviour cloning 0.000 +- 0.000 (0, 0): it heads straight up between the goals, drifts
  right late and ends at (0.54, 1.00), near neither;
- GAIL 0.984 +- 0.004 (0.454, 0.530);
- energy-based imitation 0.991 +- 0.003 (0.500, 0.491);

in 37 s wall. **Both goals of the issue are met** in this run: GAIL's return is at least 0.9
of the expert's, and behaviour cloning's is below GAIL's. GAIL is sensitive to its settings
and seed, though: with these settings four of five training seeds reach the 0.9 bar (one of
them on a single goal) and one fails (0.047); a rule that skipped the discriminator's step
when it was winning, constant learning rates of 3e-4 and the AIRL reward all failed in the runs
tried. See ``docs/examples/gail.md`` for the search.

Writes ``trajectories.png``, ``training.png`` and ``metrics.json`` to ``--out``.

Run: ``python examples/gail.py [--smoke] [--out DIR] [--seed N]``.

References
----------
J. Ho and S. Ermon (2016). Generative adversarial imitation learning. NeurIPS.
P. Florence, C. Lynch, A. Zeng, O. Ramirez, A. Wahid, L. Downs, A. Wong, J. Lee, I. Mordatch
and J. Tompson (2021). Implicit behavioral cloning. CoRL.
L. Mescheder, A. Geiger and S. Nowozin (2018). Which training methods for GANs do actually
converge? ICML.
J. Fu, K. Luo and S. Levine (2018). Learning robust rewards with adversarial inverse
reinforcement learning. ICLR.
J. Schulman, P. Moritz, S. Levine, M. Jordan and P. Abbeel (2016). High-dimensional continuous
control using generalized advantage estimation. ICLR.
J. Schulman, F. Wolski, P. Dhariwal, A. Radford and O. Klimov (2017). Proximal policy
optimization algorithms. arXiv:1707.06347.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # first: XLA flags for --smoke and the Agg canvas, before JAX and pyplot

# isort: split

import _implicit_policy

# isort: split

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import numpyro_ebm as ne

NAME = "gail"
DT = 0.1
HORIZON = 20
MAX_SPEED = 1.0
GOALS = np.array([[-1.0, 1.0], [1.0, 1.0]], np.float32)
RADIUS = 0.2  # an episode succeeds when it ends this close to a goal
EXPERT_GAIN = 3.0
EXPERT_NOISE = 0.1
STATE_LOW, STATE_HIGH = [-1.4, -0.4], [1.4, 1.4]  # the box of the EBM's uniform proposals
ACTION_LOW, ACTION_HIGH = [-1.1, -1.1], [1.1, 1.1]
LEARNERS = ("expert", "bc", "gail", "ebm_il")
# GAIL
POLICY_LR, DISC_LR = 1e-3, 1e-3  # Adam learning rates (cosine-decayed)
INITIAL_STD = 0.5  # the policy's initial noise, everywhere
LOG_STD_RANGE = (np.log(0.02), np.log(1.5))  # the policy's state-dependent log-std lies here
PPO_CLIP = 0.2
GAMMA, GAE_LAMBDA = 0.99, 0.95
VALUE_COEF = 0.5
ENTROPY_COEF = 1e-3
R1_WEIGHT = 1.0  # the R1 gradient penalty (Mescheder et al. 2018) on the discriminator
REWARD_CLIP = 10.0
LR_FINAL_FRACTION = 0.05  # both learning rates decay (cosine) to this fraction


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below."""

    demo_episodes: int
    hidden: tuple[int, ...]
    bc_steps: int
    gail_iterations: int
    gail_episodes: int
    disc_steps: int
    policy_epochs: int
    minibatches: int
    pcd_steps: int
    chain_steps: int
    buffer_size: int
    act_steps: int  # kernel steps per action of the EBM policy
    eval_episodes: int


FULL = Config(
    demo_episodes=200,
    hidden=(64, 64),
    bc_steps=3000,
    gail_iterations=1500,
    gail_episodes=128,
    disc_steps=1,
    policy_epochs=4,
    minibatches=4,
    pcd_steps=3000,
    chain_steps=10,
    buffer_size=2000,
    act_steps=10,
    eval_episodes=1000,
)
SMOKE = Config(
    demo_episodes=20,
    hidden=(16, 16),
    bc_steps=50,
    gail_iterations=20,
    gail_episodes=32,
    disc_steps=1,
    policy_epochs=2,
    minibatches=2,
    pcd_steps=50,
    chain_steps=3,
    buffer_size=256,
    act_steps=2,
    eval_episodes=50,
)


# --------------------------------------------------------------------------------------------
# the task


def clip_norm(a):
    """Actions with their norm clipped to ``MAX_SPEED``."""
    norm = jnp.linalg.norm(a, axis=-1, keepdims=True)
    return a * jnp.minimum(1.0, MAX_SPEED / jnp.maximum(norm, 1e-8))


def rollout(act, key: jax.Array, n: int, policy_state=None):
    """``n`` episodes at once. ``act(key, s, policy_state) -> (a, policy_state)`` on the
    batch of states ``s (n, 2)``. Returns the states ``(T, n, 2)`` the actions were taken in,
    the actions as drawn ``(T, n, 2)`` (executed with their norm clipped) and the final
    states ``(n, 2)``."""
    start = jnp.zeros((n, 2))  # every episode starts at the origin: no hint of the goal

    def step(carry, k):
        s, p = carry
        a, p = act(k, s, p)
        return (s + DT * clip_norm(a), p), (s, a)

    (final, _), (states, actions) = jax.lax.scan(
        step, (start, policy_state), jax.random.split(key, HORIZON)
    )
    return states, actions, final


def outcome(final):
    """The return (1 within ``RADIUS`` of a goal) and which goal is nearest, per episode."""
    distances = jnp.linalg.norm(final[:, None, :] - jnp.asarray(GOALS), axis=-1)
    return (distances.min(axis=1) < RADIUS).astype(jnp.float32), distances.argmin(axis=1)


def expert(goals):
    """The expert's ``act`` for episodes steering to ``goals (n, 2)``."""

    def act(key, s, p):
        noise = EXPERT_NOISE * jax.random.normal(key, s.shape)
        return clip_norm(EXPERT_GAIN * (goals - s) + noise), p

    return act


def demonstrations(key: jax.Array, n: int):
    """The pairs ``(s, a)`` of ``n`` expert episodes, half to each goal (the goal is the
    expert's own choice, independent of the start, which is the same in every episode)."""
    goals = jnp.asarray(GOALS)[jnp.arange(n) % 2]
    states, actions, _ = rollout(expert(goals), key, n)
    return states.reshape(-1, 2), clip_norm(actions).reshape(-1, 2)


# --------------------------------------------------------------------------------------------
# the learners


class MeanNet(nnx.Module):
    """An MLP :math:`s \\mapsto` ``MAX_SPEED * tanh(...)`` in :math:`\\mathbb{R}^2`."""

    def __init__(self, hidden, rngs: nnx.Rngs):
        sizes = [2, *hidden, 2]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, s):
        for layer in self.layers[:-1]:
            s = nnx.silu(layer(s))
        return MAX_SPEED * jnp.tanh(self.layers[-1](s))


def train_bc(demos, key: jax.Array, config: Config):
    """Behaviour cloning: the mean-squared-error regression of ``a`` on ``s``, by ``ne.fit``.
    Returns the deterministic ``act`` and the final loss."""
    key_init, key_fit = jax.random.split(key)
    apply, params = ne.as_pure(MeanNet(config.hidden, nnx.Rngs(params=key_init)))

    def loss(p, batch, key):
        s, a = batch
        return jnp.mean(jnp.sum((apply(p, s) - a) ** 2, axis=-1)), {}

    result = ne.fit(
        ne.training.from_loss(loss, name="behaviour_cloning"),
        params,
        demos,
        key=key_fit,
        optimizer=optax.adam(1e-3),
        num_steps=config.bc_steps,
        batch_size=256,
        steps_per_chunk=min(500, config.bc_steps),
        progress=False,
    )
    params = result.params
    return (lambda key, s, p: (apply(params, s), p)), float(result.history["loss"][-1])


class PolicyNet(nnx.Module):
    """GAIL's Gaussian policy: one MLP on the state whose four outputs are the mean (through
    ``MAX_SPEED * tanh``) and the log-std (squashed into ``LOG_STD_RANGE``), so that the noise
    can be wide where the expert's actions are spread (at the start) and narrow elsewhere."""

    def __init__(self, hidden, rngs: nnx.Rngs):
        sizes = [2, *hidden, 4]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, s):
        for layer in self.layers[:-1]:
            s = nnx.silu(layer(s))
        out = self.layers[-1](s)
        low, high = LOG_STD_RANGE
        offset = np.log((np.log(INITIAL_STD) - low) / (high - np.log(INITIAL_STD)))
        log_std = low + (high - low) * jax.nn.sigmoid(out[..., 2:] + offset)
        return MAX_SPEED * jnp.tanh(out[..., :2]), log_std


class ValueNet(nnx.Module):
    """The PPO baseline :math:`V(s, t)`: an MLP on the state and the fraction of the horizon
    left (the horizon is fixed, so the value depends on the time)."""

    def __init__(self, hidden, rngs: nnx.Rngs):
        sizes = [3, *hidden, 1]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = nnx.silu(layer(x))
        return self.layers[-1](x)[..., 0]


def train_gail(demos, key: jax.Array, config: Config):
    """GAIL with the discriminator ``D = sigmoid(-E)``, ``E`` an ``ne.MLPEnergy`` on
    ``(s, a)`` with an R1 penalty, and a PPO Gaussian policy (state-dependent std, GAE, value
    baseline) rewarded by ``log D - log(1 - D) = -E``. Returns the stochastic ``act``, the
    energy ``E(pairs)`` and the per-iteration history."""
    key_policy, key_value, key_disc, key_train = jax.random.split(key, 4)
    policy_apply, policy_params = ne.as_pure(PolicyNet(config.hidden, nnx.Rngs(key_policy)))
    value_apply, value_params = ne.as_pure(ValueNet(config.hidden, nnx.Rngs(key_value)))
    disc = ne.MLPEnergy((4,), hidden=config.hidden, rngs=nnx.Rngs(params=key_disc))
    energy_apply, disc_params = ne.as_pure(disc)
    agent_params = {"policy": policy_params, "value": value_params}
    expert_pairs = jnp.concatenate(demos, axis=1)
    agent_steps = config.gail_iterations * config.policy_epochs * config.minibatches
    decay = lambda lr, steps: optax.cosine_decay_schedule(lr, steps, alpha=LR_FINAL_FRACTION)
    agent_opt = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(decay(POLICY_LR, agent_steps))
    )
    disc_opt = optax.adam(decay(DISC_LR, config.gail_iterations * config.disc_steps), b1=0.5)
    n = config.gail_episodes
    times = jnp.broadcast_to((1.0 - jnp.arange(HORIZON) / HORIZON)[:, None, None], (HORIZON, n, 1))

    def act_with(params):
        def act(key, s, p):
            mean, log_std = policy_apply(params, s)
            return mean + jnp.exp(log_std) * jax.random.normal(key, s.shape), p

        return act

    def disc_loss(params, expert_batch, policy_batch):
        e_expert, e_policy = energy_apply(params, expert_batch), energy_apply(params, policy_batch)
        loss = jnp.mean(jax.nn.softplus(e_expert)) + jnp.mean(jax.nn.softplus(-e_policy))
        # R1: the squared gradient of the logit at the expert's pairs
        grads = jax.vmap(jax.grad(lambda x: energy_apply(params, x)))(expert_batch)
        penalty = 0.5 * R1_WEIGHT * jnp.mean(jnp.sum(grads**2, axis=-1))
        accuracy = 0.5 * (jnp.mean(e_expert < 0) + jnp.mean(e_policy > 0))
        return loss + penalty, accuracy

    def log_prob(params, states, actions):
        mean, log_std = policy_apply(params, states)
        z = (actions - mean) / jnp.exp(log_std)
        return jnp.sum(-0.5 * z**2 - log_std, axis=-1), jnp.sum(log_std, axis=-1)

    def agent_loss(params, batch):
        states, times, actions, advantages, targets, old_log_prob = batch
        new_log_prob, entropy = log_prob(params["policy"], states, actions)
        ratio = jnp.exp(new_log_prob - old_log_prob)
        clipped = jnp.clip(ratio, 1.0 - PPO_CLIP, 1.0 + PPO_CLIP)
        surrogate = jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))
        values = value_apply(params["value"], jnp.concatenate([states, times], axis=-1))
        value_loss = jnp.mean((values - targets) ** 2)
        return -surrogate + VALUE_COEF * value_loss - ENTROPY_COEF * jnp.mean(entropy)

    def gae(rewards, values):
        """Generalized advantage estimates (Schulman et al. 2016) over the fixed horizon."""
        next_values = jnp.concatenate([values[1:], jnp.zeros_like(values[:1])])
        deltas = rewards + GAMMA * next_values - values

        def back(carry, delta):
            carry = delta + GAMMA * GAE_LAMBDA * carry
            return carry, carry

        _, advantages = jax.lax.scan(back, jnp.zeros_like(deltas[0]), deltas, reverse=True)
        return advantages, advantages + values

    def iteration(carry, key):
        agent_params, agent_state, disc_params, disc_state = carry
        key_run, key_disc, key_shuffle = jax.random.split(key, 3)
        states, actions, final = rollout(act_with(agent_params["policy"]), key_run, n)
        policy_pairs = jnp.concatenate([states, clip_norm(actions)], axis=-1)

        def disc_step(c, k):
            params, state = c
            index = jax.random.randint(k, (HORIZON * n,), 0, expert_pairs.shape[0])
            (_, accuracy), grad = jax.value_and_grad(disc_loss, has_aux=True)(
                params, expert_pairs[index], policy_pairs.reshape(-1, 4)
            )
            updates, state = disc_opt.update(grad, state, params)
            return (optax.apply_updates(params, updates), state), accuracy

        (disc_params, disc_state), accuracies = jax.lax.scan(
            disc_step, (disc_params, disc_state), jax.random.split(key_disc, config.disc_steps)
        )
        energies = energy_apply(disc_params, policy_pairs)
        # the reward -log(1 - D) = softplus(-E), clipped
        rewards = jnp.clip(jax.nn.softplus(-energies), -REWARD_CLIP, REWARD_CLIP)  # (T, n)
        state_times = jnp.concatenate([states, times], axis=-1)
        values = value_apply(agent_params["value"], state_times)
        advantages, targets = gae(rewards, values)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        old_log_prob, _ = log_prob(agent_params["policy"], states, actions)
        flat = [x.reshape(HORIZON * n, -1) for x in (states, times, actions)]
        flat += [x.reshape(-1) for x in (advantages, targets, old_log_prob)]
        size = HORIZON * n // config.minibatches

        def epoch(c, k):
            order = jax.random.permutation(k, HORIZON * n)[: size * config.minibatches]
            batches = [x[order].reshape(config.minibatches, size, *x.shape[1:]) for x in flat]

            def minibatch(c, batch):
                params, state = c
                grad = jax.grad(agent_loss)(params, batch)
                updates, state = agent_opt.update(grad, state, params)
                return (optax.apply_updates(params, updates), state), None

            return jax.lax.scan(minibatch, c, batches)[0], None

        (agent_params, agent_state), _ = jax.lax.scan(
            epoch, (agent_params, agent_state), jax.random.split(key_shuffle, config.policy_epochs)
        )
        returns, _ = outcome(final)
        _, log_std_start = policy_apply(agent_params["policy"], jnp.zeros(2))
        _, log_std_batch = policy_apply(agent_params["policy"], states[HORIZON // 2])
        record = {
            "return": returns.mean(),
            "disc_accuracy": accuracies[0],
            "mean_reward": rewards.mean(),
            "std_start": jnp.exp(log_std_start).mean(),
            "std_later": jnp.exp(log_std_batch).mean(),
        }
        return (agent_params, agent_state, disc_params, disc_state), record

    @jax.jit
    def train(agent_params, disc_params, key):
        carry = (agent_params, agent_opt.init(agent_params), disc_params)
        carry = (*carry, disc_opt.init(disc_params))
        keys = jax.random.split(key, config.gail_iterations)
        return jax.lax.scan(iteration, carry, keys)

    (agent_params, _, disc_params, _), history = train(agent_params, disc_params, key_train)
    history = {k: np.asarray(v) for k, v in history.items()}
    return act_with(agent_params["policy"]), (lambda x: energy_apply(disc_params, x)), history


def train_ebm_il(demos, key: jax.Array, config: Config):
    """The implicit policy: a joint energy on ``(s, a)`` by PCD (``_implicit_policy``). Acts by
    ``act_steps`` local/global kernel steps on :math:`p_\\theta(a \\mid s)` per episode,
    started from the episode's previous action. Returns ``act`` (its ``policy_state`` is the
    previous actions: pass uniform draws on the action box to start) and the final loss."""
    energy, history = _implicit_policy.train_energy(
        jnp.concatenate(demos, axis=1),
        key,
        low=np.array(STATE_LOW + ACTION_LOW, np.float32),
        high=np.array(STATE_HIGH + ACTION_HIGH, np.float32),
        hidden=config.hidden,
        num_steps=config.pcd_steps,
        chain_steps=config.chain_steps,
        buffer_size=config.buffer_size,
    )
    low, high = jnp.asarray(ACTION_LOW), jnp.asarray(ACTION_HIGH)

    def one(key, s, previous):
        kernel = _implicit_policy.local_global_kernel(
            lambda a: -energy(jnp.concatenate([s, a])), low, high
        )

        def body(state, k):
            state, _ = kernel.step(k, state)
            return state, None

        state, _ = jax.lax.scan(
            body, kernel.init(previous), jax.random.split(key, config.act_steps)
        )
        return state.position

    def act(key, s, previous):
        a = jax.vmap(one)(jax.random.split(key, s.shape[0]), s, previous)
        return a, a

    return act, float(history["loss"][-1])


# --------------------------------------------------------------------------------------------
# evaluation, figures


def evaluate(act, key: jax.Array, n: int, policy_state=None):
    """Mean return, its standard error, the shares of episodes ending at each goal, and the
    trajectories (``(n, T + 1, 2)``)."""
    states, _, final = jax.jit(lambda k, p: rollout(act, k, n, p))(key, policy_state)
    returns, nearest = outcome(final)
    returns, nearest = np.asarray(returns), np.asarray(nearest)
    paths = np.concatenate([np.asarray(states), np.asarray(final)[None]], 0).transpose(1, 0, 2)
    return {
        "return": float(returns.mean()),
        "return_se": float(returns.std(ddof=1) / np.sqrt(n)),
        "left_share": float(np.mean((returns > 0) & (nearest == 0))),
        "right_share": float(np.mean((returns > 0) & (nearest == 1))),
    }, paths


def plot_trajectories(path, paths, results) -> None:
    titles = {
        "expert": "expert",
        "bc": "behaviour cloning",
        "gail": "GAIL",
        "ebm_il": "EBM imitation",
    }
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), sharey=True)
    for ax, name in zip(axes, LEARNERS, strict=True):
        for trajectory in paths[name][:60]:
            ax.plot(trajectory[:, 0], trajectory[:, 1], lw=0.7, alpha=0.6)
        for goal in GOALS:
            ax.add_patch(plt.Circle(goal, RADIUS, fill=False, color="k", lw=1.5))
        r = results[name]
        ax.set(
            title=(
                f"{titles[name]}: return {r['return']:.3f}\n"
                f"left {r['left_share']:.2f}, right {r['right_share']:.2f}"
            ),
            xlim=(-1.5, 1.5),
            ylim=(-0.3, 1.5),
            aspect="equal",
            xlabel="x",
        )
    axes[0].set_ylabel("y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(path, history, expert_return) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    steps = np.arange(1, len(history["return"]) + 1)
    axes[0].plot(steps, history["return"], lw=0.8, label="GAIL (training batch)")
    axes[0].axhline(expert_return, color="k", ls="--", lw=1, label="expert")
    axes[0].axhline(0.9 * expert_return, color="gray", ls=":", lw=1, label="0.9 x expert")
    axes[0].set(title="task return", xlabel="iteration", ylim=(-0.02, 1.05))
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, history["disc_accuracy"], lw=0.8)
    axes[1].axhline(0.5, color="gray", ls=":", lw=1)
    axes[1].set(title="discriminator accuracy (expert vs policy)", xlabel="iteration")
    label = "mean reward softplus(-E)"
    axes[2].plot(steps, history["mean_reward"], lw=0.8, label=label)
    axes[2].plot(steps, history["std_start"], lw=0.8, label="policy std at the start")
    axes[2].plot(steps, history["std_later"], lw=0.8, label=f"policy std at t = {HORIZON // 2}")
    axes[2].set(title="reward and policy noise", xlabel="iteration")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    keys = jax.random.split(jax.random.key(args.seed), 8)
    demos = demonstrations(keys[0], config.demo_episodes)
    seconds = {}

    started = time.perf_counter()
    bc_act, bc_loss = train_bc(demos, keys[1], config)
    seconds["bc"] = time.perf_counter() - started
    started = time.perf_counter()
    gail_act, _, history = train_gail(demos, keys[2], config)
    seconds["gail"] = time.perf_counter() - started
    started = time.perf_counter()
    ebm_act, ebm_loss = train_ebm_il(demos, keys[3], config)
    seconds["ebm_il"] = time.perf_counter() - started

    n = config.eval_episodes
    goals = jnp.asarray(GOALS)[jax.random.bernoulli(keys[4], 0.5, (n,)).astype(jnp.int32)]
    results, paths = {}, {}
    for name, act, key in [
        ("expert", expert(goals), keys[5]),
        ("bc", bc_act, keys[6]),
        ("gail", gail_act, keys[7]),
    ]:
        results[name], paths[name] = evaluate(act, key, n)
    started = time.perf_counter()
    start_actions = jax.random.uniform(
        keys[4], (n, 2), minval=jnp.asarray(ACTION_LOW), maxval=jnp.asarray(ACTION_HIGH)
    )
    results["ebm_il"], paths["ebm_il"] = evaluate(ebm_act, keys[5], n, start_actions)
    seconds["ebm_il_acting"] = time.perf_counter() - started

    expert_return = results["expert"]["return"]
    metrics = {f"{name}_{k}": v for name in LEARNERS for k, v in results[name].items()}
    metrics |= {
        "gail_goal_met": bool(results["gail"]["return"] >= 0.9 * expert_return),
        "bc_below_gail": bool(results["bc"]["return"] < results["gail"]["return"]),
        "bc_final_state_mean": paths["bc"][:, -1].mean(axis=0).tolist(),
        "gail_final_disc_accuracy": float(history["disc_accuracy"][-10:].mean()),
        "gail_final_policy_std_start": float(history["std_start"][-1]),
        "gail_final_policy_std_later": float(history["std_later"][-1]),
        "bc_loss": bc_loss,
        "ebm_il_loss": ebm_loss,
        "eval_episodes": n,
        "num_demo_pairs": int(demos[0].shape[0]),
        "seconds": seconds,
    }
    plot_trajectories(args.out / "trajectories.png", paths, results)
    plot_training(args.out / "training.png", history, expert_return)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(f"gail ({'smoke' if args.smoke else 'full'} size)")
    print(
        f"  {metrics['num_demo_pairs']} expert pairs; trained BC in {seconds['bc']:.1f} s, "
        f"GAIL ({config.gail_iterations} iterations) in {seconds['gail']:.1f} s, EBM (PCD, "
        f"{config.pcd_steps} steps) in {seconds['ebm_il']:.1f} s; EBM acting "
        f"{seconds['ebm_il_acting']:.1f} s"
    )
    print(f"  {n} evaluation episodes: return +- se, share ending at the left / right goal")
    for name in LEARNERS:
        r = results[name]
        print(
            f"    {name:7s} {r['return']:.3f} +- {r['return_se']:.3f}   "
            f"left {r['left_share']:.3f}  right {r['right_share']:.3f}"
        )
    print(
        f"  goals: gail >= 0.9 x expert: {metrics['gail_goal_met']}; "
        f"bc < gail: {metrics['bc_below_gail']}"
    )
    print(
        f"  GAIL's last discriminator accuracy {metrics['gail_final_disc_accuracy']:.3f}, "
        f"policy std at the start {metrics['gail_final_policy_std_start']:.3f}, at t = "
        f"{HORIZON // 2} {metrics['gail_final_policy_std_later']:.3f}; BC ends at "
        f"{np.round(metrics['bc_final_state_mean'], 3).tolist()} on average"
    )
    return metrics


if __name__ == "__main__":
    main()
