r"""The GAN connection: a GAN's discriminator read as an energy in its generator's latent space,
and what the GAN objective drops from the variational principle of an energy.

**Data**: the eight Gaussians of ``gaussian_mixture`` (radius 2, sd 0.2; ``ne.datasets``),
whose exact log density :math:`\log p_{data}` is known.

**The GAN** (Goodfellow et al. 2014): a generator :math:`G: \mathbb{R}^2 \to \mathbb{R}^2`
(an MLP, latent :math:`z \sim p_0 = \mathcal{N}(0, I)`, implicit density :math:`p_g`) and a
critic :math:`d: \mathbb{R}^2 \to \mathbb{R}` (an :class:`numpyro_ebm.MLPEnergy` whose output
is read as the *logit* of the discriminator :math:`D = \sigma(d)`). Both are trained by
``ne.fit`` on one loss, the discriminator's logistic loss
:math:`\mathbb{E}_{data}[\log(1 + e^{-d})] + \mathbb{E}_{p_g}[\log(1 + e^{d})]`
for :math:`d` plus the non-saturating generator loss
:math:`\mathbb{E}_{p_0}[\log(1 + e^{-d(G(z))})]` for :math:`G`, each player's
gradient stopped through the other's term (simultaneous Adam updates). For a fixed :math:`G`
the logistic loss is minimized pointwise by

.. math::

    d^*(x) = \log p_{data}(x) - \log p_g(x), \qquad\text{so}\qquad
    p_g(x)\, e^{d^*(x)} = p_{data}(x).

The critic of a GAN that stopped training is not that optimum, so it is then trained on its
own with :math:`G` frozen, as discriminator rejection sampling does (Azadi et al. 2019).

**Discriminator driven latent sampling** (DDLS, Che et al. 2020): :math:`p_g e^{d}` is an
energy-based model in data space, :math:`E(x) = -\log p_g(x) - d(x)`, which cannot be
evaluated (:math:`p_g` is implicit), but its pull-back to the latent space can:

.. math::

    E_0(z) = \tfrac12 \|z\|^2 - d(G(z)), \qquad p_t(z) \propto p_0(z)\, e^{d(G(z))}.

If :math:`z \sim p_t` then :math:`G(z)` has density
:math:`\int \delta(x - G(z))\, p_0(z) e^{d(G(z))} dz / Z = p_g(x) e^{d(x)} / Z`, which is
:math:`p_{data}` (with :math:`Z = 1`) when :math:`d = d^*`. :math:`E_0` is sampled by
``ne.sample`` with MALA and with parallel tempering (replica exchange over MALA replicas); the
draws mapped through :math:`G` are compared with held-out data by the energy distance
(``ne.metrics.energy_distance``, Székely & Rizzo 2013), the generator alone being the
*before*. The chains start at :math:`z \sim p_0`, that is at the generator's own samples.

**What dropping the entropy costs.** For any energy :math:`E` and density :math:`q`,

.. math::

    \log Z = \log \int e^{-E} = \max_q\ \mathbb{E}_q[-E] + H(q), \qquad
    \log Z - \bigl(\mathbb{E}_q[-E] + H(q)\bigr) = \mathrm{KL}(q \,\|\, e^{-E}/Z) \ge 0

(Gibbs' variational principle). With :math:`E = -d` and :math:`q` the law of :math:`G(z)`,
dropping :math:`H(q)` leaves :math:`\max_G \mathbb{E}_{p_0}[d(G(z))]`, the Wasserstein GAN's
generator objective (Arjovsky et al. 2017), and the critic's side,
:math:`\min_d \mathbb{E}_{q}[d] - \mathbb{E}_{data}[d]`, is the contrastive
(maximum-likelihood) update of the energy :math:`-d` with :math:`q` as its negative sampler.
Without :math:`H(q)` nothing keeps :math:`q` spread: its maximizer is any law on the minima of
:math:`E`. The last part measures this on the known energy :math:`E = -\log p_{data}`
(:math:`\log Z = 0`): (a) a generator network trained on :math:`\mathbb{E}_q[-E]` alone, and
(b) a mixture of Gaussians :math:`q` (tractable :math:`\log q`) trained on the bound
:math:`\mathbb{E}_q[-E] + H(q)`, both expectations by reparameterization (the minibatches are
the base noise), whose value is compared with :math:`\log Z` by quadrature
(``ne.evidence.exact.grid_log_partition``). A mode counts as *covered* when at least a
quarter of its share of the points (1/8) lies within 3 sd of its centre.

The normalizer :math:`Z = \mathbb{E}_{p_0}[e^{d(G(z))}]` is 1 for :math:`d = d^*` and is
reported as a check of the critic (``critic_normalizer``).

**Measured** (full size, seed 0, ``docs/figures/gan_energy``; 65 s wall on 2 shared CPU
cores): energy distances to 10 000 held-out points (two data sets of that size: 0.0013)
0.0160 for the generator alone and 0.0012 after latent parallel tempering, a ratio of 0.075
(goal: at most 0.5), with the 64 chains mixed (max R-hat 1.004); the critic's normalizer is
0.942. The generator's bridges between modes go (points within 3 sd of a mode: 0.892, then
0.975) and so does its error in the modes' weights (largest 0.081, then 0.019). MALA alone
does not mix between the latent basins (R-hat 1.21): it removes the bridges but keeps much
of the generator's weighting (largest error 0.040, energy distance 0.0134). Seeds 1 and 2
give ratios 0.087 and 0.472 (the latter's generator alone was already at 0.0031). Entropy
panel: the generator without :math:`H(q)` covers 2 of the 8 modes and scores
:math:`\mathbb{E}_q[-E] = -1.40`, *above* the data's own :math:`-1.70` (a point on a centre
scores :math:`-0.70`); the mixture of 16 with :math:`H(q)` covers all 8, its bound
:math:`-1.699 + 1.698 = -0.0015 \pm 0.0002` within 0.002 of :math:`\log Z = 0`.

Writes ``gan.png`` (data, the generator alone, after latent MCMC, the latent energy),
``entropy.png`` (the two fits of the entropy panel) and ``metrics.json`` to ``--out``.

Run: ``python examples/gan_energy.py [--smoke] [--out DIR] [--seed N]``.

References
----------
I. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu, D. Warde-Farley, S. Ozair, A. Courville and
Y. Bengio (2014). Generative adversarial nets. NeurIPS.
M. Arjovsky, S. Chintala and L. Bottou (2017). Wasserstein generative adversarial networks.
ICML.
S. Azadi, C. Olsson, T. Darrell, I. Goodfellow and A. Odena (2019). Discriminator rejection
sampling. ICLR.
T. Che, R. Zhang, J. Sohl-Dickstein, H. Larochelle, L. Paull, Y. Cao and Y. Bengio (2020).
Your GAN is secretly an energy-based model and you should use discriminator driven latent
sampling. NeurIPS.
A. Srivastava, L. Valkov, C. Russell, M. U. Gutmann and C. Sutton (2017). VEEGAN: reducing
mode collapse in GANs using implicit variational learning. NeurIPS.
G. J. Székely and M. L. Rizzo (2013). Energy statistics: a class of statistics based on
distances. Journal of Statistical Planning and Inference 143(8).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # first: XLA flags for --smoke and the Agg canvas, before JAX

# isort: split

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from flax import nnx
from matplotlib.figure import Figure

import numpyro_ebm as ne
from numpyro_ebm import datasets
from numpyro_ebm.evidence import exact

NAME = "gan_energy"
CENTERS = datasets.GAUSSIAN_MIXTURE_CENTERS
MODE_RADIUS = 3 * datasets.GAUSSIAN_MIXTURE_STD  # a point within 3 sd of a centre is "on" it
LIMITS = (-3.2, 3.2)  # data-space plots and the quadrature box of log Z
PLOTTED = 4000  # points drawn per scatter panel


class Config(NamedTuple):
    """Sizes of one run; ``FULL`` and ``SMOKE`` below."""

    num_data: int
    num_eval: int  # points on each side of an energy distance
    hidden: tuple[int, ...]
    gan_steps: int
    critic_steps: int
    batch_size: int
    num_chains: int
    num_warmup: int
    num_samples: int
    num_replicas: int
    panel_steps: int
    num_components: int


FULL = Config(
    num_data=100_000,
    num_eval=10_000,
    hidden=(128, 128),
    gan_steps=10_000,
    critic_steps=6000,
    batch_size=256,
    num_chains=64,
    num_warmup=1000,
    num_samples=4000,
    num_replicas=8,
    panel_steps=3000,
    num_components=16,
)
SMOKE = Config(
    num_data=2000,
    num_eval=400,
    hidden=(32, 32),
    gan_steps=300,
    critic_steps=100,
    batch_size=128,
    num_chains=4,
    num_warmup=50,
    num_samples=100,
    num_replicas=4,
    panel_steps=200,
    num_components=8,
)


class Generator(nnx.Module):
    r"""An MLP :math:`G: \mathbb{R}^2 \to \mathbb{R}^2`, SiLU between the layers (smooth in
    :math:`z`, as the latent Langevin moves need)."""

    def __init__(self, hidden, *, rngs: nnx.Rngs):
        sizes = (2, *hidden, 2)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, z):
        for layer in self.layers[:-1]:
            z = nnx.silu(layer(z))
        return self.layers[-1](z)


def log_p_data(x):
    r"""The exact log density of the data, :math:`\log p_{data}(x)`."""
    return datasets.gaussian_mixture_log_prob(x)


def fit(loss, params, data, key, learning_rate, num_steps: int, config: Config):
    r"""``ne.fit`` of a stateless ``loss(params, batch, key) -> (value, aux)`` with Adam
    (:math:`\beta_1 = 0.5`), minibatches of ``config.batch_size``."""
    return ne.fit(
        ne.training.from_loss(loss),
        params,
        data,
        key=key,
        optimizer=optax.adam(learning_rate, b1=0.5),
        num_steps=num_steps,
        batch_size=config.batch_size,
        steps_per_chunk=min(1000, num_steps),
        progress=False,
    )


def train_gan(data, key, config: Config):
    """The non-saturating GAN, then the critic alone towards :math:`d^*` (a cosine-decayed
    rate, so that it settles). Returns ``G(z)``, the critic ``d(x)`` and both histories."""
    key_g, key_d, key_fit, key_critic = jax.random.split(key, 4)
    generator, g_params = ne.as_pure(Generator(config.hidden, rngs=nnx.Rngs(params=key_g)))
    critic, d_params = ne.as_pure(
        ne.MLPEnergy((2,), hidden=config.hidden, rngs=nnx.Rngs(params=key_d))
    )
    stop = jax.lax.stop_gradient

    def logistic(d, real, fake):
        r"""The discriminator's loss; minimized pointwise by :math:`d^* = \log p_{data}/p_g`."""
        return jnp.mean(jax.nn.softplus(-critic(d, real)) + jax.nn.softplus(critic(d, fake)))

    def gan_loss(params, batch, key):
        fake = generator(params["g"], jax.random.normal(key, batch.shape))
        d_loss = logistic(params["d"], batch, stop(fake))
        g_loss = jnp.mean(jax.nn.softplus(-critic(stop(params["d"]), fake)))
        return d_loss + g_loss, {"critic_loss": d_loss, "generator_loss": g_loss}

    params = {"g": g_params, "d": d_params}
    gan = fit(gan_loss, params, data, key_fit, 2e-4, config.gan_steps, config)
    g_params = gan.params["g"]

    def calibration_loss(d, batch, key):
        return logistic(d, batch, generator(g_params, jax.random.normal(key, batch.shape))), {}

    decay = optax.cosine_decay_schedule(1e-3, config.critic_steps, alpha=0.01)
    calibrated = fit(
        calibration_loss, gan.params["d"], data, key_critic, decay, config.critic_steps, config
    )
    return (
        lambda z: generator(g_params, z),
        lambda x: critic(calibrated.params, x),
        gan.history,
        calibrated.history,
    )


