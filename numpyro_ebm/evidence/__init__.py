"""Normalizing constants and likelihoods of energy-based models: exact enumeration and
transfer matrices (:mod:`.exact`)."""

from numpyro_ebm.evidence import exact

__all__ = ["exact"]
