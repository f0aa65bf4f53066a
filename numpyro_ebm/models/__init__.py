"""What energies are made of: restricted Boltzmann machines and deep belief nets."""

from numpyro_ebm.models import dbn, rbm

__all__ = ["dbn", "rbm"]
