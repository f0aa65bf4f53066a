r"""Energy-based imitation learning (implicit behavioural cloning) on a bimodal expert.

An expert acts in a 1-D state :math:`s \in [-1, 1]` with a 1-D action, going around an
obstacle on either side with equal probability:

.. math::

    a = \pm f(s) + \eta, \qquad f(s) = 0.6 + 0.4 \sin(\pi s), \qquad
    \eta \sim \mathcal{N}(0, 0.05^2).

An explicit policy fit by mean-squared error (an MLP trained with optax) predicts the
conditional mean :math:`\mathbb{E}[a \mid s] = 0`: an action the expert never takes, straight
into the obstacle. An *implicit* policy (Florence et al. 2021) instead learns an energy
:math:`E_\theta(s, a)` (an :class:`numpyro_ebm.MLPEnergy` on the concatenated pair) and acts
by sampling :math:`p_\theta(a \mid s) \propto e^{-E_\theta(s, a)}`, which keeps both modes.

**Training** is persistent contrastive divergence (``ne.training.pcd``; Tieleman 2008, Du &
Mordatch 2019) on the joint :math:`p_\theta(s, a) \propto e^{-E_\theta(s, a)}`, whose
conditionals are the policy. The two modes are separated by a gap of low density at every
state, which local samplers (Langevin, MALA, random walks) do not cross: with them the
negative chains keep whatever split between the modes they started with, the gradient
:math:`\mathbb{E}_{data}[\nabla_\theta E] - \mathbb{E}_{chains}[\nabla_\theta E]` carries no
information about the modes' relative weights, and the learned weights drift (we measured
8 % to 60 % of the mass on the upper mode across runs). The kernel of the negative chains here
therefore alternates a local random-walk Metropolis step with an independent Metropolis-Hastings
step whose proposal is uniform on the state-action box: both leave :math:`p_\theta` invariant,
and the global one moves chains between the modes with the model's odds. A cosine-decayed
learning rate lets the weights settle.

**Acting**: for a grid of test states the actions are drawn with ``ne.sample(...,
"parallel_tempering")`` (replica exchange over MALA replicas, which crosses the gap), on the
energy :math:`\sum_j E_\theta(s_j, a_j)` of all test states at once with each :math:`s_j`
closed over (the conditionals are independent, so this samples each one).

Prints the fraction of actions within 0.15 (three expert-noise sds) of an expert mode
:math:`\pm f(s)` for the EBM's samples and for the regression policy, and the EBM's split
between the modes (the expert's is 1/2). Writes ``imitation.png`` and ``metrics.json`` to
``--out``.

Run: ``python examples/imitation_learning.py [--smoke] [--out DIR] [--seed N]``.

References
----------
P. Florence, C. Lynch, A. Zeng, O. Ramirez, A. Wahid, L. Downs, A. Wong, J. Lee, I. Mordatch
and J. Tompson (2021). Implicit behavioral cloning. CoRL.
T. Tieleman (2008). Training restricted Boltzmann machines using approximations to the
likelihood gradient. ICML.
Y. Du and I. Mordatch (2019). Implicit generation and modeling with energy-based models.
NeurIPS.
"""

from __future__ import annotations

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

