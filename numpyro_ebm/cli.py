"""The ``numpyro-ebm`` command: ``demo``, ``train``, ``sample``, ``compare``, ``diagnose``.

Bad input (a missing file, an unreadable format, NaN rows, a wrong dimension, an output path
that cannot be written, a saved model that does not fit its description, a diverging training
run) ends the command with a one-line ``numpyro-ebm: error: ...`` on stderr and exit status 2,
without a traceback (set the environment variable ``NUMPYRO_EBM_TRACEBACK=1`` to see it).
Output paths are checked before any work, so nothing computed is lost to a bad ``--out``.
Ctrl-C ends the command with one line and exit status 130; checkpoints already written stay
(one being written is finished first, so that none is left half-written).
Warnings are printed in one line each, ``numpyro-ebm: warning: ...``.

The module imports neither JAX nor the library until a command runs, so that ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["main"]

DATA_FORMATS = (".npy", ".npz", ".csv")
# The choices `--help` lists, kept here so that it needs no import of the library;
# tests/test_cli.py checks them against workflow.OBJECTIVES, demo.DEMO_SAMPLERS,
# datasets.TOY_DATASETS and the defaults of workflow.TrainSettings.
OBJECTIVES = ("ncsn", "dsm", "score_matching", "sliced_score_matching", "cd", "pcd")
DEMO_SAMPLERS = ("annealed_langevin", "parallel_tempering", "tempered_smc", "mala")
TOY_DATASETS = (
    "checkerboard",
    "gaussian_mixture",
    "rings",
    "swiss_roll",
    "two_moons",
    "weighted_ring",
)
TRAIN_DEFAULTS = {
    "likelihood_steps": 1000,
    "likelihood_chains": 512,
    "max_temperature": 40.0,
    "held_out": 0.1,
}
SEED_BITS = 32  # jax.random.key keeps 32 bits of a seed without 64-bit mode: larger ones repeat
_MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}


class UserError(Exception):
    """An error in what the user gave: reported in one line, exit status 2."""


def read_data(path: str | Path, *, binary: bool = False) -> np.ndarray:
    """Data (n, d) from a ``.npy``, ``.npz`` (its only array, or the one named ``data``) or
    ``.csv`` file (comma-separated numbers, an optional header line), as float32. Never
    unpickles; refuses complex and non-numeric data, NaN and infinite values and values beyond
    float32's range, each with a :class:`UserError` naming the file. Boolean arrays are read
    as 0/1 with ``binary=True`` (an RBM's data), else refused."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in DATA_FORMATS:
        raise UserError(
            f"unsupported data format {suffix!r} ({path}); use one of {', '.join(DATA_FORMATS)}"
        )
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    if suffix in _MAGIC:
        with open(path, "rb") as handle:
            head = handle.read(8)
        if not head.startswith(_MAGIC[suffix]):
            raise UserError(f"{path} is not a NumPy {suffix} file (it does not start like one)")
    try:
        data = _read(path, suffix)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "allow_pickle" in message:
            message = "it holds Python objects, which numpyro-ebm never unpickles"
        raise UserError(f"cannot read {path}: {message}") from None
    return _as_table(path, data, binary)


def _read(path: Path, suffix: str) -> np.ndarray:
    import numpy as np

    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".csv":
        return _read_csv(path)
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.keys())
        if len(names) != 1 and "data" not in names:
            raise UserError(f"{path} holds arrays {names}; name the data array 'data'")
        return archive["data" if "data" in names else names[0]]


