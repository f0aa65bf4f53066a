#!/usr/bin/env python3
"""Where an RBM epoch's compile and run time go: the hand-written PCD-1 epoch of
``bench_rbm.py`` with each thing ``fit_rbm``'s epoch adds switched on in turn, beside
``fit_rbm`` itself, each in a fresh process.

The epoch is 150 PCD-1 updates (batch 10, 10 persistent chains, learning rate 0.05) of a
Bernoulli RBM with 64 visible and ``--hidden`` hidden units on binarized digits (scikit-learn's
``load_digits``, pixel >= 8, the first 1500 images), one ``jax.jit`` of a ``lax.scan``, float32.
The variants:

* ``bare``: ``bench_rbm.py``'s hand-written loop: one key per update split three ways, one
  Bernoulli draw for all chains' hidden units and one for their visible units, the
  Rao-Blackwellized gradient written out, plain SGD;
* ``+chain_keys``: the negative phase as ``training.pcd`` runs it: the model's one-chain block
  Gibbs sweep ``vmap``-ed over the chains, each chain its own key (``split(key, chains)``, then
  ``split(chain_key, k)``, then the sweep's ``split``: BlackJAX's one-chain kernel contract);
* ``+autodiff``: the gradient by ``jax.value_and_grad`` of the mean free energies' difference
  (``BernoulliRBM.free_energy``) and the update by ``rbm_optimizer``'s optax chain;
* ``+guard``: ``training.fit``'s finiteness guard: the loss and every gradient checked each
  update, the parameters, the optimizer's state and the chains frozen from the first
  non-finite one, whose step is kept (without autodiff the new parameters are checked, as
  many values as the gradients);
* ``+statistics``: the loss and both mean free energies per update, averaged over the epoch
  (without autodiff a forward pass of their own, which ``fit_rbm`` never pays; hence also
  ``+autodiff+statistics``, where they are the gradient's forward pass);
* ``all``: the four together (``fit_rbm``'s epoch, written out);
* ``fit_rbm``: the library (``method="pcd"``, ``k=1``, one chunk per epoch).

Reported per variant (``--repeats`` fresh processes each, interleaved, the fastest kept: some
processes run the same program about 1.5x slower throughout on the 2-core machine): the XLA
compile time of the epoch program (JAX's ``backend_compile_duration`` event, its largest
program) and the median wall time of a compiled epoch (epochs 2..E). Not modelled beside
``fit_rbm``: its replay buffer's gather and scatter, ``pcd``'s own key split, the
regularizer's ``alpha = 0`` term, and data and key passed as arguments, not constants. Writes
``benchmarks/results/rbm_epoch.json`` (or ``--out``).

Run::

    python benchmarks/bench_rbm_epoch.py [--hidden 16] [--epochs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from bench_rbm import BATCH, INIT_SCALE, LEARNING_RATE

TRAIN = 1500
EXTRAS = ("chain_keys", "autodiff", "guard", "statistics")
VARIANTS = {
    "bare": (),
    **{f"+{extra}": (extra,) for extra in EXTRAS},
    "+autodiff+statistics": ("autodiff", "statistics"),
    "all": EXTRAS,
    "fit_rbm": None,
}


def epoch_program(data, key_fit, hidden: int, extras=()):
    """The jitted epoch ``epoch(carry, start) -> (carry, statistics)`` of PCD-1 on ``data``
    (float32 0/1 rows) with ``extras`` (a subset of ``EXTRAS``; none: ``bench_rbm.py``'s
    hand-written loop), and its initial carry ``init(key) -> carry``."""
    import jax
    import jax.numpy as jnp

    from numpyro_ebm.models.rbm import BernoulliRBM, RBMParams
    from numpyro_ebm.training.rbm import rbm_optimizer

    n, d = data.shape
    steps = n // BATCH
    model = BernoulliRBM(d, hidden)
    optimizer = rbm_optimizer(LEARNING_RATE)

    def negatives(params, v, k_h, k_v):
        W, b, c = params
        if "chain_keys" not in extras:
            h = jax.random.bernoulli(k_h, jax.nn.sigmoid(v @ W + c)).astype(jnp.float32)
            return jax.random.bernoulli(k_v, jax.nn.sigmoid(h @ W.T + b)).astype(jnp.float32)

        def chain(start, chain_key):
            k_hidden, k_visible = jax.random.split(jax.random.split(chain_key, 1)[-1])
            h = model.sample_hidden(k_hidden, RBMParams(*params), start)
            return model.sample_visible(k_visible, RBMParams(*params), h)

        return jax.vmap(chain)(v, jax.random.split(k_h, v.shape[0]))

    def loss(params, x, v):
        free = jax.vmap(lambda row: model.free_energy(RBMParams(*params), row))
        pos, neg = free(x), free(v)
        return jnp.mean(pos) - jnp.mean(neg), (jnp.mean(pos), jnp.mean(neg))

    def update(carry, t):
        params, opt_state, v, bad = carry
        W, b, c = params
        k_batch, k_h, k_v = jax.random.split(jax.random.fold_in(key_fit, t), 3)
        x = data[jax.random.randint(k_batch, (BATCH,), 0, n)]
        v = negatives(params, v, k_h, k_v)
        if "autodiff" in extras:
            (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params, x, v)
            updates, new_opt_state = optimizer.update(
                RBMParams(*grads), opt_state, RBMParams(*params)
            )
            new = tuple(p + u for p, u in zip(params, updates, strict=True))
        else:
            pos, neg = jax.nn.sigmoid(x @ W + c), jax.nn.sigmoid(v @ W + c)
            W = W + LEARNING_RATE * (x.T @ pos - v.T @ neg) / BATCH
            b = b + LEARNING_RATE * jnp.mean(x - v, axis=0)
            c = c + LEARNING_RATE * jnp.mean(pos - neg, axis=0)
            new, new_opt_state = (W, b, c), opt_state
            # The guard then checks the new parameters, as many values as the gradients.
            grads = new
            value, aux = loss(params, x, v) if "statistics" in extras else (0.0, (0.0, 0.0))
        if "guard" in extras:
            good = jnp.isfinite(value) & jnp.all(jnp.stack([jnp.isfinite(g).all() for g in grads]))
            keep = good & (bad < 0)
            new, new_opt_state, v = jax.tree.map(
                lambda a, b: jnp.where(keep, a, b),
                (new, new_opt_state, v),
                (params, opt_state, carry[2]),
            )
            bad = jnp.where((bad < 0) & ~good, t, bad)
        out = {"loss": value, "energy_pos": aux[0], "energy_neg": aux[1]}
        return (new, new_opt_state, v, bad), out if "statistics" in extras else None

    @jax.jit
    def epoch(carry, start):
        carry, stats = jax.lax.scan(update, carry, start + jnp.arange(steps))
        return carry, jax.tree.map(lambda s: s.mean(axis=0), stats)

    def init(key):
        k_w, k_v = jax.random.split(key)
        W = INIT_SCALE * jax.random.normal(k_w, (d, hidden))
        v = jax.random.bernoulli(k_v, 0.5, (BATCH, d)).astype(jnp.float32)
        params = (W, jnp.zeros(d), jnp.zeros(hidden))
        return params, optimizer.init(RBMParams(*params)), v, jnp.asarray(-1, jnp.int32)

    return epoch, init


def digits():
    import numpy as np
    from sklearn.datasets import load_digits

    return (load_digits().data[:TRAIN] >= 8).astype(np.float32)


def worker(variant: str, hidden: int, epochs: int) -> dict:
    """One variant in this (fresh) process: its largest compile and its compiled epochs."""
    import jax
    import numpy as np

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **_: (
            compiles.append(secs) if name == "/jax/core/compile/backend_compile_duration" else None
        )
    )
    data = digits()
    key_init, key_fit = jax.random.split(jax.random.key(0))
    stamps = []
    if VARIANTS[variant] is None:
        from numpyro_ebm.models.rbm import BernoulliRBM
        from numpyro_ebm.training.rbm import fit_rbm, rbm_optimizer

        model = BernoulliRBM(data.shape[1], hidden)
        steps = data.shape[0] // BATCH
        fit_rbm(
            model,
            model.init(key_init, INIT_SCALE),
            data,
            key=key_fit,
            k=1,
            optimizer=rbm_optimizer(LEARNING_RATE),
            num_steps=epochs * steps,
            batch_size=BATCH,
            steps_per_chunk=steps,
            callbacks=[lambda *_: stamps.append(time.perf_counter())],
        )
    else:
        epoch, init = epoch_program(jax.numpy.asarray(data), key_fit, hidden, VARIANTS[variant])
        carry, steps = init(key_init), data.shape[0] // BATCH
        for e in range(epochs):
            carry, _ = jax.block_until_ready(epoch(carry, e * steps))
            stamps.append(time.perf_counter())
    return {
        "variant": variant,
        "compile_s": max(compiles, default=float("nan")),
        "epoch_ms": 1000 * float(np.median(np.diff(stamps))),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "rbm_epoch.json")
    parser.add_argument("--worker", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.hidden, args.epochs)))
        return {}
    runs = {variant: [] for variant in VARIANTS}
    started = _common.utc_now()
    with _common.Contention(max_wait=args.max_wait) as guard:
        for repeat in range(args.repeats):
            order = list(VARIANTS)[:: -1 if repeat % 2 else 1]
            for variant in order:
                command = [sys.executable, __file__, "--worker", variant]
                command += ["--hidden", str(args.hidden), "--epochs", str(args.epochs)]
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {
        variant: {
            "compile_s": round(min(r["compile_s"] for r in rs), 3),
            "compile_s_median": round(statistics.median(r["compile_s"] for r in rs), 3),
            "epoch_ms": round(min(r["epoch_ms"] for r in rs), 2),
            "epoch_ms_median": round(statistics.median(r["epoch_ms"] for r in rs), 2),
        }
        for variant, rs in runs.items()
    }
    result = {
        "benchmark": "rbm_epoch",
        "date": started.isoformat(timespec="seconds"),
        "git_revision": _common.git_revision(),
        "command": _common.command_line("bench_rbm_epoch.py", argv),
        "machine": _common.machine_info(),
        "versions": _common.local_versions(),
        "config": {
            "hidden": args.hidden,
            "visible": 64,
            "batch": BATCH,
            "updates_per_epoch": TRAIN // BATCH,
            "epochs": args.epochs,
            "repeats": args.repeats,
        },
        "best": best,
        "runs": runs,
        "contention": guard.record(),
        "contaminated": guard.contaminated,
    }
    _common.write_json(args.out, result)
    for variant, row in best.items():
        print(f"{variant:12s} compile {row['compile_s']:.3f} s   epoch {row['epoch_ms']:.2f} ms")
    return result


if __name__ == "__main__":
    main()
