r"""A reward model is an energy: Bradley-Terry on synthetic preferences, then the tilted density
:math:`p_0(x)\, e^{r(x)/\beta}` drawn by our samplers, checked against its closed form, and the
drift of the learned reward's tilt from the true one as :math:`\beta` falls (reward hacking).

The truth is known. Items are :math:`x \in \mathbb{R}^2` with the reference density
:math:`p_0 = \mathcal{N}(0, I)`; a hidden reward
:math:`r^\ast(x) = -\tfrac12 (x - \mu)^\top A (x - \mu)` judges every pair of items drawn
from :math:`p_0` by Bradley-Terry, :math:`P(a \succ b) = \sigma(r^\ast(a) - r^\ast(b))`.

1. **Reward models.** MLP energies :math:`E_\theta = -r_\theta` are fitted to the first 500,
   2000, 10 000 and 100 000 pairs with ``ne.training.bradley_terry`` (the reward model of
   RLHF, Christiano et al. 2017; Ouyang et al. 2022). Held-out pairs measure each:
   ``heldout_preference_accuracy``, the fraction on which the learned reward prefers the item
   the hidden reward prefers (goal >= 0.9 for the model that is sampled, the largest);
   ``heldout_label_accuracy``, against the sampled preferences, next to
   ``bayes_label_accuracy``, the hidden reward's own (no model does better on noisy labels).
2. **The tilted density.** The KL-regularized optimum
   :math:`\arg\max_q \mathbb{E}_q[r] - \beta\,\mathrm{KL}(q\,\|\,p_0)` is
   :math:`q_\beta \propto p_0\, e^{r/\beta}`. For the true reward it is Gaussian in closed
   form: precision :math:`P = I + A/\beta`, mean :math:`P^{-1} A \mu / \beta`. The largest
   data set's reward tilt is a NumPyro model (a ``Normal`` prior and ``ne.energy_factor`` at
   temperature :math:`\beta = 1`), run by ``ne.compare`` (NUTS and MALA, a long NUTS run as
   the reference, exact draws of the true tilt as the data: the table tells the reward
   model's error from the samplers'). ``tilted_mean_z`` is the largest z-score of NUTS'
   sampled mean against the true tilt's mean, in Monte Carlo standard errors (goal: within
   4).
3. **Reward hacking.** As :math:`\beta` falls the tilt moves to where the reward model says
   the reward is highest, further from :math:`p_0` and from the preference data. By
   quadrature on a grid (exact up to the grid, no sampler), for each reward model and each
   :math:`\beta`: the learned tilt's KL from :math:`p_0`, its gain in the proxy (learned) and
   in the true reward over :math:`p_0`, the true tilt's true gain (Gao, Schulman & Hilton
   2023 plot these against :math:`\sqrt{\mathrm{KL}}`), and the distance between the learned
   and the true tilt's means. A tilt the grid cuts off (mass above 1e-3 on its outer cells)
   is left out of the figure.

Measured (seed 0, ``python examples/reward_model.py --out docs/figures/reward_model``, 48 s
wall on 2 CPU cores):

* held-out agreement with the hidden reward 0.866 / 0.951 / 0.985 / **0.998** for 500 / 2000
  / 10 000 / 100 000 pairs (label accuracy 0.876, the hidden reward's own 0.877);
* the tilt at :math:`\beta = 1` of the 100 000-pair model: NUTS mean (1.164, 0.624) against
  the true (1.158, 0.632), ``tilted_mean_z`` **0.84**; ``compare``: the reward model's error
  0.014 sd, NUTS' 0.014 sd, MALA's 0.012 sd, both mixed (R-hat 1.001);
* reward hacking: with 500 pairs the learned tilt's true gain peaks at :math:`\beta = 1.31`
  (3.85) and falls to -26.9 at :math:`\beta = 0.05`, its mean 8.9 away, where the true tilt
  gains 4.55; with 2000 pairs it peaks at :math:`\beta = 0.44` and falls to -47.8; with
  10 000 and 100 000 pairs it keeps rising to 4.46 and 4.545 (means 0.44 and 0.05 away).

Writes ``reward.png`` (the hidden reward and two learned ones, the circle of radius 2
holding 86 % of the pairs' items, and the tilts at three temperatures), ``hacking.png``
(the curves of step 3) and ``metrics.json``.

Run: ``python examples/reward_model.py [--smoke] [--out DIR] [--seed N]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # first: XLA flags for --smoke and the Agg canvas, before JAX

# isort: split

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from flax import nnx
from matplotlib.figure import Figure
from matplotlib.patches import Circle

import numpyro_ebm as ne
from numpyro_ebm import _arviz, nets
from numpyro_ebm.evidence import exact

#: the hidden reward r*(x) = -(x - MU)' A (x - MU) / 2
MU = np.array([2.0, 1.0])
A = np.array([[1.2, 0.4], [0.4, 0.8]])
#: the temperature at which the sampled tilt is checked against its closed form
BETA = 1.0
#: the temperatures of the reward-hacking curves, from mild to strong optimization
BETAS = np.geomspace(8.0, 0.05, 15)
#: the reward models' numbers of preference pairs; the largest one's tilt is sampled
DATA_SIZES = (500, 2000, 10_000, 100_000)
BOX = ([-10.0, -10.0], [10.0, 10.0])


def true_reward(x):
    d = x - jnp.asarray(MU, x.dtype)
    return -0.5 * d @ jnp.asarray(A, x.dtype) @ d


def true_tilt(beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of N(0, I) e^{r*/beta}, in closed form."""
    cov = np.linalg.inv(np.eye(2) + A / beta)
    return cov @ A @ MU / beta, cov