def evenly(points, n: int) -> np.ndarray:
    """``n`` evenly spaced of the ``(..., 2)`` points (of ``(chains, draws, 2)`` draws: from
    every chain, evenly spaced over its draws)."""
    flat = np.asarray(points).reshape(-1, 2)
    return flat[np.linspace(0, flat.shape[0] - 1, min(n, flat.shape[0])).astype(int)]


def on_mode(points) -> np.ndarray:
    """``(n, 8)``: whether each point lies within 3 sd of each mode's centre."""
    return np.linalg.norm(np.asarray(points)[:, None] - CENTERS, axis=-1) < MODE_RADIUS


def modes_covered(points) -> float:
    """The fraction of the eight modes holding at least a quarter of their share (1/8) of the
    points within 3 sd of their centre."""
    return float(np.mean(on_mode(points).mean(0) >= 0.25 / len(CENTERS)))


def sample_quality(points, heldout) -> dict:
    """The energy distance to held-out data, the fraction of points within 3 sd of a mode
    ("high quality", Srivastava et al. 2017), the modes covered, and the largest error of a
    mode's weight (its Voronoi cell's share of the points, ``ne.metrics.mode_weights``,
    against 1/8)."""
    weights = ne.metrics.mode_weights(np.asarray(points), CENTERS).weights
    return {
        "energy_distance": float(ne.metrics.energy_distance(points, heldout)),
        "high_quality": float(on_mode(points).any(1).mean()),
        "modes_covered": modes_covered(points),
        "max_mode_weight_error": float(np.max(np.abs(weights - 1 / len(CENTERS)))),
    }


