"""Our BlackJAX-style kernels; each module exports State, Info, init, build_kernel and
as_top_level_api, but :mod:`~numpyro_ebm.kernels.cftp`, an exact sampler (coupling from the
past) rather than a Markov kernel."""

from numpyro_ebm.kernels import (
    annealed_langevin,
    block_gibbs,
    cftp,
    checkerboard,
    gibbs,
    gibbs_with_gradients,
    replica_exchange,
    swendsen_wang,
    ula,
)

__all__ = [
    "annealed_langevin",
    "block_gibbs",
    "cftp",
    "checkerboard",
    "gibbs",
    "gibbs_with_gradients",
    "replica_exchange",
    "swendsen_wang",
    "ula",
]