def preference_pairs(key, n: int) -> jax.Array:
    """``n`` pairs of N(0, I) items judged by Bradley-Terry with the hidden reward, the
    preferred item first: ``(n, 2, 2)``."""
    ka, kb, ky = jax.random.split(key, 3)
    a, b = jax.random.normal(ka, (n, 2)), jax.random.normal(kb, (n, 2))
    r_a, r_b = jax.vmap(true_reward)(a), jax.vmap(true_reward)(b)
    a_wins = jax.random.bernoulli(ky, jax.nn.sigmoid(r_a - r_b))
    return jnp.stack([jnp.where(a_wins[:, None], a, b), jnp.where(a_wins[:, None], b, a)], 1)


def tilted_model(energy, beta):
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    ne.energy_factor("reward", energy, x, temperature=beta)


def tilt_on_grid(log_reward: np.ndarray, log_p0: np.ndarray, beta: float) -> np.ndarray:
    """Normalized weights of the grid's cells under p0 e^{reward / beta}."""
    log_w = log_p0 + log_reward / beta
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def hacking_curves(learned: np.ndarray, truth: np.ndarray, points, log_p0) -> dict:
    """For each beta of ``BETAS``, by quadrature: KL(q_beta || p0) of the learned tilt and
    its proxy and true reward gains over p0; the true tilt's KL and true gain; the distance
    between the two tilts' means; and the learned tilt's mass on the grid's outer cells (above
    1e-3, the box cuts the tilt off and its figures are those of the cut density)."""
    p0 = np.exp(log_p0 - log_p0.max())
    p0 /= p0.sum()
    step = points[1, 1] - points[0, 1]
    edge = np.any(
        (points < np.asarray(BOX[0]) + 1.5 * step) | (points > np.asarray(BOX[1]) - 1.5 * step),
        axis=1,
    )
    names = ("kl", "proxy_gain", "true_gain", "kl_true", "optimum_gain", "mean_distance")
    names += ("edge_mass",)
    curves = {k: [] for k in names}

    def kl_from_p0(q):
        return float(np.sum(q * (np.log(q + 1e-300) - np.log(p0 + 1e-300))))

    for beta in BETAS:
        q = tilt_on_grid(learned, log_p0, beta)
        q_true = tilt_on_grid(truth, log_p0, beta)
        curves["kl"].append(kl_from_p0(q))
        curves["kl_true"].append(kl_from_p0(q_true))
        curves["proxy_gain"].append(float(q @ learned - p0 @ learned))
        curves["true_gain"].append(float(q @ truth - p0 @ truth))
        curves["optimum_gain"].append(float(q_true @ truth - p0 @ truth))
        curves["mean_distance"].append(float(np.linalg.norm(q @ points - q_true @ points)))
        curves["edge_mass"].append(float(q[edge].sum()))
    return curves


def fit_reward_model(key, pairs, num_steps: int, seed: int, smoke: bool):
    """An MLP energy E = -r fitted to ``pairs`` by Bradley-Terry; the energy and the fit."""
    net = nets.MLPEnergy(event_shape=(2,), hidden=(64, 64), rngs=nnx.Rngs(seed))
    apply, params = nets.as_pure(net)
    result = ne.training.fit(
        ne.training.bradley_terry(apply),
        params,
        pairs,
        key=key,
        optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, num_steps)),
        num_steps=num_steps,
        batch_size=min(512, pairs.shape[0]),
        steps_per_chunk=100 if smoke else 500,
        progress=False,
    )
    return functools.partial(apply, result.params), result


