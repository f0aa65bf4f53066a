"""The ``numpyro-ebm`` command: ``demo``, ``train``, ``sample``, ``compare``, ``diagnose``.

Bad input (a missing file, an unreadable format, NaN rows, a wrong dimension, an output path
that cannot be written, a saved model that does not fit its description, a diverging training
run) ends the command with a one-line ``numpyro-ebm: error: ...`` on stderr and exit status 2,
without a traceback (set the environment variable ``NUMPYRO_EBM_TRACEBACK=1`` to see it).
Output paths are checked before any work, so nothing computed is lost to a bad ``--out``.
Ctrl-C ends the command with one line and exit status 130; checkpoints already written stay
(one being written is finished first, so that none is left half-written).
Warnings are printed in one line each, ``numpyro-ebm: warning: ...``.

Compiled programs are kept in JAX's persistent compilation cache,
``$XDG_CACHE_HOME/numpyro-ebm/jax`` (``~/.cache/numpyro-ebm/jax``), so that a second run
compiles nothing that an earlier one compiled; ``--no-compilation-cache`` or the environment
variable ``NUMPYRO_EBM_COMPILATION_CACHE=0`` turns that off, and ``JAX_COMPILATION_CACHE_DIR``
names another folder. Only the command sets the cache, never an import of the library.

The module imports neither JAX nor the library until a command runs, so that ``--help`` and
argument errors answer at once. Its parts: the arguments (``numpyro_ebm._cli_parser``), the
commands (``numpyro_ebm._cli_commands``), the checks of what the user gives
(``numpyro_ebm._cli_inputs``), Ctrl-C (``numpyro_ebm._cli_interrupt``) and the compilation
cache (``numpyro_ebm._cli_cache``).
"""

from __future__ import annotations

import argparse
import os
import sys

from numpyro_ebm import _cli_commands
from numpyro_ebm._cli_cache import compilation_cache, wanted
from numpyro_ebm._cli_inputs import UserError as UserError  # importable from here, as before
from numpyro_ebm._cli_inputs import read_data as read_data
from numpyro_ebm._cli_interrupt import ctrl_c_outside_checkpoint_io, interrupted
from numpyro_ebm._cli_parser import build_parser, resolve_defaults

__all__ = ["main"]


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


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error).strip() else type(error).__name__


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as the command prints it: one line, ``numpyro-ebm: warning: ...``."""
    return f"numpyro-ebm: warning: {' '.join(str(message).split())}\n"


def _run(args: argparse.Namespace) -> int:
    """The command, its errors reported in one line (with a traceback when
    ``NUMPYRO_EBM_TRACEBACK`` is set)."""
    traceback = bool(os.environ.get("NUMPYRO_EBM_TRACEBACK"))
    try:
        resolve_defaults(args)  # TrainSettings' own defaults, for the options left out
        with (
            compilation_cache(wanted(args.no_compilation_cache)),
            ctrl_c_outside_checkpoint_io(),
        ):
            return _cli_commands.command(args.command)(args)
    except KeyboardInterrupt:
        if traceback:
            raise
        print(f"numpyro-ebm: {interrupted(args)}", file=sys.stderr)
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