def _as_table(path: Path, data: np.ndarray, binary: bool) -> np.ndarray:
    import numpy as np

    if data.dtype == bool:
        if not binary:
            raise UserError(
                f"{path} holds booleans (dtype bool), not numbers; for binary data train an "
                "RBM (--model rbm)"
            )
        data = data.astype(np.float32)
    if np.issubdtype(data.dtype, np.complexfloating):
        raise UserError(f"{path} holds complex numbers (dtype {data.dtype}); give real data")
    if not np.issubdtype(data.dtype, np.number):
        raise UserError(f"{path} does not hold numbers (dtype {data.dtype})")
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or len(data) < 2 or data.shape[1] < 1:
        raise UserError(
            f"{path}: expected a table of shape (n, d) with n >= 2 and d >= 1, got {data.shape}"
        )
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise UserError(
            f"{path}: {len(rows)} row(s) hold NaN or inf (first: row {rows[0]}); remove them"
        )
    with np.errstate(over="ignore"):
        table = data.astype(np.float32)
    bad = ~np.isfinite(table).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise UserError(
            f"{path}: {len(rows)} row(s) hold values beyond float32's range (|x| > 3.4e38; "
            f"first: row {rows[0]})"
        )
    return table


def _read_csv(path: Path) -> np.ndarray:
    import numpy as np

    with open(path) as handle:
        first = handle.readline()
    try:
        [float(v) for v in first.split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header line
    return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)


def _key(seed: int):
    import jax

    return jax.random.key(seed)


def _output(path: str, *, folder: bool) -> Path:
    """``--out`` checked before any work: not under a file, not an entry of the other kind,
    writable."""
    from numpyro_ebm._checks import check_output_path

    try:
        return check_output_path("--out", path, folder=folder)
    except ValueError as error:
        raise UserError(str(error)) from None


def _fresh_run_folder(out: Path, *, resume: bool | None) -> None:
    """Refuse an ``--out`` that holds a previous run's checkpoints unless resuming
    (``resume=None``: the command has no ``--resume``)."""
    checkpoints = out / "checkpoints"
    if resume or not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        return
    remedy = "choose another --out" if resume is None else "add --resume to continue that run"
    raise UserError(
        f"--out {str(out)!r} already holds the checkpoints of a training run ({checkpoints}); "
        f"{remedy}, or delete that folder"
    )


