"""What energies are made of: lattice and pairwise binary models (:mod:`.ising`)."""

from numpyro_ebm.models import ising

__all__ = ["ising"]
