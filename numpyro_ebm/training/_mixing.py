r"""Whether the persistent negative chains of PCD mix: a trace of the replay buffer's first
slots at the last chunk ends, part of the checkpointed training state, and its worst
rank-normalized :math:`\hat R` and bulk ESS (Vehtari et al. 2021)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numpyro_ebm import diagnostics
from numpyro_ebm import sharding as _sharding
from numpyro_ebm.training.buffer import ReplayBuffer

__all__ = []

# Buffer slots watched (as chains) and chunk ends kept (as their draws).
SLOTS = 64
WINDOW = 8


class MixingTrace(NamedTuple):
    """``draws``: the watched slots at the last ``WINDOW`` chunk ends,
    ``(slots, WINDOW, *event_shape)``, newest last; ``count``: chunk ends recorded, at most
    ``WINDOW`` (an int32 scalar)."""

    draws: np.ndarray
    count: np.ndarray


def init(buffer: ReplayBuffer) -> MixingTrace:
    slots = buffer.samples[:SLOTS]
    shape = (slots.shape[0], WINDOW, *slots.shape[1:])
    return MixingTrace(np.zeros(shape, slots.dtype), np.zeros((), np.int32))


def record(trace: MixingTrace, buffer: ReplayBuffer) -> MixingTrace:
    """The trace with the buffer's watched slots appended (the oldest dropped)."""
    now = _sharding.to_host(buffer.samples[: trace.draws.shape[0]])
    draws = np.concatenate([np.asarray(trace.draws)[:, 1:], now[:, None]], axis=1)
    return MixingTrace(draws, np.minimum(np.asarray(trace.count) + 1, WINDOW).astype(np.int32))


def statistics(trace: MixingTrace) -> dict[str, float]:
    """``buffer_rhat`` and ``buffer_ess_bulk`` of the trace (``NaN`` until it is full), from
    :func:`numpyro_ebm.diagnostics.max_rhat_min_ess` (one compiled program)."""
    if int(trace.count) < WINDOW:
        return {"buffer_rhat": float("nan"), "buffer_ess_bulk": float("nan")}
    rhat, ess = diagnostics.max_rhat_min_ess(trace.draws)
    return {"buffer_rhat": float(rhat), "buffer_ess_bulk": float(ess)}