def _demo(args: argparse.Namespace) -> int:
    out = _output(args.out, folder=True)
    _fresh_run_folder(out, resume=None)
    from numpyro_ebm import demo, workflow

    settings = workflow.TrainSettings(num_steps=args.steps)
    demo.run_demo(
        out,
        key=_key(args.seed),
        dataset=args.dataset,
        settings=settings,
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        num_sweeps=args.sweeps,
        progress=not args.no_progress,
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    out = _output(args.out, folder=True)
    if args.model == "rbm":
        return _train_rbm(args, out)
    _fresh_run_folder(out, resume=args.resume)
    data = read_data(args.data)
    from numpyro_ebm import plots, workflow

    training_points = len(data) - round(args.held_out * len(data))
    settings = workflow.TrainSettings(
        objective=args.objective,
        num_steps=args.steps,
        batch_size=max(1, min(args.batch_size, training_points)),
        learning_rate=args.lr,
        hidden=tuple(args.hidden),
        num_sigmas=args.num_sigmas,
        sigma_max=args.sigma_max,
        sigma_min=args.sigma_min,
        sigma=args.sigma,
        checkpoint_every=args.checkpoint_every,
        likelihood_steps=args.likelihood_steps,
        likelihood_chains=args.likelihood_chains,
        max_temperature=args.max_temperature,
        held_out=args.held_out,
    )
    trained, result = workflow.train(
        data,
        settings,
        key=_key(args.seed),
        out_dir=out,
        resume=args.resume,
        progress=not args.no_progress,
    )
    plots.training_curve(result.history, out / "training_loss.png")
    print(
        f"trained {trained.spec['network']} with {args.objective} on {len(data)} points: "
        f"final loss {trained.metadata['final_loss']:.4g}; saved to {out}"
    )
    return 0


def _train_rbm(args: argparse.Namespace, out: Path) -> int:
    """``train --model rbm``: a Bernoulli RBM by CD-k or PCD-k with block Gibbs, checkpointed
    in ``<out>/checkpoints`` every ``--checkpoint-every`` steps (``--resume`` continues the
    latest bit for bit), its exact log-likelihood (smaller layer <= 20 units) or an AIS
    estimate, saved as JSON + .npz."""
    if args.objective not in ("cd", "pcd"):
        raise UserError(f"--model rbm trains with --objective cd or pcd, got {args.objective!r}")
    if len(args.hidden) != 1:
        raise UserError(f"--model rbm takes one --hidden size, got {args.hidden}")
    _fresh_run_folder(out, resume=args.resume)
    if not args.resume and out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty: give a new folder for the RBM")
    data = read_data(args.data, binary=True)
    from numpyro_ebm import storage
    from numpyro_ebm.evidence.rbm_ais import rbm_ais
    from numpyro_ebm.models import rbm
    from numpyro_ebm.training import rbm as rbm_training

    data = rbm.check_binary("--data", data)
    batch_size = min(args.batch_size, len(data))
    _check_memory(
        _rbm_training_memory(data.shape[1], args.hidden[0], batch_size),
        f"an RBM with --hidden {args.hidden[0]} on {data.shape[1]} visible units in batches of "
        f"{batch_size}",
    )
    key = _key(args.seed)
    fitted = rbm_training.train_rbm(
        data,
        args.hidden[0],
        key=key,
        method=args.objective,
        k=args.k,
        learning_rate=args.lr,
        num_steps=args.steps,
        batch_size=batch_size,
        # chunks that divide --checkpoint-every, so that checkpoints fall where asked
        steps_per_chunk=math.gcd(args.checkpoint_every, 100),
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        progress=not args.no_progress,
    )
    model, params = fitted.model, fitted.params
    storage.save_rbm(out, model, params)
    if min(model.n_visible, model.n_hidden) <= 20:
        value, how = float(model.log_likelihood(params, data)), "exact"
    else:
        import jax

        ais = rbm_ais(jax.random.fold_in(key, 1), model, params, data=data)
        free = float(-jax.vmap(lambda v: model.free_energy(params, v))(data).mean())
        value = free - float(ais.log_normalizer)
        how = f"AIS, log Z +- {float(ais.standard_error):.3g}"
    print(
        f"trained a Bernoulli RBM ({model.n_visible} visible, {model.n_hidden} hidden) with "
        f"{args.objective}-{args.k} on {len(data)} rows: log-likelihood {value:.4f} nats per "
        f"row ({how}); saved to {out}"
    )
    return 0


def _sample_rbm(args: argparse.Namespace, out: Path) -> int:
    """``sample`` of an RBM saved by ``train --model rbm`` (or ``save_rbm``): its visible
    units, by block Gibbs (MALA for a Gaussian RBM's real values) unless ``--sampler`` names
    another sampler of their kind."""
    import numpyro_ebm as ne
    from numpyro_ebm import _arviz, storage

    model, params = storage.load_rbm(args.checkpoint)
    sampler = args.sampler or ("block_gibbs" if model.binary_visible else "mala")
    data = ne.sample(
        ne.BoundEnergy(model.free_energy, params),
        sampler,
        key=_key(args.seed),
        support="01" if model.binary_visible else "real",
        event_shape=(model.n_visible,),
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        progress=not args.no_progress,
        **_step_size(args, sampler),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _arviz.to_netcdf(data, out)
    ne.mixing_report(data)
    print(f"wrote {out}")
    return 0


def _step_size(args: argparse.Namespace, sampler: str) -> dict:
    """``--step-size`` as the sampler's ``step_size`` option (``initial_step_size`` for one that
    tunes it, as HMC and NUTS); refused, naming the sampler, for one that has neither
    (unknown names are left to the sampler registry's own error)."""
    if args.step_size is None:
        return {}
    import inspect

    from numpyro_ebm.samplers import SAMPLERS

    if sampler not in SAMPLERS:
        return {"step_size": args.step_size}
    options = inspect.signature(SAMPLERS[sampler]).parameters
    for name in ("step_size", "initial_step_size"):
        if name in options:
            return {name: args.step_size}
    raise UserError(
        f"--step-size does not apply to the sampler {sampler!r}: it has no step size option "
        f"(its options: {', '.join(options) or 'none'})"
    )


def _sample_args(args: argparse.Namespace, sampler: str, trained) -> dict:
    from numpyro_ebm import workflow

    options = workflow.sampler_options(sampler, trained, args.steps_per_level)
    return {**options, **_step_size(args, sampler)}


def _load_network(folder: str):
    """The network saved by ``train`` in ``folder``; a saved RBM, or a noise ladder that is
    missing or not positive numbers, refused in one line naming the folder or file."""
    from numpyro_ebm import workflow

    if (Path(folder) / "rbm.json").is_file():
        raise UserError(
            f"{folder} holds a saved RBM (rbm.json), not a network; compare takes a network "
            f"saved by `train --model mlp`; sample the RBM with `sample --checkpoint {folder}`"
        )
    trained = workflow.load(folder)
    record = Path(folder) / "network" / "network.json"
    record = record if record.is_file() else Path(folder) / "network.json"
    sigmas = trained.metadata.get("sigmas")
    if sigmas is None:
        if trained.spec.get("network") == "NoiseConditionalMLP":
            raise UserError(
                f"{record} describes a noise-conditional network but gives no noise ladder "
                "(metadata.sigmas)"
            )
        return trained
    if not _positive_numbers(sigmas):
        raise UserError(
            f"{record}: metadata.sigmas (the noise ladder) must be a list of positive numbers, "
            f"got {sigmas!r:.80}"
        )
    return trained


def _positive_numbers(values) -> bool:
    """Whether ``values`` is a non-empty list of finite positive numbers."""
    import numpy as np

    if not isinstance(values, list) or not values:
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return False
    array = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.isfinite(array) & (array > 0)))


