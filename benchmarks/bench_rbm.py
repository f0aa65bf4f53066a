"""Our RBM (PCD-1) against scikit-learn's ``BernoulliRBM`` on binarized digits, with the same
initialisation, epochs, data and evaluation: training time (two rates, wall and CPU) and the
best exact held-out log-likelihood each reaches, over several seeds in fresh processes.

**Data and evaluation** (both sides): the agreed peer script's (``shared/peers/
sklearn_rbm_bench.py``, imported for its ``data`` and ``exact_loglik``): scikit-learn's digits,
pixel >= 8, NumPy ``default_rng(seed)`` shuffle, 1500 training and 297 held-out images; after
every epoch the exact mean held-out log-likelihood (log Z summed over the 2^16 hidden states),
in float64 NumPy, outside every timed region. With ``--hidden`` above 20 (256, say) no exact
sum is possible: both sides' parameters are then measured by one AIS estimate of log Z
(``rbm_ais``, 10 runs x 100 chains, 3000 temperatures, the same key for every evaluation, its
standard error recorded), and the peer script (whose evaluation is that exact sum) is replaced
by this script's copy of its ``partial_fit`` loop. The seed sets the split, scikit-learn's
``random_state`` and our PRNG key, so each seed is its own data split.

**Settings** (both sides): 16 hidden units (``--hidden``), batch 10, learning rate 0.05, plain
SGD (no momentum, no weight decay), PCD-1 with 10 persistent chains (scikit-learn keeps
``batch_size`` of them), the Rao-Blackwellized gradient (hidden probabilities in both phases),
``--epochs`` epochs of 150 updates on both sides. Initialisation as scikit-learn's: weights
N(0, 0.01^2), visible and hidden biases 0 (ours: ``BernoulliRBM.init(key, 0.01)`` without
data, then :func:`numpyro_ebm.training.rbm.fit_rbm`; ``train_rbm`` would start the visible
biases at the data's log-odds).

What is not the same (and cannot be with the library's API):

* minibatches: ours draws each minibatch with replacement (``training.fit``'s only scheme);
  scikit-learn's ``fit`` sweeps the training set in its fixed order every epoch, and the peer
  script's ``partial_fit`` loop sweeps a fresh permutation each epoch;
* persistent chains: ours start from Bernoulli(1/2) visible noise and store visible states;
  scikit-learn starts from hidden states 0 (so its first negatives are Bernoulli(1/2) too) and
  stores hidden states: the same block Gibbs chain, half a sweep apart;
* dtype: ours float32 (the library's default); the peer's ``partial_fit`` float64 (it casts);
  scikit-learn's ``fit`` is timed on float64 and on float32 data.

**Processes**, per seed, each fresh and each inside ``_common.Contention`` (waits for a quiet
machine, records wall and CPU time, the cores other processes used and the load averages;
a process measured while others used more than ``--max-foreign`` cores is rerun up to
``--retries`` times and, if still contended, kept and marked ``contaminated``):

1. ``peer``: the agreed script as is (``partial_fit`` per minibatch, per-epoch permutation);
   cumulative fit seconds per epoch (wall only);
2. ``sklearn``: this script's scikit-learn helper: the peer's ``partial_fit`` loop again with
   wall and CPU clocks (its log-likelihoods must equal the peer's), then ``fit`` as documented
   (``BernoulliRBM(n_iter=epochs).fit(train)``, one timed call) on float64 and on float32
   data, the float64 one replayed untimed as ``partial_fit`` over ``fit``'s own minibatch
   slices for its per-epoch curve (checked equal to ``fit``'s parameters bit for bit);
3. ``ours``: ``fit_rbm``, one chunk (150 updates) per epoch, a callback reading the wall and
   CPU clocks and copying the parameters after each.

The side that runs first alternates with the seed (even: scikit-learn first); the order of
the helper's three modes too.

**Two rates.** *First result*: wall (and CPU) time from the call to the end of epoch E, for
ours from ``init`` on, tracing and compilation included (imports excluded on both sides;
each process's whole wall and CPU time are in its contention record). *Compiled*: the steady
state, epochs 2..E, measured on both sides from the clocks at the ends of epochs 1 and E
(ours compiles in epoch 1; scikit-learn compiles nothing, and its ``fit`` is one call, so
its compiled rate is ``fit`` time / E). Ours is also called a second time in the same process
for the separately labelled longer run (``--long-epochs``, same key): its first chunk shows
what a repeated ``fit_rbm`` call re-traces and recompiles. The longer run (scikit-learn's
peer loop too) is never part of the comparison.

**Time to target**: scikit-learn's best held-out log-likelihood within E epochs (peer loop)
is the target; whether ours reaches it within the same E epochs, and if so, times to it:
first result (ours from the call, scikit-learn's cumulative seconds) and compiled (from the
end of epoch 1 to the end of the reaching epoch, on both sides).

Ratios are scikit-learn / ours (> 1: ours faster), per seed, then the median and the range
(min-max) over seeds.

Run::

    python benchmarks/bench_rbm.py [--seeds 0,1,2] [--epochs 20] [--long-epochs 40]
        [--hidden 16] [--out benchmarks/results/rbm.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

ROOT = _common.ROOT
PEER = next(
    (
        path / "shared" / "peers" / "sklearn_rbm_bench.py"
        for path in (ROOT.parent, ROOT.parent.parent)
        if (path / "shared" / "peers" / "sklearn_rbm_bench.py").is_file()
    ),
    ROOT.parent / "shared" / "peers" / "sklearn_rbm_bench.py",
)
BATCH, LEARNING_RATE, INIT_SCALE = 10, 0.05, 0.01
# Up to this many hidden units log Z is summed exactly (the peer's ``exact_loglik``); above,
# both sides' parameters are measured by the same AIS estimate (same key and ladder).
EXACT_MAX_HIDDEN = 20
AIS_SETTINGS = {"num_chains": 100, "num_runs": 10, "num_betas": 3000}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; one split each")
    parser.add_argument("--epochs", type=int, default=20, help="epochs, both sides")
    parser.add_argument(
        "--hidden",
        type=int,
        default=16,
        help=f"hidden units, both sides (above {EXACT_MAX_HIDDEN}: log Z by AIS, and the peer "
        "script, whose evaluation is exact, is replaced by this script's copy of its loop)",
    )
    parser.add_argument(
        "--long-epochs", type=int, default=40, help="the separate longer run (0: none)"
    )
    parser.add_argument("--max-foreign", type=float, default=0.3, help="others' cores allowed")
    parser.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for quiet")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a contended process")
    parser.add_argument("--peer", type=Path, default=PEER, help="sklearn_rbm_bench.py")
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "rbm.json")
    parser.add_argument("--role", choices=("ours", "sklearn", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--reverse", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load_peer(path: Path):
    """The peer script as a module (its ``data`` and ``exact_loglik``)."""
    spec = importlib.util.spec_from_file_location("sklearn_rbm_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held_out(peer, rbm, test, train) -> dict:
    """Mean held-out log-likelihood of an RBM given scikit-learn's way (``components_``
    (hidden, visible), ``intercept_visible_``, ``intercept_hidden_``): exact (the peer's sum
    over the hidden states) up to ``EXACT_MAX_HIDDEN`` units, else ``-F(v)`` averaged minus an
    AIS estimate of log Z (:func:`numpyro_ebm.evidence.rbm_ais.rbm_ais` from the training
    data's base rates, one fixed key: both sides' curves share their random numbers) with its
    standard error. Outside every timed region."""
    hidden = rbm.components_.shape[0]
    if hidden <= EXACT_MAX_HIDDEN:
        return {"test_loglik": peer.exact_loglik(rbm, test)}
    import jax
    import numpy as np

    from numpyro_ebm.evidence.rbm_ais import rbm_ais
    from numpyro_ebm.models.rbm import BernoulliRBM, RBMParams

    model = BernoulliRBM(rbm.components_.shape[1], hidden)
    params = RBMParams(
        W=np.asarray(rbm.components_.T, np.float32),
        b=np.asarray(rbm.intercept_visible_, np.float32),
        c=np.asarray(rbm.intercept_hidden_, np.float32),
    )
    estimate = rbm_ais(jax.random.key(2024), model, params, data=train, **AIS_SETTINGS)
    free = jax.vmap(lambda v: model.free_energy(params, v))(np.asarray(test, np.float32))
    neg_free = -float(np.mean(np.asarray(free, np.float64)))
    return {
        "test_loglik": neg_free - float(estimate.log_normalizer),
        "log_z_standard_error": float(estimate.standard_error),
    }


# --- the workers (fresh processes) -----------------------------------------------------------


def worker_ours(peer, seed: int, hidden: int, epochs: int, long_epochs: int) -> dict:
    """``fit_rbm`` from scikit-learn's initialisation, one chunk per epoch; clocks after each."""
    import jax
    import numpy as np

    from numpyro_ebm.models.rbm import BernoulliRBM
    from numpyro_ebm.training.rbm import fit_rbm, rbm_optimizer

    train64, test = peer.data(seed)
    train = train64.astype(np.float32)  # 0/1: exact in float32
    steps_per_epoch = train.shape[0] // BATCH
    model = BernoulliRBM(train.shape[1], hidden)
    key_init, key_fit = jax.random.split(jax.random.key(seed))

    def one_fit(num_epochs: int) -> dict:
        stamps, snapshots = [], []

        def record(step, params, history):
            del step, history
            snapshots.append(jax.tree.map(np.array, params))
            stamps.append((time.perf_counter(), time.process_time()))

        wall0, cpu0 = time.perf_counter(), time.process_time()
        params = model.init(key_init, INIT_SCALE)  # W ~ N(0, 0.01^2), b = 0, c = 0
        fit_rbm(
            model,
            params,
            train,
            key=key_fit,
            method="pcd",
            k=1,
            optimizer=rbm_optimizer(LEARNING_RATE),
            num_steps=num_epochs * steps_per_epoch,
            batch_size=BATCH,
            num_chains=BATCH,
            steps_per_chunk=steps_per_epoch,
            callbacks=[record],
        )
        snapshots = [(p.W, p.b, p.c) for p in snapshots]
        return epoch_rows(peer, (wall0, cpu0), stamps, snapshots, test, train)

    main = one_fit(epochs)
    out = {
        "side": "numpyro_ebm",
        "dtype": "float32",
        "init": "W ~ N(0, 0.01^2), b = 0, c = 0 (BernoulliRBM.init(key, 0.01))",
        "minibatches": "with replacement (training.fit)",
        "fit": main,
    }
    if long_epochs:
        out["longer_run_second_call"] = one_fit(long_epochs)
    return out


