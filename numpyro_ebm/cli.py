"""The ``numpyro-ebm`` command: ``demo``, ``train``, ``sample``, ``compare``, ``diagnose``.

Bad input (a missing file, an unreadable format, NaN rows, a wrong dimension, an output path
that cannot be written, a saved model that does not fit its description, a diverging training
run) ends the command with a one-line ``numpyro-ebm: error: ...`` on stderr and exit status 2,
without a traceback (set the environment variable ``NUMPYRO_EBM_TRACEBACK=1`` to see it).
Output paths are checked before any work, so nothing computed is lost to a bad ``--out``.
Ctrl-C ends the command with one line and exit status 130; checkpoints already written stay.

The module imports neither JAX nor the library until a command runs, so that ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["main"]

DATA_FORMATS = (".npy", ".npz", ".csv")
# The choices `--help` lists, kept here so that it needs no import of the library;
# tests/test_cli.py checks them against workflow.OBJECTIVES, demo.DEMO_SAMPLERS and
# datasets.TOY_DATASETS.
OBJECTIVES = ("ncsn", "dsm", "score_matching", "sliced_score_matching", "cd", "pcd")
DEMO_SAMPLERS = ("annealed_langevin", "parallel_tempering", "tempered_smc", "mala")
TOY_DATASETS = ("checkerboard", "gaussian_mixture", "rings", "swiss_roll", "two_moons")
SEED_BITS = 32  # jax.random.key keeps 32 bits of a seed without 64-bit mode: larger ones repeat
_MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}


class UserError(Exception):
    """An error in what the user gave: reported in one line, exit status 2."""


def read_data(path: str | Path) -> np.ndarray:
    """Data (n, d) from a ``.npy``, ``.npz`` (its only array, or the one named ``data``) or
    ``.csv`` file (comma-separated numbers, an optional header line), as float32. Never
    unpickles; refuses complex, boolean and non-numeric data, NaN and infinite values and
    values beyond float32's range, each with a :class:`UserError` naming the file."""
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
    return _as_table(path, data)


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