def _sample(args: argparse.Namespace) -> int:
    out = _output(args.out, folder=False)
    if (Path(args.checkpoint) / "rbm.json").is_file():
        return _sample_rbm(args, out)
    import numpyro_ebm as ne
    from numpyro_ebm import _arviz, workflow

    trained = _load_network(args.checkpoint)
    sampler = args.sampler or "annealed_langevin"
    data = ne.sample(
        workflow.energy_of(trained),
        sampler,
        key=_key(args.seed),
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        event_shape=tuple(trained.spec["event_shape"]),
        progress=not args.no_progress,
        **_sample_args(args, sampler, trained),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _arviz.to_netcdf(data, out)
    ne.mixing_report(data)
    print(f"wrote {out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    out = _output(args.out, folder=True)
    import numpyro_ebm as ne
    from numpyro_ebm import workflow

    trained = _load_network(args.checkpoint)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    reference = None
    if args.reference is not None:
        reference = read_data(args.reference)
        workflow.check_event_shape(reference, trained)
        reference = {"x": reference}
    options = {s: _sample_args(args, s, trained) for s in samplers}
    result = ne.compare(
        workflow.energy_of(trained),
        samplers,
        key=_key(args.seed),
        reference=reference,
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        sampler_options={s: o for s, o in options.items() if o},
        event_shape=tuple(trained.spec["event_shape"]),
        progress=not args.no_progress,
    )
    print(result)
    paths = result.save(out) + result.plot(out)
    print(f"wrote {len(paths)} files to {out}")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    import numpyro_ebm as ne
    from numpyro_ebm import _arviz

    try:
        data = _arviz.from_netcdf(args.file)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {args.file} as sampler output: {error}") from None
    groups = _arviz.group_names(data)
    if "posterior" not in groups:
        raise UserError(
            f"{args.file} holds no posterior group (groups: {groups}); give a file written by "
            "`numpyro-ebm sample` or `compare`"
        )
    report = ne.mixing_report(data)
    return 1 if args.strict and not report.ok else 0


def _integer(minimum: int, maximum: int | None = None):
    """An argparse type: an integer in ``[minimum, maximum]``, refused in one sentence."""
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be an integer {bounds}, got {text!r}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line, as every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sampling_options(parser: argparse.ArgumentParser, chains: int, samples: int) -> None:
    parser.add_argument("--chains", type=_integer(1), default=chains, help="parallel chains")
    parser.add_argument("--samples", type=_integer(1), default=samples, help="draws per chain")
    parser.add_argument("--warmup", type=_integer(0), default=200, help="warm-up steps per chain")
    parser.add_argument(
        "--step-size",
        type=_positive_float,
        default=None,
        help="initial step size (annealed_langevin: alpha at the last level)",
    )
    parser.add_argument(
        "--steps-per-level",
        type=_integer(1),
        default=100,
        help="annealed_langevin: Langevin steps per noise level",
    )


def _common_options(parser: argparse.ArgumentParser, seed_default, progress_default) -> None:
    parser.add_argument(
        "--seed",
        type=_integer(0, 2**SEED_BITS - 1),
        default=seed_default,
        help=f"seed of the jax.random key (0 to 2**{SEED_BITS} - 1)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", default=progress_default, help="hide progress bars"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="numpyro-ebm",
        description="Energy-based models in NumPyro, BlackJAX and optax: train, sample, "
        "compare and diagnose.",
    )
    _common_options(parser, 0, False)
    # the same options after the command (``numpyro-ebm demo --seed 1``); SUPPRESS keeps a
    # value given before the command when none is given after it
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="the end-to-end demo on embedded data",
        description="Train a noise-conditional energy on an embedded 2-D data set (score "
        "matching, then maximum likelihood), judge its mode weights and held-out likelihood "
        "against the truth, sample it with annealed Langevin, parallel tempering, tempered SMC "
        "and MALA, print the comparison, mixing and mode-weight tables and write data, "
        "checkpoints, netCDF files, metrics and figures to --out.",
    )
    demo.add_argument("--out", default="numpyro-ebm-demo", help="output folder")
    demo.add_argument("--dataset", default="gaussian_mixture", choices=TOY_DATASETS)
    demo.add_argument("--steps", type=_integer(1), default=6000, help="training steps")
    demo.add_argument("--chains", type=_integer(1), default=64)
    demo.add_argument(
        "--samples", type=_integer(4), default=2000, help="draws per chain of the MCMC samplers"
    )
    demo.add_argument("--warmup", type=_integer(0), default=500, help="their warm-up")
    demo.add_argument(
        "--sweeps",
        type=_integer(4),
        default=200,
        help="annealed Langevin: sweeps per chain (no warm-up: each sweep forgets its start)",
    )
    demo.set_defaults(func=_demo)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train an energy on your data",
        description="Train an energy on --data (.npy, .npz or .csv, shape (n, d)) and save "
        "the network, Orbax checkpoints, training.json and training_loss.png to --out.",
    )
    train.add_argument("--data", required=True, help="data file (.npy, .npz or .csv)")
    train.add_argument(
        "--model",
        default="mlp",
        choices=("mlp", "rbm"),
        help="mlp: an MLP energy; rbm: a Bernoulli RBM on binary data (--objective cd or pcd, "
        "--hidden H, --k)",
    )
    train.add_argument("--objective", default="ncsn", choices=OBJECTIVES)
    train.add_argument(
        "--k", type=_integer(1), default=1, help="rbm: block Gibbs steps per update (CD-k, PCD-k)"
    )
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--steps", type=_integer(1), default=6000)
    train.add_argument("--batch-size", type=_integer(1), default=256)
    train.add_argument(
        "--lr", type=_positive_float, default=3e-3, help="initial Adam learning rate (cosine decay)"
    )
    train.add_argument("--hidden", type=_integer(1), nargs="+", default=[128, 128, 128])
    train.add_argument("--num-sigmas", type=_integer(1), default=10, help="ncsn: noise levels")
    train.add_argument(
        "--sigma-max", type=_positive_float, default=None, help="ncsn: largest noise"
    )
    train.add_argument(
        "--sigma-min", type=_positive_float, default=None, help="ncsn: smallest noise"
    )
    train.add_argument("--sigma", type=_positive_float, default=0.1, help="dsm: the noise level")
    train.add_argument("--checkpoint-every", type=_integer(1), default=500)
    # the likelihood stage's defaults are TrainSettings' own
    train.add_argument(
        "--likelihood-steps",
        type=_integer(0),
        default=TRAIN_DEFAULTS["likelihood_steps"],
        help="maximum-likelihood updates after a score-based objective, with replica-exchange "
        "negatives: they set the masses of the modes, which score matching cannot see (0: skip)",
    )
    train.add_argument(
        "--likelihood-chains",
        type=_integer(1),
        default=TRAIN_DEFAULTS["likelihood_chains"],
        help="persistent replica-exchange chains of the likelihood stage",
    )
    train.add_argument(
        "--max-temperature",
        type=_positive_float,
        default=TRAIN_DEFAULTS["max_temperature"],
        help="hottest temperature of their ladder (> 1)",
    )
    train.add_argument(
        "--held-out",
        type=float,
        default=TRAIN_DEFAULTS["held_out"],
        help="fraction of the data held out for the log-likelihood in training.json (0: none)",
    )
    train.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    train.set_defaults(func=_train)

    sample = commands.add_parser(
        "sample",
        parents=[common],
        help="sample a trained energy",
        description="Sample the energy saved by `train` in --checkpoint and write the draws "
        "as netCDF (ArviZ) to --out; prints the mixing report.",
    )
    sample.add_argument("--checkpoint", required=True, help="the `train` output folder")
    sample.add_argument(
        "--sampler",
        default=None,
        help="a sampler name (default: annealed_langevin for a network, block_gibbs for an RBM)",
    )
    sample.add_argument("--out", default="samples.nc", help="netCDF file to write")
    _sampling_options(sample, chains=256, samples=100)
    sample.set_defaults(func=_sample)

    compare = commands.add_parser(
        "compare",
        parents=[common],
        help="compare samplers on a trained energy",
        description="Run several samplers on the energy in --checkpoint with the same budget; "
        "print the table and write netCDF files, comparison.csv and figures to --out.",
    )
    compare.add_argument("--checkpoint", required=True, help="the `train` output folder")
    compare.add_argument(
        "--samplers", default=",".join(DEMO_SAMPLERS), help="comma-separated sampler names"
    )
    compare.add_argument(
        "--reference", default=None, help="data file of reference draws for the accuracy columns"
    )
    compare.add_argument("--out", default="comparison", help="output folder")
    _sampling_options(compare, chains=64, samples=200)
    compare.set_defaults(func=_compare)

    diagnose = commands.add_parser(
        "diagnose",
        parents=[common],
        help="mixing report of a netCDF file",
        description="Print the mixing report (R-hat, bulk/tail ESS, MCSE, divergences, "
        "warnings) of sampler output saved as netCDF.",
    )
    diagnose.add_argument("file", help="a .nc file written by `sample` or `compare`")
    diagnose.add_argument(
        "--strict", action="store_true", help="exit with status 1 when the report has warnings"
    )
    diagnose.set_defaults(func=_diagnose)
    return parser


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error).strip() else type(error).__name__


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as the command prints it: one line, ``numpyro-ebm: warning: ...``."""
    return f"numpyro-ebm: warning: {' '.join(str(message).split())}\n"


def _interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: for ``demo`` and ``train``, the checkpoints written, if any."""
    if args.command not in ("demo", "train"):
        return "interrupted"
    folder = Path(args.out) / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    if not steps:
        return "interrupted before the first checkpoint: nothing was kept"
    kept = f"interrupted; the checkpoints written so far are kept in {folder}"
    return kept + (" (continue with train --resume)" if args.command == "train" else "")


