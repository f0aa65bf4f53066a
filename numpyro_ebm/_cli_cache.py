"""The ``numpyro-ebm`` command's persistent compilation cache.

Each command compiles its programs (training steps, samplers, diagnostics) with XLA, which takes
most of a short run. The command keeps every compiled program in JAX's persistent compilation
cache, ``$XDG_CACHE_HOME/numpyro-ebm/jax`` (``~/.cache/numpyro-ebm/jax`` without
``XDG_CACHE_HOME``), so that a later run loads what an earlier one compiled instead of
compiling it again: a second run of the same command with the same sizes compiles nothing.

* ``--no-compilation-cache``, or the environment variable ``NUMPYRO_EBM_COMPILATION_CACHE=0``
  (also ``false``, ``no``, ``off``), turns it off: the command then sets nothing.
* A cache folder set for JAX itself (``JAX_COMPILATION_CACHE_DIR``, or
  ``jax.config.update("jax_compilation_cache_dir", ...)`` before :func:`~numpyro_ebm.cli.main`)
  is used as it is, with JAX's own settings.
* Only the command sets it, for the command's duration: importing or calling the library never
  does, and :func:`~numpyro_ebm.cli.main` called from Python leaves JAX's settings as it found
  them.

Every program is kept, however fast it compiled or small it is
(``jax_persistent_cache_min_compile_time_secs=0``, ``jax_persistent_cache_min_entry_size_bytes
=-1``): the command's programs are many small ones, which together take seconds. The folder
grows by a few megabytes per new configuration; delete it to start afresh. Like any JAX cache
it is trusted: do not let others write to it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

CACHE_VARIABLE = "NUMPYRO_EBM_COMPILATION_CACHE"
DEFAULT_FOLDER = "~/.cache/numpyro-ebm/jax"
_OFF = ("0", "false", "no", "off")
# JAX's settings while the command runs: every program is written, whatever its compile time
# or size (-1: no size floor, and none chosen by JAX for the file system)
_SETTINGS = {
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": -1,
}


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/numpyro-ebm/jax``, or ``~/.cache/numpyro-ebm/jax`` where
    ``XDG_CACHE_HOME`` is unset, empty or relative (as the XDG specification says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "numpyro-ebm" / "jax"


def wanted(no_compilation_cache: bool) -> bool:
    """Whether the command keeps its compiled programs: not with ``--no-compilation-cache`` nor
    with ``NUMPYRO_EBM_COMPILATION_CACHE`` set to 0, false, no or off."""
    if no_compilation_cache:
        return False
    return os.environ.get(CACHE_VARIABLE, "").strip().lower() not in _OFF


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists, or can be made, and a file can be written in it; warns in
    one line where not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        warnings.warn(
            f"compiled programs are not kept for the next run: {folder} cannot be written "
            f"({error.strerror or error}); set {CACHE_VARIABLE}=0 to silence this",
            stacklevel=2,
        )
        return False
    return True


@contextlib.contextmanager
def compilation_cache(enabled: bool = True) -> Iterator[Path | None]:
    """JAX's persistent compilation cache in :func:`cache_folder` while the block runs
    (``enabled=False``: nothing set); yields the folder in use, ``None`` for none. JAX's
    settings, and its cache's state, are restored on the way out."""
    if not enabled:
        yield None
        return
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    own = jax.config.jax_compilation_cache_dir
    if own:  # the user's, with the user's settings
        yield Path(own)
        return
    folder = cache_folder()
    if not _writable(folder):
        yield None
        return
    saved = {name: jax.config.values[name] for name in ("jax_compilation_cache_dir", *_SETTINGS)}
    # JAX opens its cache once per process, at the first compilation that looks for it; a
    # reset makes the next one open this folder even if the process compiled before
    jax_cache.reset_cache()
    try:
        jax.config.update("jax_compilation_cache_dir", str(folder))
        for name, value in _SETTINGS.items():
            jax.config.update(name, value)
        yield folder
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)
        jax_cache.reset_cache()
