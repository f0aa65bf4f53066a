r"""The 2-D Ising model across its phase transition, with four discrete samplers.

The periodic :math:`L \times L` Ising model :math:`p_\beta(s) \propto e^{-\beta E(s)}`,
:math:`E(s) = -\sum_{\langle ij \rangle} s_i s_j` (``ne.models.ising.Ising``), is sampled at
inverse temperatures across :math:`\beta_c = \tfrac12 \ln(1 + \sqrt 2) \approx 0.4407` by

* ``gibbs``: single-site heat-bath Gibbs, random scan (one step = :math:`L^2` site updates);
* ``checkerboard``: red-black heat-bath sweeps, a sublattice at a time;
* ``parallel_tempering``: replica exchange over 4 temperatures in :math:`[1, 1.5]` with
  checkerboard sweeps inside;
* ``swendsen_wang``: cluster updates.

Figure 1 (``curves.png``) shows the mean :math:`|m|` and the energy per site (with 2 Monte
Carlo standard errors) against :math:`\beta`, over Onsager's infinite-lattice curves: the
finite lattice rounds the transition. Figure 2 (``autocorrelation.png``) shows the integrated
autocorrelation time of :math:`|m|` at :math:`\beta_c` against :math:`L` for checkerboard
(local) and Swendsen-Wang (cluster) sweeps, :math:`\tau = ` draws / ESS: the local sampler's
grows about as :math:`L^{z}`, :math:`z \approx 2.17`, critical slowing down, the cluster
sampler's barely grows.

Writes ``curves.png``, ``autocorrelation.png`` and ``metrics.json`` to ``--out``.

Run: ``python examples/ising.py [--smoke] [--out DIR] [--seed N]``.

References
----------
L. Onsager (1944). Crystal statistics. I. Physical Review 65(3-4).
R. H. Swendsen and J.-S. Wang (1987). Nonuniversal critical dynamics in Monte Carlo
simulations. Physical Review Letters 58(2).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # first: XLA flags for --smoke and the Agg canvas, before JAX and pyplot

# isort: split

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from numpyro.diagnostics import effective_sample_size

from numpyro_ebm.kernels import checkerboard, gibbs, replica_exchange, swendsen_wang
from numpyro_ebm.models.ising import (
    Ising,
    critical_beta,
    onsager_energy,
    onsager_magnetization,
)

NAME = "ising"


class Config(NamedTuple):
    L: int
    betas: tuple[float, ...]
    num_chains: int
    num_sweeps: int
    sizes: tuple[int, ...]
    num_sweeps_tau: int


FULL = Config(16, (0.30, 0.36, 0.40, 0.44, 0.48, 0.52, 0.60), 8, 400, (8, 16, 32), 2000)
SMOKE = Config(4, (0.3, 0.6), 4, 40, (4, 8), 100)
SAMPLERS = ("gibbs", "checkerboard", "parallel_tempering", "swendsen_wang")


def make_sampler(name: str, model: Ising):
    if name == "gibbs":
        return gibbs.as_top_level_api(model)
    if name == "checkerboard":
        return checkerboard.as_top_level_api(model)
    if name == "parallel_tempering":
        return replica_exchange.as_top_level_api(
            model,
            replica_exchange.geometric_ladder(4, 1.5),
            lambda logdensity, temperature: checkerboard.as_top_level_api(logdensity),
        )
    return swendsen_wang.as_top_level_api(model)


@functools.cache
def runner(name: str, size: int, num_chains: int, num_sweeps: int):
    """A jitted ``run(key, beta)``: (|m|, energy per site) after every sweep of every chain,
    from random spins, shape ``(chains, sweeps, 2)``. ``beta`` is traced, so one compilation
    serves every temperature."""

    def run(key, beta):
        model = Ising(size, beta=beta)
        algorithm = make_sampler(name, model)
        start_key, run_key = jax.random.split(key)
        starts = 2.0 * jax.random.bernoulli(start_key, 0.5, (num_chains, size, size)) - 1.0

        def chain(chain_key, start):
            def sweep(state, sweep_key):
                state, _ = algorithm.step(sweep_key, state)
                s = state.position
                statistics = [jnp.abs(model.magnetization(s)), model.energy(s) / s.size]
                return state, jnp.stack(statistics)

            keys = jax.random.split(chain_key, num_sweeps)
            return jax.lax.scan(sweep, algorithm.init(start), keys)[1]

        return jax.vmap(chain)(jax.random.split(run_key, num_chains), starts)

    return jax.jit(run)


def summarize(draws: np.ndarray) -> dict:
    """Mean, MCSE and integrated autocorrelation time of each statistic after a 20 % burn-in."""
    kept = draws[:, draws.shape[1] // 5 :].astype(np.float64)
    ess = effective_sample_size(kept)
    return {
        "mean": kept.mean(axis=(0, 1)).tolist(),
        "mcse": (kept.std(axis=(0, 1)) / np.sqrt(ess)).tolist(),
        "tau": (kept.shape[0] * kept.shape[1] / ess).tolist(),
    }


def plot_curves(path: Path, config: Config, curves: dict) -> None:
    grid = np.linspace(0.25, 0.65, 400)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(grid, onsager_magnetization(grid), "k-", lw=1, label="Onsager, L = ∞")
    axes[1].plot(grid, onsager_energy(grid), "k-", lw=1, label="Onsager, L = ∞")
    for offset, name in zip(np.linspace(-0.006, 0.006, len(SAMPLERS)), SAMPLERS, strict=True):
        for axis, column in zip(axes, (0, 1), strict=True):
            means = [curves[name][b]["mean"][column] for b in config.betas]
            errors = [2 * curves[name][b]["mcse"][column] for b in config.betas]
            axis.errorbar(
                np.asarray(config.betas) + offset, means, errors, fmt="o", ms=3, label=name
            )
    for axis, label in zip(axes, ("mean |m|", "energy per site"), strict=True):
        axis.axvline(critical_beta(), color="grey", ls=":", lw=1)
        axis.set_xlabel("β")
        axis.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{config.L} × {config.L} periodic Ising model")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_tau(path: Path, config: Config, taus: dict) -> None:
    fig, axis = plt.subplots(figsize=(5, 4))
    for name, values in taus.items():
        axis.loglog(config.sizes, values, "o-", label=name)
    axis.set_xlabel("L")
    axis.set_ylabel("integrated autocorrelation time of |m| (sweeps)")
    axis.set_title("at β_c: local vs cluster updates")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> dict:
    args = _setup.parse_args(NAME, __doc__, argv)
    config = SMOKE if args.smoke else FULL
    key = jax.random.key(args.seed)
    started = time.perf_counter()

    curves = {name: {} for name in SAMPLERS}
    for name in SAMPLERS:
        run = runner(name, config.L, config.num_chains, config.num_sweeps)
        for i, beta in enumerate(config.betas):
            draws = np.asarray(run(jax.random.fold_in(key, i), beta))
            curves[name][beta] = summarize(draws)

    taus = {"checkerboard": [], "swendsen_wang": []}
    for size in config.sizes:
        for name in taus:
            run = runner(name, size, 2 * config.num_chains, config.num_sweeps_tau)
            draws = np.asarray(run(jax.random.fold_in(key, 1000 + size), critical_beta()))
            taus[name].append(summarize(draws)["tau"][0])
    seconds = time.perf_counter() - started

    plot_curves(args.out / "curves.png", config, curves)
    plot_tau(args.out / "autocorrelation.png", config, taus)
    metrics = {
        "seconds": seconds,
        "L": config.L,
        "curves": {name: {str(b): v for b, v in c.items()} for name, c in curves.items()},
        "onsager": {
            str(b): [float(onsager_magnetization(b)), float(onsager_energy(b))]
            for b in config.betas
        },
        "sizes": list(config.sizes),
        "tau_at_beta_c": taus,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(f"ising ({'smoke' if args.smoke else 'full'} size): {seconds:.1f} s in all")
    print("beta    " + "  ".join(f"{name:>24}" for name in SAMPLERS) + "   Onsager (|m|, u)")
    for beta in config.betas:
        cells = [
            f"{c['mean'][0]:.3f}±{c['mcse'][0]:.3f} {c['mean'][1]:.3f}±{c['mcse'][1]:.3f}"
            for c in (curves[n][beta] for n in SAMPLERS)
        ]
        print(f"{beta:.3f}   " + "  ".join(cells) + f"   {metrics['onsager'][str(beta)]}")
    for name, values in taus.items():
        print(
            f"tau(|m|) at beta_c, {name}: "
            + ", ".join(f"L={s}: {t:.1f}" for s, t in zip(config.sizes, values, strict=True))
        )
    print(f"outputs in {args.out}")
    return metrics


if __name__ == "__main__":
    main()