# float32, the library's default precision
_FLOAT_BYTES = 4


def _training_memory(hidden: list[int], batch_size: int) -> int:
    """A lower bound, in bytes, of what training a network with the hidden layers ``hidden``
    holds: the weights between consecutive layers (the data width, not known yet, counted as
    1) with their gradients, and one minibatch's activations of every hidden unit."""
    widths = [1, *hidden]
    weights = sum(a * b for a, b in itertools.pairwise(widths))
    return _FLOAT_BYTES * (2 * weights + batch_size * sum(hidden))


def _available_memory() -> int:
    """Bytes the default JAX device can still allocate: an accelerator's own limit, else the
    host's available memory (Linux ``MemAvailable``), else its physical memory."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _rbm_training_memory(n_visible: int, n_hidden: int, batch_size: int) -> int:
    """Bytes that training an RBM holds: the contrastive objectives differentiate each
    example's free energy (a ``vmap``), which forms a ``(batch, n_visible, n_hidden)`` array,
    beside the weights and their gradient."""
    return _FLOAT_BYTES * (batch_size + 2) * (n_visible + 1) * n_hidden


def _check_memory(need: int, what: str) -> None:
    """Refuse to train ``what`` (the sizes, as given) when it needs ``need`` bytes, more than
    the memory available."""
    if need <= 2**30:  # anything smaller fits: no need to ask the device
        return
    available = _available_memory()
    if need > available:
        raise UserError(
            f"{what} needs at least {need / 2**30:.1f} GiB to train, more than the "
            f"{available / 2**30:.1f} GiB available; choose smaller layers or a smaller batch"
        )


# Modules whose Orbax writes and reads must not be interrupted halfway: an interrupted one
# leaves tensorstore callbacks posting to a closed event loop, or aborts the process.
_CHECKPOINT_IO = ("numpyro_ebm.training._checkpoints", "numpyro_ebm.storage")


def _in_checkpoint_io(frame) -> bool:
    """Whether ``frame`` or one of its callers runs code of the modules of ``_CHECKPOINT_IO``."""
    files = {getattr(sys.modules.get(name), "__file__", None) for name in _CHECKPOINT_IO}
    while frame is not None:
        if frame.f_code.co_filename in files:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _ctrl_c_outside_checkpoint_io():
    """Ctrl-C raises ``KeyboardInterrupt`` at once, as Python's own handler, except during a
    checkpoint's write or read: then as soon as that is over (a thread waits for it), unless
    the command has ended by then. Left alone where SIGINT is not Python's default (ignored in
    a background job, or a handler of the caller's) and outside the main thread."""
    import _thread
    import signal
    import threading
    import time

    main_thread = threading.main_thread()
    if (
        threading.current_thread() is not main_thread
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    lock = threading.Lock()  # held to interrupt, or to end: never both
    running = [True]

    def interrupt_when_done() -> None:
        while _in_checkpoint_io(sys._current_frames().get(main_thread.ident)):
            time.sleep(0.05)
        with lock:
            if running[0]:
                _thread.interrupt_main()  # runs `handler` again, in the main thread

    def handler(signum, frame) -> None:
        if not _in_checkpoint_io(frame):
            raise KeyboardInterrupt
        threading.Thread(target=interrupt_when_done, daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        with lock:
            running[0] = False
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status: 0,
    1 for ``diagnose --strict`` with warnings, 2 for bad input, 130 when interrupted."""
    import warnings

    args = build_parser().parse_args(argv)
    previous = warnings.formatwarning
    warnings.formatwarning = _warning_line
    try:
        return _run(args)
    finally:
        warnings.formatwarning = previous


def _run(args: argparse.Namespace) -> int:
    """The command, its errors reported in one line (with a traceback when
    ``NUMPYRO_EBM_TRACEBACK`` is set)."""
    traceback = bool(os.environ.get("NUMPYRO_EBM_TRACEBACK"))
    try:
        if args.command == "train":  # before anything is read or built
            _check_memory(
                _training_memory(args.hidden, args.batch_size),
                f"--hidden {' '.join(map(str, args.hidden))} with --batch-size "
                f"{args.batch_size} (weights, gradients and a minibatch's activations)",
            )
        with _ctrl_c_outside_checkpoint_io():
            return args.func(args)
    except KeyboardInterrupt:
        if traceback:
            raise
        print(f"numpyro-ebm: {_interrupted(args)}", file=sys.stderr)
        return 130
    except (UserError, ValueError, TypeError, OSError, FloatingPointError) as error:
        if traceback:
            raise
        message = _first_line(error)
        if isinstance(error, FloatingPointError) and args.command == "train":
            message += "; the run diverged: a smaller --lr may help"
        print(f"numpyro-ebm: error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # XLA's out-of-memory error, beyond what was checked
        if traceback or "RESOURCE_EXHAUSTED" not in str(error):
            raise
        print(
            f"numpyro-ebm: error: {_first_line(error).rstrip('.')}; use smaller sizes (--hidden, "
            "--batch-size, --chains)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