def preference_accuracy(energy, held_out) -> dict:
    """Held-out agreement with the hidden reward's preferences and with the sampled labels,
    and the hidden reward's own label accuracy."""
    learned_margin = jax.vmap(energy)(held_out[:, 1]) - jax.vmap(energy)(held_out[:, 0])
    true_margin = jax.vmap(true_reward)(held_out[:, 0]) - jax.vmap(true_reward)(held_out[:, 1])
    return {
        "heldout_preference_accuracy": float(
            jnp.mean((learned_margin > 0) == (true_margin > 0))
        ),
        "heldout_label_accuracy": float(jnp.mean(learned_margin > 0)),
        "bayes_label_accuracy": float(jnp.mean(true_margin > 0)),
    }


def main(argv=None) -> dict:
    args = _setup.parse_args("reward_model", __doc__, argv)
    key = jax.random.key(args.seed)
    smoke = args.smoke
    sizes, num_steps = ((500, 2000), 300) if smoke else (DATA_SIZES, 6000)
    cells = exact.grid(*BOX, 120 if smoke else 400)
    points = np.asarray(cells.points, np.float64)
    truth = np.asarray(jax.vmap(true_reward)(cells.points), np.float64)
    log_p0 = -0.5 * np.sum(points**2, axis=1)

    # 1. reward models from more and more pairs; 3. their tilts as beta falls (quadrature)
    all_pairs = preference_pairs(jax.random.fold_in(key, 1), max(sizes))
    held_out = preference_pairs(jax.random.fold_in(key, 2), 20_000)
    record, learned_by_size = {"num_steps": num_steps, "by_num_pairs": {}}, {}
    for num_pairs in sizes:
        energy, result = fit_reward_model(
            jax.random.fold_in(key, 3), all_pairs[:num_pairs], num_steps, args.seed, smoke
        )
        learned = -np.asarray(jax.vmap(energy)(cells.points), np.float64)
        learned_by_size[str(num_pairs)] = learned
        curves = hacking_curves(learned, truth, points, log_p0)
        best = int(np.argmax(curves["true_gain"]))
        row = preference_accuracy(energy, held_out) | {
            "final_training_loss": float(result.history["loss"][-1]),
            "true_gain_peak_beta": float(BETAS[best]),
            "hacking": {"beta": BETAS.tolist()} | curves,
        }
        record["by_num_pairs"][str(num_pairs)] = row
        print(
            f"{num_pairs} pairs: held-out agreement with the hidden reward "
            f"{row['heldout_preference_accuracy']:.3f}, label accuracy "
            f"{row['heldout_label_accuracy']:.3f} (the hidden reward's own: "
            f"{row['bayes_label_accuracy']:.3f}); the learned tilt's true gain peaks at beta = "
            f"{BETAS[best]:.3g} ({curves['true_gain'][best]:.3f}); at beta = {BETAS[-1]:.3g} "
            f"it is {curves['true_gain'][-1]:.3f} against the true tilt's "
            f"{curves['optimum_gain'][-1]:.3f}, its mean {curves['mean_distance'][-1]:.2f} "
            f"away (mass on the grid's edge {curves['edge_mass'][-1]:.1e})"
        )
    # the largest data set's reward model is the one sampled and measured below
    record |= {k: row[k] for k in ("heldout_preference_accuracy", "heldout_label_accuracy")}
    record |= {"bayes_label_accuracy": row["bayes_label_accuracy"], "num_pairs": num_pairs}

    # 2. the tilted density at BETA, sampled and compared
    mean_true, cov_true = true_tilt(BETA)
    exact_draws = np.random.default_rng(args.seed).multivariate_normal(
        mean_true, cov_true, size=4000
    )
    budget = {"num_chains": 4, "num_samples": 300 if smoke else 2000}
    comparison = ne.compare(
        tilted_model,
        ["nuts", "mala"],
        key=jax.random.fold_in(key, 4),
        reference="nuts",
        reference_samples=600 if smoke else 8000,
        data={"x": exact_draws},
        num_warmup=200 if smoke else 1000,
        model_kwargs={"energy": energy, "beta": BETA},
        **budget,
    )
    print(comparison)
    draws = np.asarray(_arviz.group(comparison.idata["nuts"], "posterior")["x"].values)
    summary = ne.diagnostics.summary(draws.astype(np.float64))
    sampled_mean = np.asarray(summary["mean"])
    mcse = np.asarray(summary["mcse_mean"])
    table = comparison.table
    record |= {
        "beta": BETA,
        "tilted_mean_true": mean_true.tolist(),
        "tilted_sd_true": np.sqrt(np.diag(cov_true)).tolist(),
        "tilted_mean_sampled": sampled_mean.tolist(),
        "tilted_mean_mcse": mcse.tolist(),
        "tilted_mean_z": float(np.max(np.abs(sampled_mean - mean_true) / mcse)),
        "compare": {
            label: {
                column: (bool(row[column]) if column == "mixed" else float(row[column]))
                for column in ("mixed", "max_rhat", "ess_per_s", "sampler_error", "data_error")
                if column in table
            }
            for label, row in table.iterrows()
        },
        "model_error": float(table["model_error"].iloc[0]),
        "compare_notes": list(comparison.notes),
    }
    print(
        f"tilt at beta = {BETA}: NUTS mean {np.round(sampled_mean, 3)} against the true tilt's "
        f"{np.round(mean_true, 3)}: z = {record['tilted_mean_z']:.2f} (goal: within 4); "
        f"the reward model's own error {record['model_error']:.3f} sd"
    )

    plot_rewards(args.out / "reward.png", points, learned_by_size, truth, log_p0)
    plot_hacking(args.out / "hacking.png", record["by_num_pairs"])
    (args.out / "metrics.json").write_text(json.dumps(record, indent=1))
    return record