def collapsed_generator(key, config: Config):
    r"""A generator trained on :math:`\max_G \mathbb{E}_{p_0}[\log p_{data}(G(z))]` alone
    (no entropy); the minibatches are latent draws."""
    key_init, key_noise, key_fit = jax.random.split(key, 3)
    generator, params = ne.as_pure(Generator(config.hidden, rngs=nnx.Rngs(params=key_init)))

    def loss(params, z, key):
        return -jnp.mean(log_p_data(generator(params, z))), {}

    noise = jax.random.normal(key_noise, (config.num_data, 2))
    result = fit(loss, params, noise, key_fit, 1e-3, config.panel_steps, config)
    return lambda z: generator(result.params, z)


def mixture(params) -> dist.Distribution:
    r""":math:`q = \sum_k w_k \mathcal{N}(\mu_k, \operatorname{diag} s_k^2)`."""
    return dist.MixtureSameFamily(
        dist.Categorical(logits=params["logits"]),
        dist.Normal(params["loc"], jnp.exp(params["log_scale"])).to_event(1),
    )


def bound_terms(params, eps):
    r"""The terms of the stratified estimate of
    :math:`\mathbb{E}_q[-E] + H(q) = \sum_k w_k \mathbb{E}_{\epsilon}[\log p_{data}(x_k)
    - \log q(x_k)]` with :math:`x_k = \mu_k + s_k \epsilon`: the weights :math:`w` ``(K,)``,
    and :math:`\log p_{data}(x_k)` and :math:`\log q(x_k)` for each :math:`\epsilon` of
    ``eps`` ``(n, 2)``, ``(K, n)`` each; all differentiable in the parameters
    (reparameterization)."""
    x = params["loc"][:, None] + jnp.exp(params["log_scale"])[:, None] * eps
    return jax.nn.softmax(params["logits"]), log_p_data(x), mixture(params).log_prob(x)


