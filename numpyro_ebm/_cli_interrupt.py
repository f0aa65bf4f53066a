"""Ctrl-C in the ``numpyro-ebm`` command: answered at once, except during a checkpoint's (or a
compiled program's cache entry's) write or read, which is finished first so that none is left
half-written; and the one line that says what the interrupted command kept."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

# Modules whose writes and reads must not be interrupted halfway: an interrupted Orbax write or
# read leaves tensorstore callbacks posting to a closed event loop, or aborts the process; an
# interrupted entry of JAX's compilation cache would be left truncated.
_UNINTERRUPTED_IO = (
    "numpyro_ebm.training._checkpoints",
    "numpyro_ebm.storage",
    "jax._src.lru_cache",
)


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: for ``demo`` and ``train``, the checkpoints written, if any."""
    if args.command not in ("demo", "train"):
        return "interrupted"
    folder = Path(args.out) / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    if not steps:
        return "interrupted before the first checkpoint: nothing was kept"
    kept = f"interrupted; the checkpoints written so far are kept in {folder}"
    return kept + (" (continue with train --resume)" if args.command == "train" else "")


def _in_uninterrupted_io(frame) -> bool:
    """Whether ``frame`` or one of its callers runs code of the modules of
    ``_UNINTERRUPTED_IO``."""
    files = {getattr(sys.modules.get(name), "__file__", None) for name in _UNINTERRUPTED_IO}
    while frame is not None:
        if frame.f_code.co_filename in files:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def ctrl_c_outside_checkpoint_io():
    """Ctrl-C raises ``KeyboardInterrupt`` at once, as Python's own handler, except during a
    checkpoint's write or read (or a compilation cache entry's): then as soon as that is over
    (a thread waits for it), unless the command has ended by then. Left alone where SIGINT is
    not Python's default (ignored in a background job, or a handler of the caller's) and
    outside the main thread."""
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
        while _in_uninterrupted_io(sys._current_frames().get(main_thread.ident)):
            time.sleep(0.05)
        with lock:
            if running[0]:
                _thread.interrupt_main()  # runs `handler` again, in the main thread

    def handler(signum, frame) -> None:
        if not _in_uninterrupted_io(frame):
            raise KeyboardInterrupt
        threading.Thread(target=interrupt_when_done, daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        with lock:
            running[0] = False
        signal.signal(signal.SIGINT, signal.default_int_handler)
