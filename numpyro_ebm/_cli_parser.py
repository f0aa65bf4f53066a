"""The ``numpyro-ebm`` command's arguments: :func:`build_parser` and the choices ``--help`` lists.

Nothing here imports JAX, NumPy or the library, so that ``--help`` and argument errors answer
at once; the one exception is the help of ``train`` and ``demo``, which shows the defaults of
:class:`~numpyro_ebm.workflow.TrainSettings` and so imports that module (and with it JAX: 1.4 s
on a 2-core CPU). Those defaults are read from ``TrainSettings``, never retyped here
(:class:`TrainDefault`): an option left out is ``TrainSettings``' own value.
"""

from __future__ import annotations

import argparse

from numpyro_ebm._cli_cache import CACHE_VARIABLE, DEFAULT_FOLDER

# The choices `--help` lists, kept here so that it needs no import of the library;
# tests/test_cli.py checks them against workflow.OBJECTIVES, demo.DEMO_SAMPLERS and
# datasets.TOY_DATASETS.
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
SEED_BITS = 32  # jax.random.key keeps 32 bits of a seed without 64-bit mode: larger ones repeat

_DESCRIPTION = """\
Energy-based models in NumPyro, BlackJAX and optax: train, sample, compare and diagnose."""

_EPILOG = f"""\
environment variables:
  {CACHE_VARIABLE}=0
                   as --no-compilation-cache: keep no compiled programs for the next run
                   (by default they are kept in {DEFAULT_FOLDER})
  JAX_COMPILATION_CACHE_DIR=FOLDER
                   keep them in FOLDER instead, with JAX's own settings
  NUMPYRO_EBM_TRACEBACK=1
                   show the traceback of an error instead of its one line"""


class TrainDefault:
    """The default of an option that sets a field of
    :class:`~numpyro_ebm.workflow.TrainSettings`: that field's own default, looked up only when
    it is needed (to print ``--help``, or by :func:`resolve_defaults` once the command runs),
    since importing ``workflow`` imports JAX."""

    def __init__(self, field: str) -> None:
        self.field = field

    @property
    def value(self):
        from numpyro_ebm.workflow import TrainSettings

        return TrainSettings._field_defaults[self.field]

    def __str__(self) -> str:  # as ``--help`` shows it (%(default)s)
        value = self.value
        if value is None:
            return "from the data"
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    def __repr__(self) -> str:
        return f"TrainDefault({self.field!r})"


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every :class:`TrainDefault` replaced by its value."""
    for name, value in vars(args).items():
        if isinstance(value, TrainDefault):
            setattr(args, name, value.value)
    return args


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


def _common_options(parser: argparse.ArgumentParser, seed_default, flag_default) -> None:
    parser.add_argument(
        "--seed",
        type=_integer(0, 2**SEED_BITS - 1),
        default=seed_default,
        help=f"seed of the jax.random key (0 to 2**{SEED_BITS} - 1)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", default=flag_default, help="hide progress bars"
    )
    parser.add_argument(
        "--no-compilation-cache",
        action="store_true",
        default=flag_default,
        help=f"keep no compiled programs in {DEFAULT_FOLDER} for the next run (by default a "
        "second run compiles nothing that an earlier one compiled); as "
        f"{CACHE_VARIABLE}=0",
    )


def _train_options(train: argparse.ArgumentParser) -> None:
    """The options of ``train`` that set a field of ``TrainSettings``, with its defaults."""

    def setting(flag: str, field: str, text: str, **kwargs) -> None:
        default = TrainDefault(field)
        train.add_argument(flag, default=default, help=f"{text} (default: %(default)s)", **kwargs)

    setting("--objective", "objective", "training objective", choices=OBJECTIVES)
    setting("--steps", "num_steps", "training steps", type=_integer(1))
    setting("--batch-size", "batch_size", "minibatch size", type=_integer(1))
    setting(
        "--lr", "learning_rate", "initial Adam learning rate (cosine decay)", type=_positive_float
    )
    setting("--hidden", "hidden", "hidden layer sizes (rbm: one size)", type=_integer(1), nargs="+")
    setting("--num-sigmas", "num_sigmas", "ncsn: noise levels", type=_integer(2))
    setting("--sigma-max", "sigma_max", "ncsn: largest noise", type=_positive_float)
    setting("--sigma-min", "sigma_min", "ncsn: smallest noise", type=_positive_float)
    setting("--sigma", "sigma", "dsm: the noise level", type=_positive_float)
    setting("--checkpoint-every", "checkpoint_every", "steps between checkpoints", type=_integer(1))
    setting(
        "--likelihood-steps",
        "likelihood_steps",
        "maximum-likelihood updates after a score-based objective, with replica-exchange "
        "negatives: they set the masses of the modes, which score matching cannot see (0: skip)",
        type=_integer(0),
    )
    setting(
        "--likelihood-chains",
        "likelihood_chains",
        "persistent replica-exchange chains of the likelihood stage",
        type=_integer(1),
    )
    setting(
        "--max-temperature",
        "max_temperature",
        "hottest temperature of their ladder (> 1)",
        type=_positive_float,
    )
    setting(
        "--held-out",
        "held_out",
        "fraction of the data held out for the log-likelihood in training.json (0: none)",
        type=float,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="numpyro-ebm",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    demo.add_argument(
        "--steps",
        type=_integer(1),
        default=TrainDefault("num_steps"),
        help="training steps (default: %(default)s)",
    )
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

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train an energy on your data",
        description="Train an energy on --data (.npy, .npz or .csv, shape (n, d)) and save "
        "the network, Orbax checkpoints, training.json and training_loss.png to --out. The "
        "defaults are those of numpyro_ebm.workflow.TrainSettings.",
    )
    train.add_argument("--data", required=True, help="data file (.npy, .npz or .csv)")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument(
        "--model",
        default="mlp",
        choices=("mlp", "rbm"),
        help="mlp: an MLP energy; rbm: a Bernoulli RBM on binary data (--objective cd or pcd, "
        "--hidden H, --k)",
    )
    train.add_argument(
        "--k", type=_integer(1), default=1, help="rbm: block Gibbs steps per update (CD-k, PCD-k)"
    )
    _train_options(train)
    train.add_argument("--resume", action="store_true", help="continue from the checkpoints")

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
    return parser