def fit_mixture(key, config: Config):
    r"""A ``num_components`` Gaussian mixture trained on :math:`\mathbb{E}_q[-E] + H(q)`
    (broad components at the start, means near the origin); the minibatches are the base
    noise :math:`\epsilon`. Returns ``q`` and, by fresh Monte Carlo (4096 draws per
    component), :math:`\mathbb{E}_q[-E]`, :math:`H(q)`, their sum and its standard error."""
    key_loc, key_noise, key_fit, key_eval = jax.random.split(key, 4)
    k = config.num_components
    params = {
        "loc": 0.5 * jax.random.normal(key_loc, (k, 2)),
        "log_scale": jnp.zeros((k, 2)),
        "logits": jnp.zeros(k),
    }

    def loss(params, eps, key):
        weights, log_p, log_q = bound_terms(params, eps)
        return -jnp.sum(weights * jnp.mean(log_p - log_q, axis=1)), {}

    noise = jax.random.normal(key_noise, (config.num_data, 2))
    result = fit(loss, params, noise, key_fit, 1e-2, config.panel_steps, config)
    weights, log_p, log_q = (
        np.asarray(a, np.float64)
        for a in bound_terms(result.params, jax.random.normal(key_eval, (4096, 2)))
    )
    terms = log_p - log_q
    return mixture(result.params), {
        "expected_log_density": float(weights @ log_p.mean(1)),
        "entropy": float(-weights @ log_q.mean(1)),
        "bound": float(weights @ terms.mean(1)),
        "bound_se": float(np.sqrt(weights**2 @ (terms.var(1, ddof=1) / terms.shape[1]))),
    }


