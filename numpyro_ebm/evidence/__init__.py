"""Normalizing constants and likelihoods: exact enumeration and transfer matrices
(:mod:`~numpyro_ebm.evidence.exact`), annealed importance sampling and its reverse
(:mod:`~numpyro_ebm.evidence.ais`, and for RBMs :mod:`~numpyro_ebm.evidence.rbm_ais`), tempered
SMC over independent runs (:mod:`~numpyro_ebm.evidence.smc`) and the probability-flow ODE
likelihood of a score model (:mod:`~numpyro_ebm.evidence.flow`). AIS and SMC anneal from the
references of :mod:`~numpyro_ebm.evidence.references` with the moves of
:mod:`~numpyro_ebm.evidence.mutations`."""

from numpyro_ebm.evidence import ais, exact, flow, mutations, rbm_ais, references, smc

__all__ = ["ais", "exact", "flow", "mutations", "rbm_ais", "references", "smc"]