def plot_rewards(path, points, learned: dict, truth, log_p0) -> None:
    """The hidden reward, the smallest and largest data sets' learned rewards (shifted to the
    same maximum), and the three tilts at three temperatures."""
    num = math.isqrt(points.shape[0])
    extent = [BOX[0][0], BOX[1][0], BOX[0][1], BOX[1][1]]
    shown = {k: learned[k] for k in (min(learned, key=int), max(learned, key=int))}
    fig = Figure(figsize=(18, 3.4))
    axes = fig.subplots(1, 6)
    panels = [("hidden reward r*", truth)]
    panels += [(f"learned reward, {k} pairs", v - v.max() + truth.max()) for k, v in shown.items()]
    for ax, (title, values) in zip(axes, panels, strict=False):
        image = ax.imshow(
            np.clip(values, -30, None).reshape(num, num).T, origin="lower", extent=extent
        )
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.add_patch(Circle((0, 0), 2.0, fill=False, color="w", ls=":"))
        ax.plot(*MU, "r*", markersize=10)
        ax.set_title(title, fontsize=9)
    for ax, beta in zip(axes[3:], (BETA, 0.3, BETAS[-1]), strict=True):
        curves = [("true tilt", truth, "k")]
        curves += [(f"{k} pairs", v, f"C{i + 1}") for i, (k, v) in enumerate(shown.items())]
        for label, values, color in curves:
            q = tilt_on_grid(values, log_p0, beta).reshape(num, num).T
            ax.contour(q / q.max(), levels=[0.05, 0.3, 0.7], colors=color, extent=extent)
            ax.plot([], [], color=color, label=label)
        ax.plot(*MU, "r*", markersize=10)
        ax.set_title(f"tilts p0 e^(r / beta), beta = {beta:.3g}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_hacking(path, by_num_pairs: dict) -> None:
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    for i, (num_pairs, row) in enumerate(by_num_pairs.items()):
        curves = {k: np.asarray(v) for k, v in row["hacking"].items()}
        # temperatures whose learned tilt the grid cuts off are left out
        inside = curves["edge_mass"] < 1e-3
        left.plot(
            np.sqrt(curves["kl"][inside]),
            curves["true_gain"][inside],
            f"C{i}o-",
            ms=3,
            label=num_pairs,
        )
        right.semilogx(
            BETAS[inside], curves["mean_distance"][inside], f"C{i}o-", ms=3, label=num_pairs
        )
    left.plot(np.sqrt(curves["kl_true"]), curves["optimum_gain"], "k--", label="true tilt")
    left.set_xlabel("sqrt KL(q_beta || p0)")
    left.set_ylabel("true reward gain over p0")
    left.legend(title="pairs", fontsize=7)
    right.set_xlabel("beta")
    right.set_ylabel("|mean(learned tilt) - mean(true tilt)|")
    right.invert_xaxis()
    right.legend(title="pairs", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
