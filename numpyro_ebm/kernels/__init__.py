"""Our BlackJAX-style kernels; each module exports State, Info, init, build_kernel and
as_top_level_api."""

from numpyro_ebm.kernels import (
    annealed_langevin,
    block_gibbs,
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
    "checkerboard",
    "gibbs",
    "gibbs_with_gradients",
    "replica_exchange",
    "swendsen_wang",
    "ula",
]
