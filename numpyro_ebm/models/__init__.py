"""What energies are made of: lattice and pairwise binary models (:mod:`.ising`), restricted
Boltzmann machines (:mod:`.rbm`) and deep belief nets (:mod:`.dbn`)."""

from numpyro_ebm.models import dbn, ising, rbm

__all__ = ["dbn", "ising", "rbm"]