def worker_bare(peer, seed: int, hidden: int, epochs: int) -> dict:
    """The floor of a JAX program on this machine: a hand-written PCD-1 loop with our settings
    (float32, minibatches with replacement, 10 persistent chains started at Bernoulli(1/2),
    the Rao-Blackwellized gradient, plain SGD, W ~ N(0, 0.01^2)), one ``jax.jit`` of an
    epoch's ``lax.scan`` (``bench_rbm_epoch.epoch_program``), no checks, statistics or
    checkpoints; clocks from the first draw of the initialisation, as ours (the data's copy to
    the device, under a millisecond, comes before them)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from bench_rbm_epoch import epoch_program

    train64, test = peer.data(seed)
    train = train64.astype(np.float32)
    steps = train.shape[0] // BATCH
    key_init, key_fit = jax.random.split(jax.random.key(seed))
    epoch, init = epoch_program(jnp.asarray(train), key_fit, hidden)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    carry = init(key_init)
    stamps, snapshots = [], []
    for e in range(epochs):
        carry, _ = jax.block_until_ready(epoch(carry, e * steps))
        stamps.append((time.perf_counter(), time.process_time()))
        snapshots.append(tuple(np.array(a) for a in carry[0]))
    fit = epoch_rows(peer, (wall0, cpu0), stamps, snapshots, test, train)
    return {"side": "hand-written JAX", "fit": fit}


def epoch_rows(peer, clocks0, stamps, snapshots, test, train) -> dict:
    """A JAX run's epochs (``stamps``: wall and CPU clocks at each epoch's end; ``snapshots``:
    its ``(W, b, c)`` then, ``W`` visible x hidden) as rows of times from ``clocks0`` and
    held-out log-likelihoods, with the best."""
    import numpy as np

    rows = []
    for epoch, ((wall, cpu), (W, b, c)) in enumerate(zip(stamps, snapshots, strict=True), start=1):
        # the peer's evaluation: components_ is (hidden, visible)
        shim = type("RBM", (), {})()
        shim.components_ = np.asarray(W, np.float64).T
        shim.intercept_visible_ = np.asarray(b, np.float64)
        shim.intercept_hidden_ = np.asarray(c, np.float64)
        rows.append(
            {
                "epoch": epoch,
                "wall_s": round(wall - clocks0[0], 4),
                "cpu_s": round(cpu - clocks0[1], 4),
                **held_out(peer, shim, test, train),
            }
        )
    return {"epochs": rows, **_best(rows)}


def _best(rows: list[dict]) -> dict:
    best = max(rows, key=lambda r: r["test_loglik"])
    return {"best_test_loglik": best["test_loglik"], "best_epoch": best["epoch"]}


def worker_sklearn(
    peer, seed: int, hidden: int, epochs: int, long_epochs: int, reverse: bool
) -> dict:
    """scikit-learn three ways (the peer's partial_fit loop, fit on float64, fit on float32)."""
    import numpy as np
    from sklearn.neural_network import BernoulliRBM
    from sklearn.utils import gen_even_slices

    train, test = peer.data(seed)

    def new(**kw):
        return BernoulliRBM(
            n_components=hidden,
            learning_rate=LEARNING_RATE,
            batch_size=BATCH,
            random_state=seed,
            **kw,
        )

    def partial_fit_loop(num_epochs: int) -> dict:
        """The peer script's loop, with a CPU clock beside its wall clock."""
        rbm, order = new(), np.random.default_rng(seed + 1)
        rows, wall, cpu = [], 0.0, 0.0
        for epoch in range(1, num_epochs + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            x = train[order.permutation(len(train))]
            for i in range(0, len(x), BATCH):
                rbm.partial_fit(x[i : i + BATCH])
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            rows.append(
                {
                    "epoch": epoch,
                    "wall_s": round(wall, 4),
                    "cpu_s": round(cpu, 4),
                    **held_out(peer, rbm, test, train),
                }
            )
        return {"epochs": rows, **_best(rows)}

    def fit(dtype) -> dict:
        x = train.astype(dtype)
        rbm = new(n_iter=epochs)
        t0, c0 = time.perf_counter(), time.process_time()
        rbm.fit(x)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out = {
            "dtype": str(rbm.components_.dtype),
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "final_test_loglik": held_out(peer, rbm, test, train)["test_loglik"],
        }
        if dtype == np.float64:  # untimed replay: fit's minibatches, in fit's order
            replay, rows = new(), []
            n_batches = -(-len(x) // BATCH)  # as fit() slices
            slices = list(gen_even_slices(n_batches * BATCH, n_batches, n_samples=len(x)))
            for epoch in range(1, epochs + 1):
                for s in slices:
                    replay.partial_fit(x[s])
                rows.append({"epoch": epoch, **held_out(peer, replay, test, train)})
            same = all(
                np.array_equal(getattr(replay, name), getattr(rbm, name))
                for name in ("components_", "intercept_visible_", "intercept_hidden_")
            )
            out.update(epochs=rows, replay_equals_fit=bool(same), **_best(rows))
        return out

    modes = [
        ("partial_fit", lambda: partial_fit_loop(epochs)),
        ("fit_float64", lambda: fit(np.float64)),
        ("fit_float32", lambda: fit(np.float32)),
    ]
    out = {"side": "scikit-learn", "mode_order": [m for m, _ in modes[:: -1 if reverse else 1]]}
    for name, run_mode in modes[:: -1 if reverse else 1]:
        out[name] = run_mode()
    if long_epochs:
        out["longer_run_partial_fit"] = partial_fit_loop(long_epochs)
    return out


# --- the driver ------------------------------------------------------------------------------


def run(label: str, command: list[str], args) -> dict:
    """Run one process inside the contention guard; rerun it (up to ``--retries``) while others
    used more than ``--max-foreign`` cores. Its last stdout line is JSON."""
    discarded = []
    for _attempt in range(args.retries + 1):
        env = os.environ | {"JAX_PLATFORMS": "cpu"}
        with _common.Contention(args.max_foreign, args.max_wait) as guard:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
        if done.returncode:
            raise RuntimeError(f"{command} failed:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        record = guard.record()
        print(
            f"  {label}: {record['wall_s']:.1f} s wall, {record['cpu_s']:.1f} s CPU, others "
            f"{record['foreign_cores']:.2f} cores, load {record['loadavg_start'][0]:.2f}"
            f"{' CONTAMINATED' if record['contaminated'] else ''}",
            flush=True,
        )
        if not record["contaminated"]:
            break
        discarded.append(record)
    return {
        "process": label,
        "command": [str(c) for c in command],
        "contention": record,
        "discarded_contended_attempts": discarded,
        "result": result,
    }


def as_peer(partial_fit: dict) -> dict:
    """This script's run of the peer's loop in the peer's own format (where the peer script
    cannot evaluate: more than ``EXACT_MAX_HIDDEN`` hidden units)."""
    rows = [{**row, "train_s": row["wall_s"]} for row in partial_fit["epochs"]]
    return {**partial_fit, "epochs": rows, "copy_of_peer_loop": True}


def reach(rows: list[dict], target: float) -> dict | None:
    """The first row whose log-likelihood is >= ``target``."""
    return next((row for row in rows if row["test_loglik"] >= target), None)


def seed_figures(peer: dict, sk: dict, ours: dict, epochs: int) -> dict:
    """One seed's figures and ratios (scikit-learn / ours: > 1, ours faster)."""
    p_rows, s_rows = peer["epochs"], sk["partial_fit"]["epochs"]
    o = ours["fit"]
    o_rows = o["epochs"]
    target = peer["best_test_loglik"]
    peer_at_target = reach(p_rows, target)
    ours_at_target = reach(o_rows, target)
    figures = {
        "peer_log_likelihoods_reproduced": None
        if peer.get("copy_of_peer_loop")
        else [r["test_loglik"] for r in p_rows] == [r["test_loglik"] for r in s_rows],
        "best_test_loglik": {
            "sklearn_partial_fit": peer["best_test_loglik"],
            "sklearn_partial_fit_epoch": peer["best_epoch"],
            "sklearn_fit_float64": sk["fit_float64"]["best_test_loglik"],
            "sklearn_fit_float64_epoch": sk["fit_float64"]["best_epoch"],
            "sklearn_fit_float32_final": sk["fit_float32"]["final_test_loglik"],
            "ours": o["best_test_loglik"],
            "ours_epoch": o["best_epoch"],
            "ours_minus_sklearn_partial_fit": o["best_test_loglik"] - peer["best_test_loglik"],
            "ours_minus_sklearn_fit_float64": o["best_test_loglik"]
            - sk["fit_float64"]["best_test_loglik"],
        },
        "first_result_s": {  # E epochs from the call, compilation included
            "sklearn_partial_fit_peer_wall": p_rows[-1]["train_s"],
            "sklearn_partial_fit_wall": s_rows[-1]["wall_s"],
            "sklearn_partial_fit_cpu": s_rows[-1]["cpu_s"],
            "sklearn_fit_float64_wall": sk["fit_float64"]["wall_s"],
            "sklearn_fit_float64_cpu": sk["fit_float64"]["cpu_s"],
            "sklearn_fit_float32_wall": sk["fit_float32"]["wall_s"],
            "sklearn_fit_float32_cpu": sk["fit_float32"]["cpu_s"],
            "ours_wall": o_rows[-1]["wall_s"],
            "ours_cpu": o_rows[-1]["cpu_s"],
            "ours_epoch_1_wall": o_rows[0]["wall_s"],
            "ours_epoch_1_cpu": o_rows[0]["cpu_s"],
        },
        "compiled_s_per_epoch": {  # steady state: epochs 2..E
            "sklearn_partial_fit_peer_wall": (p_rows[-1]["train_s"] - p_rows[0]["train_s"])
            / (epochs - 1),
            "sklearn_partial_fit_wall": (s_rows[-1]["wall_s"] - s_rows[0]["wall_s"]) / (epochs - 1),
            "sklearn_partial_fit_cpu": (s_rows[-1]["cpu_s"] - s_rows[0]["cpu_s"]) / (epochs - 1),
            "sklearn_fit_float64_wall": sk["fit_float64"]["wall_s"] / epochs,
            "sklearn_fit_float64_cpu": sk["fit_float64"]["cpu_s"] / epochs,
            "sklearn_fit_float32_wall": sk["fit_float32"]["wall_s"] / epochs,
            "sklearn_fit_float32_cpu": sk["fit_float32"]["cpu_s"] / epochs,
            "ours_wall": (o_rows[-1]["wall_s"] - o_rows[0]["wall_s"]) / (epochs - 1),
            "ours_cpu": (o_rows[-1]["cpu_s"] - o_rows[0]["cpu_s"]) / (epochs - 1),
        },
        "target": {
            "test_loglik": target,
            "sklearn_epoch": peer_at_target["epoch"],
            "sklearn_first_result_wall_s": peer_at_target["train_s"],
            "sklearn_compiled_wall_s": peer_at_target["train_s"] - p_rows[0]["train_s"],
            "ours_reached_within_same_epochs": ours_at_target is not None,
            "ours_epoch": None if ours_at_target is None else ours_at_target["epoch"],
            "ours_first_result_wall_s": ours_at_target and ours_at_target["wall_s"],
            "ours_compiled_wall_s": ours_at_target
            and ours_at_target["wall_s"] - o_rows[0]["wall_s"],
        },
    }
    first, compiled, tgt = (
        figures["first_result_s"],
        figures["compiled_s_per_epoch"],
        figures["target"],
    )
    ratios = {}
    for name in ("partial_fit_peer", "partial_fit", "fit_float64", "fit_float32"):
        ratios[f"first_result_wall_vs_{name}"] = first[f"sklearn_{name}_wall"] / first["ours_wall"]
        ratios[f"compiled_wall_vs_{name}"] = (
            compiled[f"sklearn_{name}_wall"] / compiled["ours_wall"]
        )
        if name != "partial_fit_peer":
            ratios[f"first_result_cpu_vs_{name}"] = first[f"sklearn_{name}_cpu"] / first["ours_cpu"]
            ratios[f"compiled_cpu_vs_{name}"] = (
                compiled[f"sklearn_{name}_cpu"] / compiled["ours_cpu"]
            )
    reached = tgt["ours_epoch"] is not None
    ratios["time_to_target_first_result_wall"] = (
        tgt["sklearn_first_result_wall_s"] / tgt["ours_first_result_wall_s"] if reached else None
    )
    # epochs 2..target on both sides; none when either side gets there in epoch 1
    both_later = reached and tgt["ours_epoch"] > 1 and tgt["sklearn_epoch"] > 1
    ratios["time_to_target_compiled_wall"] = (
        tgt["sklearn_compiled_wall_s"] / tgt["ours_compiled_wall_s"] if both_later else None
    )
    figures["ratios_sklearn_over_ours"] = ratios
    return figures


def floor_figures(sk: dict, ours: dict, bare: dict, epochs: int) -> dict:
    """The hand-written JAX loop beside both: its first result and compiled epochs, and the
    ratios scikit-learn's ``fit`` / it (what any JAX program's compilation allows) and it /
    ours (> 1: ours faster)."""
    b_rows, o_rows = bare["fit"]["epochs"], ours["fit"]["epochs"]
    first = b_rows[-1]["wall_s"]
    compiled = (b_rows[-1]["wall_s"] - b_rows[0]["wall_s"]) / (epochs - 1)
    ours_compiled = (o_rows[-1]["wall_s"] - o_rows[0]["wall_s"]) / (epochs - 1)
    return {
        "best_test_loglik": bare["fit"]["best_test_loglik"],
        "first_result_wall_s": first,
        "first_result_cpu_s": b_rows[-1]["cpu_s"],
        "epoch_1_wall_s": b_rows[0]["wall_s"],
        "compiled_wall_s_per_epoch": compiled,
        "sklearn_fit_float64_over_hand_written_first_result_wall": sk["fit_float64"]["wall_s"]
        / first,
        "hand_written_over_ours_first_result_wall": first / o_rows[-1]["wall_s"],
        "hand_written_over_ours_compiled_wall": compiled / ours_compiled,
    }


def longer_run(sk: dict, ours: dict, peer_target: float) -> dict:
    """The separately labelled longer run (not part of the comparison)."""
    o, s = ours["longer_run_second_call"], sk["longer_run_partial_fit"]
    at = reach(o["epochs"], peer_target)
    o_rows = o["epochs"]
    return {
        "epochs": len(o_rows),
        "sklearn_partial_fit_best": s["best_test_loglik"],
        "sklearn_partial_fit_best_epoch": s["best_epoch"],
        "ours_best": o["best_test_loglik"],
        "ours_best_epoch": o["best_epoch"],
        "ours_first_epoch_reaching_the_20_epoch_target": None if at is None else at["epoch"],
        "ours_second_call_epoch_1_wall_s": o_rows[0]["wall_s"],
        "ours_second_call_epoch_1_cpu_s": o_rows[0]["cpu_s"],
        "ours_second_call_steady_wall_s_per_epoch": (o_rows[-1]["wall_s"] - o_rows[0]["wall_s"])
        / (len(o_rows) - 1),
    }


def spread(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.role:
        peer = load_peer(args.peer)
        if args.role == "ours":
            result = worker_ours(peer, args.seed, args.hidden, args.epochs, args.long_epochs)
        elif args.role == "bare":
            result = worker_bare(peer, args.seed, args.hidden, args.epochs)
        else:
            result = worker_sklearn(
                peer, args.seed, args.hidden, args.epochs, args.long_epochs, args.reverse
            )
        print(json.dumps(result))
        return result
    if args.epochs < 2:
        sys.exit("error: --epochs must be at least 2 (the compiled rate is epochs 2..E)")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    started = _common.utc_now()
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--epochs", str(args.epochs), "--long-epochs", str(args.long_epochs)]
    common += ["--hidden", str(args.hidden)]
    exact = args.hidden <= EXACT_MAX_HIDDEN
    common += ["--peer", str(args.peer)]
    peer_flags = ["--hidden", str(args.hidden), "--epochs", str(args.epochs)]
    peer_flags += ["--lr", str(LEARNING_RATE), "--batch", str(BATCH)]
    processes, per_seed = [], []
    for index, seed in enumerate(seeds):
        reverse = index % 2 == 1
        commands = {
            "peer": [sys.executable, str(args.peer), *peer_flags, "--seed", str(seed)],
            "sklearn": [*me, "--role", "sklearn", "--seed", str(seed), *common]
            + (["--reverse"] if reverse else []),
            "ours": [*me, "--role", "ours", "--seed", str(seed), *common],
            "bare": [*me, "--role", "bare", "--seed", str(seed), *common],
        }
        order = (
            ["bare", "ours", "sklearn", "peer"] if reverse else ["peer", "sklearn", "ours", "bare"]
        )
        if not exact:  # the peer script would sum over 2^hidden states
            order.remove("peer")
        print(f"seed {seed}: {' -> '.join(order)}", flush=True)
        runs = {}
        for label in order:
            runs[label] = run(label, commands[label], args)
            runs[label]["seed"] = seed
            processes.append(runs[label])
        sk = runs["sklearn"]["result"]
        peer = runs["peer"]["result"] if exact else as_peer(sk["partial_fit"])
        figures = seed_figures(peer, sk, runs["ours"]["result"], args.epochs)
        figures["hand_written_jax"] = floor_figures(
            sk, runs["ours"]["result"], runs["bare"]["result"], args.epochs
        )
        figures["seed"] = seed
        figures["order"] = order
        if args.long_epochs:
            figures["longer_run_not_compared"] = longer_run(
                runs["sklearn"]["result"], runs["ours"]["result"], figures["target"]["test_loglik"]
            )
        per_seed.append(figures)
        r = figures["ratios_sklearn_over_ours"]
        peer_label = "peer" if exact else "peer loop copy"
        print(
            f"  best: sklearn {figures['best_test_loglik']['sklearn_partial_fit']:.3f}, ours "
            f"{figures['best_test_loglik']['ours']:.3f}; sklearn/ours first result "
            f"{r['first_result_wall_vs_partial_fit_peer']:.2f} ({peer_label}), "
            f"{r['first_result_wall_vs_fit_float64']:.2f} (fit); compiled "
            f"{r['compiled_wall_vs_partial_fit_peer']:.2f} ({peer_label}), "
            f"{r['compiled_wall_vs_fit_float64']:.2f} (fit)",
            flush=True,
        )
    records = [p["contention"] for p in processes]
    contaminated = any(c["contaminated"] for c in records)
    ratio_names = per_seed[0]["ratios_sklearn_over_ours"].keys()
    summary = {
        "seeds": seeds,
        "epochs": args.epochs,
        "contaminated": contaminated,
        "load": {
            "loadavg_1min_min": min(
                min(c["loadavg_start"][0], c["loadavg_end"][0]) for c in records
            ),
            "loadavg_1min_max": max(
                max(c["loadavg_start"][0], c["loadavg_end"][0]) for c in records
            ),
            "foreign_cores_max": max(c["foreign_cores"] for c in records),
            "contended_attempts_discarded": sum(
                len(p["discarded_contended_attempts"]) for p in processes
            ),
        },
        "ratios_sklearn_over_ours": {
            name: spread([s["ratios_sklearn_over_ours"][name] for s in per_seed])
            for name in ratio_names
        },
        "ours_reached_sklearn_best_within_same_epochs": [
            s["target"]["ours_reached_within_same_epochs"] for s in per_seed
        ],
        "best_test_loglik": {
            name: spread([s["best_test_loglik"][name] for s in per_seed])
            for name in per_seed[0]["best_test_loglik"]
        },
        "first_result_s": {
            name: spread([s["first_result_s"][name] for s in per_seed])
            for name in per_seed[0]["first_result_s"]
        },
        "compiled_s_per_epoch": {
            name: spread([s["compiled_s_per_epoch"][name] for s in per_seed])
            for name in per_seed[0]["compiled_s_per_epoch"]
        },
        "hand_written_jax": {
            name: spread([s["hand_written_jax"][name] for s in per_seed])
            for name in per_seed[0]["hand_written_jax"]
        },
        "note": (
            "ratios are scikit-learn / ours (> 1: ours faster); median and min-max over seeds"
            + ("; CONTAMINATED: some process ran while others used the CPU" if contaminated else "")
        ),
    }
    result = {
        "benchmark": "rbm",
        "date": started.isoformat(timespec="seconds"),
        "finished": _common.utc_now().isoformat(timespec="seconds"),
        "git_revision": _common.git_revision(),
        "command": [Path(sys.executable).name, *sys.argv],
        "machine": _common.machine_info(),
        "versions": _common.local_versions((*_common.PACKAGES, "scikit-learn", "scipy", "numpy")),
        "config": {
            "hidden": args.hidden,
            "held_out_log_likelihood": "exact"
            if exact
            else {
                "log_z": "AIS (rbm_ais, key 2024, base rates of the training data)",
                **AIS_SETTINGS,
            },
            "batch": BATCH,
            "lr": LEARNING_RATE,
            "init_scale": INIT_SCALE,
            "epochs": args.epochs,
            "updates_per_epoch": 150,
            "long_epochs": args.long_epochs,
            "seeds": seeds,
            "max_foreign": args.max_foreign,
            "retries": args.retries,
            "peer": str(args.peer),
            "not_symmetric": [
                "minibatches: ours with replacement; sklearn fit a fixed-order sweep, the peer's "
                "partial_fit loop a fresh permutation per epoch",
                "dtype: ours float32; peer partial_fit float64; sklearn fit timed on both",
                "persistent chains: ours start at Bernoulli(1/2) visible noise, sklearn at hidden "
                "zeros (first negatives Bernoulli(1/2) too)",
            ],
        },
        "contaminated": contaminated,
        "summary": summary,
        "per_seed": per_seed,
        "processes": processes,
    }
    _common.write_json(args.out, result)
    print(json.dumps(summary))  # one line: benchmarks/run.py reads the last line as JSON
    return result


if __name__ == "__main__":
    main()
