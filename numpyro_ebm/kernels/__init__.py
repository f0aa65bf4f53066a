"""Our BlackJAX-style kernels; each module exports State, Info, init, build_kernel and
as_top_level_api."""

from numpyro_ebm.kernels import annealed_langevin, langevin, replica_exchange

__all__ = ["annealed_langevin", "langevin", "replica_exchange"]
