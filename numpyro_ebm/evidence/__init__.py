"""Normalizing constants and likelihoods: exact enumeration and transfer matrices
(:mod:`~numpyro_ebm.evidence.exact`), annealed importance sampling and its reverse
(:mod:`~numpyro_ebm.evidence.ais`), tempered SMC over independent runs
(:mod:`~numpyro_ebm.evidence.smc`) and the probability-flow ODE likelihood of a score model
(:mod:`~numpyro_ebm.evidence.flow`)."""

from numpyro_ebm.evidence import ais, exact, flow, smc

__all__ = ["ais", "exact", "flow", "smc"]