NAME = "imitation_learning"
NOISE_SD = 0.05  # the expert's action noise
TOLERANCE = 3 * NOISE_SD  # an action "follows the expert" within this distance of a mode
BOX_LOW = np.array([-1.2, -1.5], np.float32)  # the (s, a) box of the global proposals
BOX_HIGH = np.array([1.2, 1.5], np.float32)


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below."""

    num_demos: int
    hidden: tuple[int, ...]
    num_steps: int
    chain_steps: int
    buffer_size: int
    regression_steps: int
    num_test_states: int
    num_chains: int
    num_warmup: int
    num_samples: int
    num_replicas: int


FULL = Config(
    num_demos=2000,
    hidden=(128, 128),
    num_steps=6000,
    chain_steps=20,
    buffer_size=1000,
    regression_steps=3000,
    num_test_states=41,
    num_chains=8,
    num_warmup=500,
    num_samples=500,
    num_replicas=16,
)
SMOKE = Config(
    num_demos=500,
    hidden=(32, 32),
    num_steps=200,
    chain_steps=5,
    buffer_size=256,
    regression_steps=200,
    num_test_states=9,
    num_chains=2,
    num_warmup=30,
    num_samples=30,
    num_replicas=4,
)


def expert_mode(s):
    r""":math:`f(s) = 0.6 + 0.4 \sin(\pi s)`; the expert acts :math:`\pm f(s)`."""
    return 0.6 + 0.4 * jnp.sin(jnp.pi * s)


def demonstrations(key: jax.Array, n: int) -> jax.Array:
    """``n`` expert pairs ``(s, a)``: :math:`s \\sim \\mathcal{U}[-1, 1]`, a fair sign, noise."""
    key_s, key_sign, key_noise = jax.random.split(key, 3)
    s = jax.random.uniform(key_s, (n,), minval=-1.0, maxval=1.0)
    sign = jnp.where(jax.random.bernoulli(key_sign, 0.5, (n,)), 1.0, -1.0)
    a = sign * expert_mode(s) + NOISE_SD * jax.random.normal(key_noise, (n,))
    return jnp.stack([s, a], axis=1)


def train_energy(demos, key: jax.Array, config: Config):
    """PCD with the local/global kernel on the (s, a) box (``_implicit_policy``). Returns the
    energy ``E(sa)`` of one ``(s, a)`` pair and ``fit``'s history."""
    return _implicit_policy.train_energy(
        demos,
        key,
        low=BOX_LOW,
        high=BOX_HIGH,
        hidden=config.hidden,
        num_steps=config.num_steps,
        chain_steps=config.chain_steps,
        buffer_size=config.buffer_size,
    )


def train_regression(demos, key: jax.Array, config: Config):
    """An MLP policy :math:`\\hat a(s)` minimizing the mean-squared error, with optax."""
    net = ne.MLPEnergy((1,), hidden=config.hidden, rngs=nnx.Rngs(params=key))  # any MLP s -> R
    apply, params = ne.as_pure(net)
    s, a = demos[:, :1], demos[:, 1]
    optimizer = optax.adam(1e-3)

    def mse(p):
        return jnp.mean((jax.vmap(apply, (None, 0))(p, s) - a) ** 2)

    def step(carry, _):
        p, state = carry
        value, grad = jax.value_and_grad(mse)(p)
        updates, state = optimizer.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    (params, _), losses = jax.jit(
        lambda p: jax.lax.scan(step, (p, optimizer.init(p)), length=config.regression_steps)
    )(params)
    return lambda states: jax.vmap(apply, (None, 0))(params, states[:, None]), float(losses[-1])


def sample_actions(energy, states, key: jax.Array, config: Config):
    """Actions ``(num_chains * num_samples, len(states))`` from :math:`p_\\theta(a \\mid s_j)`
    for every test state at once, by parallel tempering on
    :math:`\\sum_j E_\\theta(s_j, a_j)`, and the mean swap acceptance rate."""

    def conditional_energy(actions):  # actions: (num_states, 1), the states closed over
        pairs = jnp.concatenate([states[:, None], actions], axis=1)
        return jnp.sum(jax.vmap(energy)(pairs))

    idata = ne.sample(
        conditional_energy,
        "parallel_tempering",
        key=key,
        event_shape=(states.shape[0], 1),
        num_chains=config.num_chains,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        num_replicas=config.num_replicas,
        max_temperature=10.0,
    )
    swap = float(np.nanmean(idata.sample_stats["swap_acceptance"]))
    return np.asarray(idata.posterior["x"])[..., 0].reshape(-1, states.shape[0]), swap


def follows_expert(actions, states) -> np.ndarray:
    """Whether each action lies within ``TOLERANCE`` of one of the expert's modes."""
    f = np.asarray(expert_mode(states))
    return np.minimum(np.abs(actions - f), np.abs(actions + f)) < TOLERANCE