def _as_table(path: Path, data: np.ndarray) -> np.ndarray:
    import numpy as np

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

    settings = workflow.TrainSettings(
        objective=args.objective,
        num_steps=args.steps,
        batch_size=min(args.batch_size, len(data)),
        learning_rate=args.lr,
        hidden=tuple(args.hidden),
        num_sigmas=args.num_sigmas,
        sigma_max=args.sigma_max,
        sigma_min=args.sigma_min,
        sigma=args.sigma,
        checkpoint_every=args.checkpoint_every,
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
    """``train --model rbm``: a Bernoulli RBM by CD-k or PCD-k with block Gibbs, its exact
    log-likelihood (smaller layer <= 20 units) or an AIS estimate, saved as JSON + .npz."""
    if args.objective not in ("cd", "pcd"):
        raise UserError(f"--model rbm trains with --objective cd or pcd, got {args.objective!r}")
    if args.resume:
        raise UserError("--resume is not available for --model rbm (a run takes seconds)")
    if len(args.hidden) != 1:
        raise UserError(f"--model rbm takes one --hidden size, got {args.hidden}")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty: give a new folder for the RBM")
    data = read_data(args.data)
    from numpyro_ebm.models import rbm

    data = rbm.check_binary("--data", data)
    key = _key(args.seed)
    fitted = rbm.train_rbm(
        data,
        args.hidden[0],
        key=key,
        method=args.objective,
        k=args.k,
        learning_rate=args.lr,
        num_steps=args.steps,
        batch_size=min(args.batch_size, len(data)),
        progress=not args.no_progress,
    )
    model, params = fitted.model, fitted.params
    rbm.save_rbm(out, model, params)
    if min(model.n_visible, model.n_hidden) <= 20:
        value, how = float(model.log_likelihood(params, data)), "exact"
    else:
        import jax

        ais = model.ais_log_partition(jax.random.fold_in(key, 1), params, data=data)
        free = float(-jax.vmap(lambda v: model.free_energy(params, v))(data).mean())
        value, how = free - float(ais.log_z), f"AIS, log Z +- {float(ais.stderr):.3g}"
    print(
        f"trained a Bernoulli RBM ({model.n_visible} visible, {model.n_hidden} hidden) with "
        f"{args.objective}-{args.k} on {len(data)} rows: log-likelihood {value:.4f} nats per "
        f"row ({how}); saved to {out}"
    )
    return 0


def _sample_rbm(args: argparse.Namespace, out: Path) -> int:
    """``sample`` of an RBM saved by ``train --model rbm``: block Gibbs on its visible units."""
    import numpyro_ebm as ne
    from numpyro_ebm import _arviz
    from numpyro_ebm.models import rbm

    model, params = rbm.load_rbm(args.checkpoint)
    data = ne.sample(
        ne.BoundEnergy(model.free_energy, params),
        "block_gibbs",
        key=_key(args.seed),
        support="01",
        event_shape=(model.n_visible,),
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        progress=not args.no_progress,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _arviz.to_netcdf(data, out)
    ne.mixing_report(data)
    print(f"wrote {out}")
    return 0


def _sample_args(args: argparse.Namespace, sampler: str, trained) -> dict:
    from numpyro_ebm import workflow

    options = workflow.sampler_options(sampler, trained, args.steps_per_level)
    if args.step_size is not None and sampler != "tempered_smc":
        options["step_size"] = args.step_size
    return options


def _sample(args: argparse.Namespace) -> int:
    out = _output(args.out, folder=False)
    if (Path(args.checkpoint) / "rbm.json").is_file():
        return _sample_rbm(args, out)
    import numpyro_ebm as ne
    from numpyro_ebm import _arviz, workflow

    trained = workflow.load(args.checkpoint)
    data = ne.sample(
        workflow.energy_of(trained),
        args.sampler,
        key=_key(args.seed),
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        event_shape=tuple(trained.spec["event_shape"]),
        progress=not args.no_progress,
        **_sample_args(args, args.sampler, trained),
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

    trained = workflow.load(args.checkpoint)
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
        description="Train a noise-conditional energy on an embedded 2-D data set, sample it "
        "with annealed Langevin, parallel tempering, tempered SMC and MALA, print the "
        "comparison and mixing tables and write data, checkpoints, netCDF files, metrics and "
        "figures to --out.",
    )
    demo.add_argument("--out", default="numpyro-ebm-demo", help="output folder")
    demo.add_argument("--dataset", default="gaussian_mixture", choices=TOY_DATASETS)
    demo.add_argument("--steps", type=_integer(1), default=6000, help="training steps")
    demo.add_argument("--chains", type=_integer(1), default=64)
    demo.add_argument("--samples", type=_integer(1), default=200)
    demo.add_argument("--warmup", type=_integer(0), default=200)
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
    sample.add_argument("--sampler", default="annealed_langevin")
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


def _interrupted(args: argparse.Namespace) -> str:
    if args.command not in ("demo", "train"):
        return "interrupted"
    kept = f"interrupted; the checkpoints written so far are kept in {args.out}/checkpoints"
    return kept + (" (continue with train --resume)" if args.command == "train" else "")


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status: 0,
    1 for ``diagnose --strict`` with warnings, 2 for bad input, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if os.environ.get("NUMPYRO_EBM_TRACEBACK"):
            raise
        print(f"numpyro-ebm: {_interrupted(args)}", file=sys.stderr)
        return 130
    except (UserError, ValueError, TypeError, OSError, FloatingPointError) as error:
        if os.environ.get("NUMPYRO_EBM_TRACEBACK"):
            raise
        message = _first_line(error)
        if isinstance(error, FloatingPointError) and args.command == "train":
            message += "; the run diverged: a smaller --lr may help"
        print(f"numpyro-ebm: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
