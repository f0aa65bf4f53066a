#!/usr/bin/env python3
"""numpyro-ebm on the TorchEBM peer benchmark (the third script next to the peers' two).

Times the tasks of ``shared/peers/jax_reference_bench.py`` and ``torchebm_bench.py`` through
this library's public API, on the same float32 MLP energy
E(x) = Linear(dim,h)-SiLU-Linear(h,h)-SiLU-Linear(h,1) (``numpyro_ebm.MLPEnergy``, whose
``nnx.Linear`` weights and biases are re-drawn PyTorch-style, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
from the same keys as the JAX reference: for one ``--seed`` the weights are bitwise the
reference's) and the same data (8-Gaussian ring, 16 pre-made batches of ``--batch``):

  (a) ``langevin_chain_steps_per_s``: the ULA kernel ``numpyro_ebm.kernels.ula``
      (BlackJAX form) written the way a BlackJAX user writes it: ``vmap(init)``, then a
      ``lax.scan`` over steps of ``vmap(step)`` with one key per chain, in one ``jax.jit``;
      step size eps = 2 * --step-size (x + (eps/2) grad log p + sqrt(eps) z, the reference's
      chain); timed calls after the compiling call;
  (b) ``mala_chain_steps_per_s``: ``ne.sample(energy, "mala", num_warmup=0,
      num_samples=--steps)``, chains x steps / wall of the whole ``sample()`` call (draws
      returned as ``arviz.InferenceData``), timed after a first call;
  (c) ``annealed_langevin_chain_steps_per_s``: ``ne.sample(E(x, sigma), "annealed_langevin",
      num_samples=1)`` with L levels x T steps per level, L*T = --steps; counted as
      chains x L x T. The noise-conditional energy is the same MLP, E(x, sigma) = E(x), so a
      step costs what a Langevin step costs; sigmas geometric from 1 to 0.1 and
      step_size = eps * 0.1**2, so that the largest level's step is the Langevin task's eps;
  (d) ``dsm_steps_per_s``: ``training.dsm(apply, sigma)`` + ``optax.adam(lr)`` through
      ``ne.fit`` (``--steps-per-chunk`` steps per compiled chunk); one ``fit()`` call of
      1 + repeats * (train_steps / steps_per_chunk) chunks, its chunk ends time-stamped by a
      callback (``fit`` syncs on every chunk end). The first chunk (compilation + warm-up) is
      not timed; each of ``--repeats`` windows is ``--train-steps`` steps;
  (e) ``cd10_steps_per_s``: ``training.cd(apply, k=--cd-k, step_size=eps, alpha=0.001)``
      (TorchEBM's default energy regularisation) through ``fit``, timed the same way.

Differences from the bare reference that belong to the library (and are part of what is timed):
``fit`` draws each minibatch from the 16*batch data pool with replacement (a gather) instead of
cycling pre-made batches, checks loss and gradients for finiteness and records per-chunk
means of the loss; ULA caches log p and its gradient in its state (value_and_grad) and checks
finiteness; chains get one key each.

``fit()`` and ``sample()`` compile afresh on every call (each builds a new ``jax.jit``). For
(b) and (c) the main key is chains x steps / (wall of a repeat ``sample()`` call minus the time
JAX itself reports spending on tracing, lowering and XLA compilation during it, via
``jax.monitoring`` duration events); ``*_sample_call_chain_steps_per_s`` is the rate of the
whole call, compilation included, as a user sees it. First-call and repeat-call walls are under
``compile_s`` / ``end_to_end``.

The last line printed is one JSON object in the peers' format (see shared/peers/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=2, help="data / state dimension")
    p.add_argument("--hidden", type=int, default=128, help="MLP hidden width")
    p.add_argument("--chains", type=int, default=1024, help="Langevin chains")
    p.add_argument("--steps", type=int, default=1000, help="timed Langevin steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--step-size",
        type=float,
        default=0.01,
        help="TorchEBM-convention eta; our ULA step is eps = 2*eta",
    )
    p.add_argument("--batch", type=int, default=256, help="training batch size")
    p.add_argument("--train-steps", type=int, default=200, help="optimizer steps per timed window")
    p.add_argument(
        "--train-warmup",
        type=int,
        default=20,
        help="accepted for CLI compatibility; fit's first chunk (--steps-per-chunk "
        "steps, compiling) is the untimed warm-up",
    )
    p.add_argument(
        "--steps-per-chunk",
        type=int,
        default=100,
        help="fit(steps_per_chunk=...); must divide --train-steps",
    )
    p.add_argument("--cd-k", type=int, default=10, help="Langevin steps per CD update")
    p.add_argument(
        "--cd-reg",
        type=float,
        default=0.001,
        help="cd(alpha=...), TorchEBM's energy_reg_weight default",
    )
    p.add_argument("--dsm-sigma", type=float, default=0.1, help="DSM noise std")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument(
        "--levels", type=int, default=10, help="annealed Langevin noise levels L (T = steps // L)"
    )
    p.add_argument("--prng", choices=["threefry2x32", "rbg", "unsafe_rbg"], default="threefry2x32")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed repetitions of each measurement in this run; the median is reported",
    )
    p.add_argument(
        "--only", choices=["all", "langevin", "mala", "annealed", "dsm", "cd"], default="all"
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.train_steps % args.steps_per_chunk:
        raise SystemExit("--steps-per-chunk must divide --train-steps")

    import jax
    import jax.numpy as jnp
    import jaxlib
    import numpy as np
    import optax
    from flax import nnx

    import numpyro_ebm as ne
    from numpyro_ebm import training
    from numpyro_ebm.kernels import ula

    jax.config.update("jax_default_prng_impl", args.prng)
    f32 = jnp.float32
    eps = 2.0 * args.step_size  # ULA: x + (eps/2) grad log p + sqrt(eps) z

    # --- keys and data: the same derivation as jax_reference_bench.py ------------------------
    root = jax.random.PRNGKey(args.seed)
    k_init, k_data, k_mode, k_x0, k_run = jax.random.split(root, 5)

    # Data generator copied from shared/peers/jax_reference_bench.py (8-Gaussian ring in
    # dims 0-1, radius 2, std 0.2; N(0, 0.2^2) in the other dims; 16 batches).
    n_pool = 16
    n = n_pool * args.batch
    ang = jax.random.randint(k_mode, (n,), 0, 8).astype(f32) * (2 * math.pi / 8)
    pool = 0.2 * jax.random.normal(k_data, (n, args.dim), f32)
    pool = pool.at[:, 0].add(2.0 * jnp.cos(ang))
    if args.dim > 1:
        pool = pool.at[:, 1].add(2.0 * jnp.sin(ang))
    pool = jax.block_until_ready(pool)

    # --- model: the library's MLPEnergy, PyTorch-default init (the reference's draws) -------
    def torch_like_init(key):
        """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, the reference's keys."""
        params = []
        for fan_in, fan_out in (
            (args.dim, args.hidden),
            (args.hidden, args.hidden),
            (args.hidden, 1),
        ):
            key, kw, kb = jax.random.split(key, 3)
            bound = 1.0 / math.sqrt(fan_in)
            w = jax.random.uniform(kw, (fan_in, fan_out), f32, -bound, bound)
            b = jax.random.uniform(kb, (fan_out,), f32, -bound, bound)
            params.append((w, b))
        return params

    def make_net():
        net = ne.MLPEnergy((args.dim,), hidden=(args.hidden, args.hidden), rngs=nnx.Rngs(0))
        for layer, (w, b) in zip(net.mlp.layers, torch_like_init(k_init), strict=True):
            layer.kernel[...] = w
            layer.bias[...] = b
        return net

    apply, params0 = ne.as_pure(make_net())  # apply(params, x) -> scalar energy

    result = {
        "library": "numpyro-ebm",
        "version": ne.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "langevin_chain_steps_per_s": None,
        "dsm_steps_per_s": None,
        "cd10_steps_per_s": None,
        "mala_chain_steps_per_s": None,
        "annealed_langevin_chain_steps_per_s": None,
        "mala_sample_call_chain_steps_per_s": None,
        "annealed_langevin_sample_call_chain_steps_per_s": None,
    }
    samples, compile_s, end_to_end, checks = {}, {}, {}, {}

    # equivalence check against the reference's hand-written MLP
    def ref_energy(x):
        (w1, b1), (w2, b2), (w3, b3) = torch_like_init(k_init)
        h = jax.nn.silu(x @ w1 + b1)
        h = jax.nn.silu(h @ w2 + b2)
        return (h @ w3 + b3)[0]

    probe = pool[:64]
    checks["mlp_max_abs_diff_vs_reference"] = float(
        jnp.max(jnp.abs(jax.vmap(lambda x: apply(params0, x))(probe) - jax.vmap(ref_energy)(probe)))
    )

    x0 = jax.random.normal(k_x0, (args.chains, args.dim), f32)

    # (a) ULA, vmapped over chains in lax.scan, as a BlackJAX user writes it -----------------
    if args.only in ("all", "langevin"):
        algorithm = ula.as_top_level_api(lambda x: -apply(params0, x), step_size=eps)

        @jax.jit
        def run_langevin(x0, key):
            state = jax.vmap(algorithm.init)(x0)

            def one_step(state, step_key):
                state, _ = jax.vmap(algorithm.step)(jax.random.split(step_key, args.chains), state)
                return state, None

            state, _ = jax.lax.scan(one_step, state, jax.random.split(key, args.steps))
            return state.position

        t0 = time.perf_counter()
        jax.block_until_ready(run_langevin(x0, k_run))
        compile_s["langevin_first_call"] = time.perf_counter() - t0
        rates = []
        for r in range(args.repeats):
            k2 = jax.random.fold_in(k_run, r + 1)
            t0 = time.perf_counter()
            xs = jax.block_until_ready(run_langevin(x0, k2))
            rates.append(args.chains * args.steps / (time.perf_counter() - t0))
        samples["langevin_chain_steps_per_s"] = rates
        result["langevin_chain_steps_per_s"] = statistics.median(rates)
        checks["langevin_finite"] = bool(jnp.all(jnp.isfinite(xs)))
        checks["langevin_final_std"] = float(jnp.std(xs))

    energy = lambda x: apply(params0, x)

    # sample() builds (and so compiles) its jitted programs afresh on every call. JAX's own
    # compile-time events tell how much of a call's wall was tracing, lowering and XLA
    # compilation; the rate reported under the main key excludes them (like the reference's
    # rates, which exclude compilation), the whole-call rate is reported beside it.
    compile_events = {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
    compile_clock = [0.0]

    def on_event(name, duration, **kwargs):
        if name in compile_events:
            compile_clock[0] += duration

    jax.monitoring.register_event_duration_secs_listener(on_event)

    def time_sample(tag, call, chain_steps):
        t0 = time.perf_counter()
        call(jax.random.fold_in(k_run, 100))
        compile_s[tag + "_first_call"] = time.perf_counter() - t0
        rates, call_rates, walls, compiles = [], [], [], []
        for r in range(args.repeats):
            compile_clock[0] = 0.0
            t0 = time.perf_counter()
            idata = call(jax.random.fold_in(k_run, 101 + r))
            wall = time.perf_counter() - t0
            walls.append(wall)
            compiles.append(compile_clock[0])
            call_rates.append(chain_steps / wall)
            rates.append(chain_steps / (wall - compile_clock[0]))
        samples[tag + "_chain_steps_per_s"] = rates
        samples[tag + "_sample_call_chain_steps_per_s"] = call_rates
        end_to_end[tag + "_sample_call_s"] = walls
        end_to_end[tag + "_sample_call_compile_s"] = compiles
        result[tag + "_chain_steps_per_s"] = statistics.median(rates)
        result[tag + "_sample_call_chain_steps_per_s"] = statistics.median(call_rates)
        return idata

    # (b) MALA through sample() ---------------------------------------------------------------
    if args.only in ("all", "mala"):

        def call_mala(key):
            return ne.sample(
                energy,
                "mala",
                key=key,
                num_chains=args.chains,
                num_samples=args.steps,
                num_warmup=0,
                init_position=x0,
                event_shape=(args.dim,),
                step_size=eps,
            )

        idata = time_sample("mala", call_mala, args.chains * args.steps)
        draws = np.asarray(idata.posterior["x"])
        checks["mala_finite"] = bool(np.all(np.isfinite(draws)))
        checks["mala_acceptance_rate"] = float(np.mean(idata.sample_stats["acceptance_rate"]))

    # (c) annealed Langevin through sample() --------------------------------------------------
    if args.only in ("all", "annealed"):
        levels = max(1, min(args.levels, args.steps))
        per_level = args.steps // levels
        sigmas = (
            np.geomspace(1.0, 0.1, levels).astype(np.float32)
            if levels > 1
            else np.asarray([1.0], np.float32)
        )
        al_step = eps * float(sigmas[-1] / sigmas[0]) ** 2  # largest level's alpha == eps
        nc_energy = lambda x, sigma: apply(params0, x)

        def call_annealed(key):
            return ne.sample(
                nc_energy,
                "annealed_langevin",
                key=key,
                num_chains=args.chains,
                num_samples=1,
                num_warmup=0,
                init_position=x0,
                event_shape=(args.dim,),
                sigmas=sigmas,
                step_size=al_step,
                num_steps_per_level=per_level,
            )

        idata = time_sample("annealed_langevin", call_annealed, args.chains * levels * per_level)
        checks["annealed_levels_x_steps"] = [levels, per_level]
        checks["annealed_finite"] = bool(np.all(np.isfinite(np.asarray(idata.posterior["x"]))))

    # (d), (e) training through fit() ----------------------------------------------------------
    def train(loss, tag):
        chunks_per_window = args.train_steps // args.steps_per_chunk
        num_steps = args.steps_per_chunk * (1 + args.repeats * chunks_per_window)
        stamps = []
        t_start = time.perf_counter()
        out = ne.fit(
            loss,
            params0,
            pool,
            key=jax.random.fold_in(k_run, 7),
            optimizer=optax.adam(args.lr),
            num_steps=num_steps,
            batch_size=args.batch,
            steps_per_chunk=args.steps_per_chunk,
            progress=False,
            callbacks=[lambda step, p, h: stamps.append(time.perf_counter())],
        )
        t_end = time.perf_counter()
        compile_s[tag.split("_")[0] + "_first_chunk"] = stamps[0] - t_start
        rates = []
        for r in range(args.repeats):
            a = stamps[r * chunks_per_window]
            b = stamps[(r + 1) * chunks_per_window]
            rates.append(args.train_steps / (b - a))
        samples[tag] = rates
        end_to_end[tag.split("_")[0] + "_fit_call_s"] = t_end - t_start
        end_to_end[tag.split("_")[0] + "_fit_num_steps"] = num_steps
        checks[tag.split("_")[0] + "_final_loss"] = float(out.history["loss"][-1])
        return statistics.median(rates)

    if args.only in ("all", "dsm"):
        result["dsm_steps_per_s"] = train(training.dsm(apply, args.dsm_sigma), "dsm_steps_per_s")
    if args.only in ("all", "cd"):
        result["cd10_steps_per_s"] = train(
            training.cd(apply, k=args.cd_k, step_size=eps, alpha=args.cd_reg), "cd10_steps_per_s"
        )

    result["config"] = {
        "dim": args.dim,
        "hidden": args.hidden,
        "chains": args.chains,
        "steps": args.steps,
        "seed": args.seed,
        "batch": args.batch,
        "train_steps": args.train_steps,
        "steps_per_chunk": args.steps_per_chunk,
        "repeats": args.repeats,
        "cd_k": args.cd_k,
        "step_size": args.step_size,
        "eps": eps,
        "langevin_update": "x + (eps/2)*grad log p + sqrt(eps)*z, eps = 2*step_size (ULA kernel)",
        "dsm_sigma": args.dsm_sigma,
        "cd_energy_reg_weight": args.cd_reg,
        "lr": args.lr,
        "optimizer": "optax.adam (b1=0.9, b2=0.999, eps=1e-8)",
        "annealed_levels": args.levels,
        "dtype": "float32",
        "prng": args.prng,
        "mlp": f"MLPEnergy: Linear({args.dim},{args.hidden})-SiLU-Linear({args.hidden},"
        f"{args.hidden})-SiLU-Linear({args.hidden},1), PyTorch-default init",
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    result["samples"] = samples
    result["compile_s"] = compile_s
    result["end_to_end"] = end_to_end
    result["checks"] = checks
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
