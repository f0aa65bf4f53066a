r"""A learned prior judged against the true prior: a partial, noisy observation of a point on
an unequal-weight ring.

The truth is known. :math:`x \in \mathbb{R}^2` has the prior of ``weighted_ring``, six
Gaussians on a ring with weights 0.30, 0.05, 0.20, 0.10, 0.25, 0.10 (``ne.datasets``), and
only one coordinate is observed, with noise:

.. math::

    y = x_j + \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, s^2).

The posterior :math:`p(x \mid y) \propto p(x)\, \mathcal{N}(y;\ x_j, s^2)` then has a mode
on each ring component that the observation allows, with masses set by the *prior's mode
weights*: a prior with the right shapes but the wrong weights gives the wrong posterior mean,
however well it is sampled.

Three priors are compared on each observation, each by quadrature on a grid (exact up to the
grid, no sampler involved):

* the true prior smoothed at the energy's level :math:`\sigma_L`
  (:func:`~numpyro_ebm.datasets.ring_mixture_log_prob`), the density the learned energy
  models;
* the energy :math:`E_\theta(x, \sigma_L)` learned by score matching alone (NCSN, Song &
  Ermon 2019), blind to the modes' masses;
* the energy of the default training (``ne.workflow.train``): NCSN, then maximum likelihood
  with replica-exchange negatives (``ne.training.replica_exchange_pcd``).

The error of a posterior mean is measured in posterior standard deviations of the true
posterior, :math:`\max_i |\bar x_i - \bar x_i^{true}| / \mathrm{sd}_i^{true}`. Then the
learned prior is used as a library user would: as ``ne.EnergyDistribution`` in a NumPyro
model, sampled by ``ne.sample(model, "parallel_tempering")``, whose mean must agree with the
quadrature of the same model within its Monte Carlo error.

Writes ``posteriors.png`` (each observation's three posteriors and their means),
``metrics.json`` (per observation and prior: posterior mean, sd, error in sd; the sampled
means with their MCSE) and the trained networks to ``--out``.

Run: ``python examples/ring_prior.py [--smoke] [--out DIR] [--seed N]``; the full size takes
about 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # first: XLA flags for --smoke and the Agg canvas, before JAX

# isort: split

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from matplotlib.figure import Figure

import numpyro_ebm as ne
from numpyro_ebm import _arviz, datasets, workflow
from numpyro_ebm.evidence import exact

RING = datasets.WEIGHTED_RING
#: (observed coordinate j, observed value y): each allows two or three of the ring's modes
OBSERVATIONS = ((0, 1.0), (0, -1.0), (1, 1.2))
NOISE_SD = 0.3
BOX = ([-4.0, -4.0], [4.0, 4.0])


def posterior_moments(energy, j: int, y: float, num: int = 320) -> dict:
    """Mean and sd of :math:`p(x \\mid y) \\propto e^{-E(x)} \\mathcal{N}(y; x_j, s^2)` by
    quadrature on :func:`~numpyro_ebm.evidence.exact.grid`."""
    cells = exact.grid(*BOX, num)
    points = np.asarray(cells.points, np.float64)
    log_prior = -np.asarray(jax.vmap(energy)(cells.points), np.float64)
    log_post = log_prior - 0.5 * ((points[:, j] - y) / NOISE_SD) ** 2
    weight = np.exp(log_post - log_post.max())
    weight /= weight.sum()
    mean = weight @ points
    sd = np.sqrt(weight @ (points - mean) ** 2)
    return {"mean": mean.tolist(), "sd": sd.tolist(), "density": weight.reshape(num, num)}


def model(y, j, energy):
    x = numpyro.sample("x", ne.EnergyDistribution(energy, event_shape=(2,)))
    numpyro.sample("y", dist.Normal(x[j], NOISE_SD), obs=y)


def main(argv=None) -> dict:
    args = _setup.parse_args("ring_prior", __doc__, argv)
    key = jax.random.key(args.seed)
    size = 2000 if args.smoke else 10_000
    data = np.asarray(datasets.toy("weighted_ring", jax.random.fold_in(key, 1), size))
    settings = workflow.TrainSettings()
    if args.smoke:
        settings = settings._replace(
            num_steps=200, hidden=(32, 32), likelihood_steps=100, likelihood_chains=64
        )
    truth = datasets.toy_log_prob("weighted_ring")
    energies = {}
    for label, steps in (("score matching alone", 0), ("default training", None)):
        run = settings if steps is None else settings._replace(likelihood_steps=steps)
        trained, _ = workflow.train(
            data, run, key=key, out_dir=args.out / label.replace(" ", "_"), progress=False
        )
        energies[label] = workflow.energy_of(trained)
    level = float(trained.metadata["sigmas"][-1])
    energies = {"true prior": lambda x: -truth(x, level)} | energies

    record: dict = {"noise_sd": NOISE_SD, "sigma_L": level, "observations": []}
    fig = Figure(figsize=(3.2 * len(energies), 3.0 * len(OBSERVATIONS)))
    axes = fig.subplots(len(OBSERVATIONS), len(energies), squeeze=False)
    for row, (j, y) in enumerate(OBSERVATIONS):
        moments = {label: posterior_moments(e, j, y) for label, e in energies.items()}
        exact_sd = np.asarray(moments["true prior"]["sd"])
        exact_mean = np.asarray(moments["true prior"]["mean"])
        entry = {"coordinate": j, "y": y, "posteriors": {}}
        for col, (label, m) in enumerate(moments.items()):
            error = float(np.max(np.abs(np.asarray(m["mean"]) - exact_mean) / exact_sd))
            entry["posteriors"][label] = {
                "mean": m["mean"],
                "sd": m["sd"],
                "mean_error_in_sd": error,
            }
            ax = axes[row, col]
            ax.imshow(m["density"].T, origin="lower", extent=[-4, 4, -4, 4], cmap="magma")
            ax.plot(*m["mean"], "c+", markersize=12, mew=2)
            ax.plot(*exact_mean, "wx", markersize=8)
            ax.set_title(f"{label}\nx{j} = {y}: error {error:.2f} sd", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        # the learned prior inside a NumPyro model, sampled by replica exchange
        learned = energies["default training"]
        draws = ne.sample(
            model,
            "parallel_tempering",
            key=jax.random.fold_in(key, 10 + row),
            model_kwargs={"y": jnp.asarray(y), "j": j, "energy": learned},
            num_chains=8 if args.smoke else 32,
            num_samples=200 if args.smoke else 2000,
            num_warmup=100 if args.smoke else 500,
            progress=False,
        )
        summary = ne.diagnostics.summary(_arviz.group(draws, "posterior")["x"].values)
        sampled = np.asarray(summary["mean"])
        mcse = np.asarray(summary["mcse_mean"])
        quadrature = np.asarray(moments["default training"]["mean"])
        entry["sampled"] = {
            "mean": sampled.tolist(),
            "mcse": mcse.tolist(),
            "max_rhat": float(np.max(summary["rhat"])),
            "z_against_quadrature": float(np.max(np.abs(sampled - quadrature) / mcse)),
        }
        record["observations"].append(entry)
        print(
            f"x{j} = {y}: posterior mean error (true-posterior sd) "
            + ", ".join(f"{k}: {v['mean_error_in_sd']:.3f}" for k, v in entry["posteriors"].items())
            + f"; parallel tempering on the learned prior: R-hat {entry['sampled']['max_rhat']:.3f}"
            + f", {entry['sampled']['z_against_quadrature']:.2f} MCSE from its quadrature"
        )
    fig.suptitle("posteriors under the true and the learned priors (+ mean, x true mean)")
    fig.tight_layout()
    fig.savefig(args.out / "posteriors.png", dpi=110)
    worst = {
        label: max(o["posteriors"][label]["mean_error_in_sd"] for o in record["observations"])
        for label in energies
    }
    record["worst_mean_error_in_sd"] = worst
    (args.out / "metrics.json").write_text(json.dumps(record, indent=1))
    print(f"worst posterior-mean error in true-posterior sd: {worst}")
    return record


if __name__ == "__main__":
    main()
