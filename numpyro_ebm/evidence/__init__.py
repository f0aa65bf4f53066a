"""Normalizing constants and likelihoods: annealed importance sampling and its reverse
(:mod:`~numpyro_ebm.evidence.ais`), tempered SMC over independent runs
(:mod:`~numpyro_ebm.evidence.smc`) and the probability-flow ODE likelihood of a score model
(:mod:`~numpyro_ebm.evidence.flow`)."""

from numpyro_ebm.evidence import ais, flow, smc

__all__ = ["ais", "flow", "smc"]