def plot_gan(path, heldout, before, after, latent_energy, latent, record) -> None:
    """Held-out data, the generator alone, the generator after latent MCMC, and the latent
    energy with the chains' draws."""
    fig = Figure(figsize=(17, 4.4))
    axes = fig.subplots(1, 4)
    panels = (
        ("held-out data", heldout, "tab:gray"),
        (
            "the generator alone: G(z), z ~ N(0, I)\n"
            f"energy distance {record['energy_distance_before']:.4f}",
            before,
            "tab:blue",
        ),
        (
            "G(z), z by parallel tempering on E0(z)\n"
            f"energy distance {record['energy_distance_after']:.4f}",
            after,
            "tab:green",
        ),
    )
    for ax, (title, points, colour) in zip(axes[:3], panels, strict=True):
        points = evenly(points, PLOTTED)
        ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.3, color=colour)
        ax.scatter(*CENTERS.T, marker="x", color="k", s=20)
        ax.set(xlim=LIMITS, ylim=LIMITS, aspect="equal", title=title)
    grid = np.linspace(-3.5, 3.5, 141, dtype=np.float32)
    zz = jnp.asarray(np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2))
    energies = np.asarray(jax.vmap(latent_energy)(zz)).reshape(grid.size, grid.size)
    ax = axes[3]
    mesh = ax.pcolormesh(grid, grid, np.clip(energies.min() - energies, -15, 0), cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="min E0 - E0(z), clipped at -15")
    latent = evenly(latent, PLOTTED // 2)
    ax.scatter(latent[:, 0], latent[:, 1], s=1, color="w", alpha=0.5)
    ax.set(
        xlim=(grid[0], grid[-1]),
        ylim=(grid[0], grid[-1]),
        aspect="equal",
        title="E0(z) = |z|²/2 - d(G(z)); white: draws",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_entropy(path, collapsed, fitted, record) -> None:
    """Samples of the two fits of the entropy panel over the contours of :math:`p_{data}`."""
    grid = np.linspace(*LIMITS, 161, dtype=np.float32)
    density = np.exp(np.asarray(log_p_data(jnp.asarray(np.stack(np.meshgrid(grid, grid), -1)))))
    fig = Figure(figsize=(11, 5.2))
    axes = fig.subplots(1, 2)
    panels = (
        (
            "(a) a generator, max E_q[-E] alone\nmodes covered "
            f"{record['modes_covered_without_entropy']:.0%}; E_q[-E] = "
            f"{record['expected_log_density_without_entropy']:.3f} (at q = p_data: "
            f"{record['expected_log_density_of_data']:.3f})",
            collapsed,
        ),
        (
            f"(b) a mixture of {record['num_components']}, max E_q[-E] + H(q)\nmodes "
            f"covered {record['modes_covered_with_entropy']:.0%}; E_q[-E] + H(q) = "
            f"{record['elbo_with_entropy']:.4f} <= log Z = 0",
            fitted,
        ),
    )
    for ax, (title, points) in zip(axes, panels, strict=True):
        ax.contour(grid, grid, density, levels=6, colors="k", linewidths=0.5)
        points = evenly(points, PLOTTED)
        ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.3, color="tab:red")
        ax.set(xlim=LIMITS, ylim=LIMITS, aspect="equal", title=title)
    fig.suptitle("what dropping H(q) costs: contours of exp(-E) = p_data, samples of q in red")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def refine(latent_energy, generator, heldout, key, config: Config) -> dict:
    """Sample :math:`E_0` with MALA and with parallel tempering (chains started from
    :math:`p_0`), map ``num_eval`` evenly spaced draws through :math:`G` and measure them.
    Returns, per sampler, the measures with the chains' max R-hat and min bulk ESS, the
    ``num_eval`` latent draws and their images."""
    runs = {}
    for name, options in (
        ("mala", {}),
        ("parallel_tempering", {"num_replicas": config.num_replicas}),
    ):
        started = time.perf_counter()
        draws = np.asarray(
            ne.sample(
                latent_energy,
                name,
                key=jax.random.fold_in(key, len(runs)),
                event_shape=(2,),
                num_chains=config.num_chains,
                num_warmup=config.num_warmup,
                num_samples=config.num_samples,
                **options,
            ).posterior["x"]
        )
        max_rhat, min_ess = ne.diagnostics.max_rhat_min_ess(draws)
        latent = evenly(draws, config.num_eval)
        points = generator(jnp.asarray(latent))
        runs[name] = {
            "metrics": sample_quality(points, heldout)
            | {
                "max_rhat": float(max_rhat),
                "min_ess_bulk": float(min_ess),
                "seconds": time.perf_counter() - started,
            },
            "latent": latent,
            "points": points,
        }
    return runs


def entropy_panel(key, heldout, config: Config):
    r"""The two fits on the known energy :math:`E = -\log p_{data}`, measured on
    ``num_eval`` samples each; returns the metrics and both samples."""
    key_collapse, key_mixture, key_draw = jax.random.split(key, 3)
    collapsed = collapsed_generator(key_collapse, config)(
        jax.random.normal(key_draw, (config.num_eval, 2))
    )
    q, bound = fit_mixture(key_mixture, config)
    fitted = q.sample(key_draw, (config.num_eval,))
    metrics = {
        "log_z_true": exact.grid_log_partition(
            lambda x: -log_p_data(x), [LIMITS[0]] * 2, [LIMITS[1]] * 2
        ),
        "expected_log_density_without_entropy": float(jnp.mean(log_p_data(collapsed))),
        "expected_log_density_of_data": float(jnp.mean(log_p_data(heldout))),
        "max_log_density": float(log_p_data(jnp.asarray(CENTERS[0]))),
        "modes_covered_without_entropy": modes_covered(collapsed),
        "modes_covered_with_entropy": modes_covered(fitted),
        "elbo_with_entropy": bound["bound"],
        "elbo_with_entropy_se": bound["bound_se"],
        "expected_log_density_with_entropy": bound["expected_log_density"],
        "entropy_with_entropy": bound["entropy"],
        "num_components": config.num_components,
    }
    return metrics, collapsed, fitted


def report(record: dict, config: Config) -> None:
    """Print the run's numbers."""
    print(
        f"  GAN: {config.gan_steps} steps, then {config.critic_steps} critic steps with G "
        f"frozen, in {record['train_seconds']:.1f} s"
    )
    print(f"  E_p0[exp d(G(z))] = {record['critic_normalizer']:.3f} (1 for the optimal critic)")
    print(
        f"  energy distance to {config.num_eval} held-out points (data vs data: "
        f"{record['data_vs_data_energy_distance']:.4f}):"
    )
    rows = {"generator alone": record["generator_alone"]} | {
        f"latent {name}": run for name, run in record["latent_mcmc"].items()
    }
    for label, row in rows.items():
        mixing = f", R-hat {row['max_rhat']:.3f}" if "max_rhat" in row else ""
        print(
            f"    {label:<26} {row['energy_distance']:.4f} (within 3 sd of a mode "
            f"{row['high_quality']:.3f}, modes covered {row['modes_covered']:.3f}, mode weights "
            f"off by <= {row['max_mode_weight_error']:.3f}{mixing})"
        )
    print(
        f"  after / before (parallel tempering): {record['energy_distance_ratio']:.3f}, goal "
        f"<= 0.5 {'met' if record['goal_met'] else 'NOT met'}; latent chains "
        f"{'mixed' if record['latent_mixed'] else 'NOT mixed'} (max R-hat < 1.01)"
    )
    print(
        "  entropy panel, E = -log p_data (log Z by quadrature "
        f"{record['log_z_true']:.5f}); E_q[-E] of the data itself "
        f"{record['expected_log_density_of_data']:.3f}, of a point on a centre "
        f"{record['max_log_density']:.3f}:"
    )
    print(
        "    max E_q[-E] alone (a generator):   E_q[-E] "
        f"{record['expected_log_density_without_entropy']:.3f}, modes covered "
        f"{record['modes_covered_without_entropy']:.3f}"
    )
    print(
        f"    max E_q[-E] + H(q) (mixture of {config.num_components}): E_q[-E] "
        f"{record['expected_log_density_with_entropy']:.3f} + H(q) "
        f"{record['entropy_with_entropy']:.3f} = {record['elbo_with_entropy']:.4f} +- "
        f"{record['elbo_with_entropy_se']:.4f} <= log Z, modes covered "
        f"{record['modes_covered_with_entropy']:.3f}"
    )


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    keys = jax.random.split(jax.random.key(args.seed), 8)
    data = datasets.toy("gaussian_mixture", keys[0], config.num_data)
    heldout = datasets.toy("gaussian_mixture", keys[1], config.num_eval)

    started = time.perf_counter()
    generator, critic, gan_history, critic_history = train_gan(data, keys[2], config)
    train_seconds = time.perf_counter() - started
    before = generator(jax.random.normal(keys[3], (config.num_eval, 2)))

    def latent_energy(z):
        return 0.5 * jnp.sum(z**2) - critic(generator(z))

    runs = refine(latent_energy, generator, heldout, keys[4], config)
    alone, tempering = sample_quality(before, heldout), runs["parallel_tempering"]["metrics"]
    record: dict = {
        "energy_distance_before": alone["energy_distance"],
        "energy_distance_after": tempering["energy_distance"],
        "latent_max_rhat": tempering["max_rhat"],
        "latent_mixed": tempering["max_rhat"] < 1.01,
        "data_vs_data_energy_distance": float(
            ne.metrics.energy_distance(data[: config.num_eval], heldout)
        ),
        "generator_alone": alone,
        "latent_mcmc": {name: run["metrics"] for name, run in runs.items()},
        "num_eval": config.num_eval,
        "gan_final_critic_loss": float(gan_history["critic_loss"][-1]),
        "gan_final_generator_loss": float(gan_history["generator_loss"][-1]),
        "calibrated_critic_loss": float(critic_history["loss"][-1]),
        "critic_normalizer": float(jnp.mean(jnp.exp(critic(before)))),
        "train_seconds": train_seconds,
    }
    record["energy_distance_ratio"] = (
        record["energy_distance_after"] / record["energy_distance_before"]
    )
    record["goal_met"] = record["energy_distance_ratio"] <= 0.5
    plot_gan(
        args.out / "gan.png",
        heldout,
        before,
        runs["parallel_tempering"]["points"],
        latent_energy,
        runs["parallel_tempering"]["latent"],
        record,
    )

    started = time.perf_counter()
    panel, collapsed, fitted = entropy_panel(keys[5], heldout, config)
    record |= panel | {"entropy_panel_seconds": time.perf_counter() - started}
    plot_entropy(args.out / "entropy.png", collapsed, fitted, record)
    (args.out / "metrics.json").write_text(json.dumps(record, indent=1))
    print(f"{NAME} ({'smoke' if args.smoke else 'full'} size)")
    report(record, config)
    print(f"  figures: {args.out / 'gan.png'}, {args.out / 'entropy.png'}")
    return record


if __name__ == "__main__":
    main()
