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
      ``lax.scan`` over steps of ``vmap(step)`` with one key per chain, in one ``jax.jit``
      that takes the MLP's parameters as an argument (traced, as the bare loop takes its
      weights); step size eps = 2 * --step-size (x + (eps/2) grad log p + sqrt(eps) z, the
      reference's chain); timed calls after the compiling call, whose wall is
      ``compile_s["langevin_first_call"]`` (the bare loop reports the same key);
      ``langevin_const_chain_steps_per_s``: the same program with the parameters closed over
      (compile-time constants, as ``sample()`` takes an energy), its repeats interleaved with
      (a)'s;
  (b) ``mala_chain_steps_per_s``: ``ne.sample(energy, "mala", num_warmup=0,
      num_samples=--steps)``, chains x steps / wall of a repeated ``sample()`` call (its
      programs come from the program cache: nothing is compiled again, the energy is only
      traced to key the cache, about a millisecond; the draws are returned as
      ``arviz.InferenceData``); ``mala_first_call_chain_steps_per_s``: the
      same over the first call's wall (tracing and compilation included). ``sample()`` takes
      an energy callable, so the MLP's weights are constants of its programs: its API has no
      way to pass them as arguments;
  (c) ``annealed_langevin_chain_steps_per_s``: ``ne.sample(E(x, sigma), "annealed_langevin",
      num_samples=1)`` with L levels x T steps per level, L*T = --steps; counted as
      chains x L x T, timed as (b). The noise-conditional energy is the same MLP,
      E(x, sigma) = E(x), so a step costs what a Langevin step costs; sigmas geometric from 1
      to 0.1 and step_size = eps * 0.1**2, so that the largest level's step is the Langevin
      task's eps;
  (d) ``dsm_steps_per_s``: the objective ``training.dsm(apply, sigma)`` + ``optax.adam(lr)``
      in the bare loop's harness: one jitted optimizer step (loss, gradient, update; params,
      optimizer state and key as arguments) dispatched once per step, over the same 16
      pre-made batches, cycled; --train-warmup untimed steps (the first compiles:
      ``compile_s["dsm_first_step"]``), then --repeats windows of --train-steps steps, synced
      at the window's end, exactly as ``jax_reference_bench.py`` times its step;
      ``dsm_fit_steps_per_s``: the same objective through ``ne.fit`` (``--steps-per-chunk``
      steps per compiled ``lax.scan`` chunk, the library's training loop); one ``fit()`` call
      of 1 + repeats * (train_steps / steps_per_chunk) chunks, its chunk ends time-stamped by
      a callback (``fit`` syncs on every chunk end). The first chunk (compilation + warm-up)
      is not timed; each of ``--repeats`` windows is ``--train-steps`` steps;
  (e) ``cd10_steps_per_s`` / ``cd10_fit_steps_per_s``: ``training.cd(apply, k=--cd-k,
      step_size=eps, alpha=0.001)`` (TorchEBM's default energy regularisation), timed as (d).

Differences from the bare reference that belong to the library (and are part of what is timed):
optax's Adam instead of a hand-written one; ``fit`` draws each minibatch from the 16*batch data
pool with replacement (a gather) instead of cycling pre-made batches, checks loss and
gradients for finiteness and records per-chunk means of the loss; ULA caches log p and its
gradient in its state (value_and_grad) and checks finiteness; chains get one key each.

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
        help="untimed steps of the per-step loops (the first compiles), as the bare loop's; "
        "fit's first chunk (--steps-per-chunk steps, compiling) is its untimed warm-up",
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
    p.add_argument(
        "--no-fit",
        action="store_true",
        help="skip the fit() variants of DSM and CD (keep the per-step loops)",
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
    batches = [
        jax.block_until_ready(pool[i * args.batch : (i + 1) * args.batch]) for i in range(n_pool)
    ]

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
        "langevin_const_chain_steps_per_s": None,
        "dsm_fit_steps_per_s": None,
        "cd10_fit_steps_per_s": None,
        "mala_chain_steps_per_s": None,
        "annealed_langevin_chain_steps_per_s": None,
        "mala_first_call_chain_steps_per_s": None,
        "annealed_langevin_first_call_chain_steps_per_s": None,
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
    # The MLP's parameters enter as an argument (traced), as the bare loop's weights do; the
    # "const" variant closes over them (compile-time constants, as sample() takes an energy).
    if args.only in ("all", "langevin"):

        def langevin_program(params, x0, key):
            algorithm = ula.as_top_level_api(lambda x: -apply(params, x), step_size=eps)
            state = jax.vmap(algorithm.init)(x0)

            def one_step(state, step_key):
                state, _ = jax.vmap(algorithm.step)(jax.random.split(step_key, args.chains), state)
                return state, None

            state, _ = jax.lax.scan(one_step, state, jax.random.split(key, args.steps))
            return state.position

        variants = {
            "langevin": jax.jit(langevin_program),
            "langevin_const": jax.jit(lambda x0, key: langevin_program(params0, x0, key)),
        }
        calls = {
            "langevin": lambda key: variants["langevin"](params0, x0, key),
            "langevin_const": lambda key: variants["langevin_const"](x0, key),
        }
        for tag, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call(k_run))
            compile_s[tag + "_first_call"] = time.perf_counter() - t0
        rates = {tag: [] for tag in calls}
        for r in range(args.repeats):
            k2 = jax.random.fold_in(k_run, r + 1)
            order = list(calls) if r % 2 == 0 else list(calls)[::-1]
            for tag in order:
                t0 = time.perf_counter()
                xs = jax.block_until_ready(calls[tag](k2))
                rates[tag].append(args.chains * args.steps / (time.perf_counter() - t0))
                checks[tag + "_finite"] = bool(jnp.all(jnp.isfinite(xs)))
                checks[tag + "_final_std"] = float(jnp.std(xs))
        for tag in calls:
            samples[tag + "_chain_steps_per_s"] = rates[tag]
            result[tag + "_chain_steps_per_s"] = statistics.median(rates[tag])

    energy = lambda x: apply(params0, x)

    # sample() keeps its built programs in the program cache: a repeated call with the same
    # target and shapes traces and compiles nothing. JAX's own compile-time events (tracing,
    # lowering, XLA) are counted during each call as a check: zero on a repeated call.
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
        compile_clock[0] = 0.0
        t0 = time.perf_counter()
        call(jax.random.fold_in(k_run, 100))
        first = time.perf_counter() - t0
        compile_s[tag + "_first_call"] = first
        end_to_end[tag + "_first_call_compile_s"] = compile_clock[0]
        rates, walls, compiles = [], [], []
        for r in range(args.repeats):
            compile_clock[0] = 0.0
            t0 = time.perf_counter()
            idata = call(jax.random.fold_in(k_run, 101 + r))
            wall = time.perf_counter() - t0
            walls.append(wall)
            compiles.append(compile_clock[0])
            rates.append(chain_steps / wall)
        samples[tag + "_chain_steps_per_s"] = rates
        end_to_end[tag + "_sample_call_s"] = walls
        end_to_end[tag + "_sample_call_compile_s"] = compiles
        result[tag + "_chain_steps_per_s"] = statistics.median(rates)
        result[tag + "_first_call_chain_steps_per_s"] = chain_steps / first
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

    # (d), (e) training: per-step dispatch (the bare loop's harness), then through fit() ------
    def train_per_step(objective, tag):
        """The bare loop's ``train()``: one jitted step per call, pre-made batches cycled."""
        optimizer = optax.adam(args.lr)
        grad_fn = jax.value_and_grad(objective.loss, has_aux=True)

        @jax.jit
        def step_fn(params, opt_state, key, x):
            key, sub = jax.random.split(key)
            (value, _), grads = grad_fn(params, x, sub, None)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, value

        params, opt_state = params0, optimizer.init(params0)
        key = jax.random.fold_in(k_run, 7)
        nb = len(batches)
        t0 = time.perf_counter()
        params, opt_state, key, loss = step_fn(params, opt_state, key, batches[0])
        jax.block_until_ready(params)
        compile_s[tag + "_first_step"] = time.perf_counter() - t0
        for i in range(1, args.train_warmup):
            params, opt_state, key, loss = step_fn(params, opt_state, key, batches[i % nb])
        jax.block_until_ready(params)
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(args.train_steps):
                params, opt_state, key, loss = step_fn(params, opt_state, key, batches[i % nb])
            jax.block_until_ready((params, loss))
            rates.append(args.train_steps / (time.perf_counter() - t0))
        samples[tag + "_steps_per_s"] = rates
        checks[tag + "_final_loss"] = float(loss)
        result[tag + "_steps_per_s"] = statistics.median(rates)

    def train_fit(objective, tag):
        chunks_per_window = args.train_steps // args.steps_per_chunk
        num_steps = args.steps_per_chunk * (1 + args.repeats * chunks_per_window)
        stamps = []
        t_start = time.perf_counter()
        out = ne.fit(
            objective,
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
        compile_s[tag + "_fit_first_chunk"] = stamps[0] - t_start
        rates = []
        for r in range(args.repeats):
            a = stamps[r * chunks_per_window]
            b = stamps[(r + 1) * chunks_per_window]
            rates.append(args.train_steps / (b - a))
        samples[tag + "_fit_steps_per_s"] = rates
        end_to_end[tag + "_fit_call_s"] = t_end - t_start
        end_to_end[tag + "_fit_num_steps"] = num_steps
        checks[tag + "_fit_final_loss"] = float(out.history["loss"][-1])
        result[tag + "_fit_steps_per_s"] = statistics.median(rates)

    objectives = {}
    if args.only in ("all", "dsm"):
        objectives["dsm"] = training.dsm(apply, args.dsm_sigma)
    if args.only in ("all", "cd"):
        objectives["cd10"] = training.cd(apply, k=args.cd_k, step_size=eps, alpha=args.cd_reg)
    for tag, objective in objectives.items():
        train_per_step(objective, tag)
        if not args.no_fit:
            train_fit(objective, tag)

    result["config"] = {
        "dim": args.dim,
        "hidden": args.hidden,
        "chains": args.chains,
        "steps": args.steps,
        "seed": args.seed,
        "batch": args.batch,
        "train_steps": args.train_steps,
        "train_warmup": args.train_warmup,
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
        "training_loops": "per-step: one jitted step per call, 16 pre-made batches cycled "
        "(the bare loop's harness); fit: steps_per_chunk steps per compiled lax.scan chunk",
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