def plot(path, demos, energy, states, actions, regression, metrics) -> None:
    s_grid = np.linspace(-1.1, 1.1, 111, dtype=np.float32)
    a_grid = np.linspace(-1.4, 1.4, 141, dtype=np.float32)
    ss, aa = np.meshgrid(s_grid, a_grid, indexing="ij")
    pairs = jnp.asarray(np.stack([ss, aa], -1).reshape(-1, 2))
    energies = np.asarray(jax.vmap(energy)(pairs)).reshape(ss.shape)
    conditional = np.exp(-(energies - energies.min(axis=1, keepdims=True)))
    conditional /= conditional.sum(axis=1, keepdims=True) * (a_grid[1] - a_grid[0])
    line_s = np.linspace(-1, 1, 201, dtype=np.float32)
    modes = np.asarray(expert_mode(line_s))
    regression_line = np.asarray(regression(jnp.asarray(line_s)))

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    ax = axes[0, 0]
    ax.scatter(demos[:, 0], demos[:, 1], s=3, alpha=0.35, label="expert demonstrations")
    ax.plot(line_s, regression_line, "r", lw=2, label="MSE regression policy")
    ax.set(title="demonstrations and the regression policy", xlabel="state s", ylabel="action a")
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[0, 1]
    relative = energies - energies.min()
    mesh = ax.pcolormesh(ss, aa, relative, shading="auto", cmap="viridis_r", vmax=15.0)
    fig.colorbar(mesh, ax=ax, label="E(s, a) - min E (clipped at 15)", extend="max")
    ax.set(title="learned energy E(s, a)", xlabel="state s", ylabel="action a")

    ax = axes[1, 0]
    ax.pcolormesh(ss, aa, conditional, shading="auto", cmap="magma")
    ax.plot(line_s, modes, "w--", lw=0.8)
    ax.plot(line_s, -modes, "w--", lw=0.8)
    ax.set(
        title="policy p(a | s) ∝ exp(-E(s, a)); dashed: expert modes",
        xlabel="state s",
        ylabel="action a",
    )

    ax = axes[1, 1]
    jitter = np.repeat(np.asarray(states)[None], actions.shape[0], 0)
    ax.scatter(jitter.ravel(), actions.ravel(), s=2, alpha=0.08, color="tab:blue")
    ax.plot([], [], "o", color="tab:blue", label="EBM actions (parallel tempering)")
    ax.plot(line_s, modes, "k--", lw=0.8, label="expert modes ±f(s)")
    ax.plot(line_s, -modes, "k--", lw=0.8)
    ax.plot(line_s, regression_line, "r", lw=2, label="MSE regression policy")
    ax.set(
        title=(
            f"within {TOLERANCE:.2f} of an expert mode: EBM {metrics['ebm_follows_expert']:.0%}, "
            f"regression {metrics['regression_follows_expert']:.0%}"
        ),
        xlabel="state s",
        ylabel="action a",
        ylim=(-1.4, 1.4),
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    key_demos, key_ebm, key_regression, key_sample = jax.random.split(jax.random.key(args.seed), 4)
    demos = demonstrations(key_demos, config.num_demos)

    started = time.perf_counter()
    energy, history = train_energy(demos, key_ebm, config)
    train_seconds = time.perf_counter() - started
    regression, regression_mse = train_regression(demos, key_regression, config)

    states = jnp.linspace(-1.0, 1.0, config.num_test_states)
    started = time.perf_counter()
    actions, swap_rate = sample_actions(energy, states, key_sample, config)
    sample_seconds = time.perf_counter() - started
    regression_actions = np.asarray(regression(states))[None]

    metrics = {
        "ebm_follows_expert": float(follows_expert(actions, states).mean()),
        "regression_follows_expert": float(follows_expert(regression_actions, states).mean()),
        "ebm_upper_mode_fraction": float((actions > 0).mean()),
        "regression_mean_abs_action": float(np.abs(regression_actions).mean()),
        "regression_mse": regression_mse,
        "swap_acceptance": swap_rate,
        "train_seconds": train_seconds,
        "sample_seconds": sample_seconds,
        "num_actions": int(actions.size),
    }
    plot(
        args.out / "imitation.png", np.asarray(demos), energy, states, actions, regression, metrics
    )
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(f"imitation_learning ({'smoke' if args.smoke else 'full'} size)")
    print(
        f"  PCD energy: {config.num_steps} steps in {train_seconds:.1f} s, final loss "
        f"{history['loss'][-1]:.3f}"
    )
    print(
        f"  {metrics['num_actions']} actions at {config.num_test_states} test states by parallel "
        f"tempering in {sample_seconds:.1f} s (swap acceptance {swap_rate:.2f})"
    )
    print(f"  fraction of actions within {TOLERANCE:.2f} of an expert mode:")
    print(f"    EBM (implicit) policy     {metrics['ebm_follows_expert']:.3f}")
    print(f"    MSE regression policy     {metrics['regression_follows_expert']:.3f}")
    print(
        f"  EBM actions on the upper mode: {metrics['ebm_upper_mode_fraction']:.3f} (expert: 0.5)"
    )
    print(
        f"  regression |a| on average {metrics['regression_mean_abs_action']:.3f} "
        "(the expert's modes are at |a| >= 0.2)"
    )
    print(f"  figure: {args.out / 'imitation.png'}")
    return metrics


if __name__ == "__main__":
    main()
