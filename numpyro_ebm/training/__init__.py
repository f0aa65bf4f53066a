"""Training energies and score networks: objectives, the replay buffer and the fit loop; RBMs
and DBNs in :mod:`numpyro_ebm.training.rbm`; reward models from pairwise preferences in
:mod:`numpyro_ebm.training.preferences`; classifiers as energies (JEM) in
:mod:`numpyro_ebm.training.hybrid`."""

from numpyro_ebm.training import buffer, hybrid, preferences, rbm
from numpyro_ebm.training.buffer import ReplayBuffer
from numpyro_ebm.training.fit import FitResult, fit
from numpyro_ebm.training.hybrid import jem, jem_energy
from numpyro_ebm.training.objectives import (
    Objective,
    cd,
    dsm,
    from_loss,
    geometric_sigmas,
    nce,
    ncsn,
    pcd,
    score_matching,
    sliced_score_matching,
)
from numpyro_ebm.training.preferences import bradley_terry
from numpyro_ebm.training.tempered import (
    TemperedMove,
    TemperedNegatives,
    combine,
    langevin_move,
    rbm_move,
    replica_exchange_pcd,
)

__all__ = [
    "FitResult",
    "Objective",
    "ReplayBuffer",
    "TemperedMove",
    "TemperedNegatives",
    "bradley_terry",
    "buffer",
    "cd",
    "combine",
    "dsm",
    "fit",
    "from_loss",
    "geometric_sigmas",
    "hybrid",
    "jem",
    "jem_energy",
    "langevin_move",
    "nce",
    "ncsn",
    "pcd",
    "preferences",
    "rbm",
    "rbm_move",
    "replica_exchange_pcd",
    "score_matching",
    "sliced_score_matching",
]
