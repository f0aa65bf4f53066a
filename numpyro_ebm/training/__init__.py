"""Training energies and score networks: objectives, the replay buffer and the fit loop."""

from numpyro_ebm.training import buffer
from numpyro_ebm.training.buffer import ReplayBuffer
from numpyro_ebm.training.fit import FitResult, fit
from numpyro_ebm.training.objectives import (
    cd,
    dsm,
    geometric_sigmas,
    nce,
    ncsn,
    pcd,
    score_matching,
    sliced_score_matching,
)

__all__ = [
    "FitResult",
    "ReplayBuffer",
    "buffer",
    "cd",
    "dsm",
    "fit",
    "geometric_sigmas",
    "nce",
    "ncsn",
    "pcd",
    "score_matching",
    "sliced_score_matching",
]
