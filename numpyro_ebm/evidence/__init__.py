"""Normalizing constants and likelihoods: exact enumeration and transfer matrices
(:mod:`~numpyro_ebm.evidence.exact`), annealed importance sampling and its reverse
(:mod:`~numpyro_ebm.evidence.ais`, and for RBMs :mod:`~numpyro_ebm.evidence.rbm_ais`), tempered
SMC over independent runs (:mod:`~numpyro_ebm.evidence.smc`) and the probability-flow ODE
likelihood of a score model (:mod:`~numpyro_ebm.evidence.flow`). AIS and SMC anneal from the
references of :mod:`~numpyro_ebm.evidence.references` with the moves of
:mod:`~numpyro_ebm.evidence.mutations`.

Each submodule is imported on first use (PEP 562), so that a sampler that needs one of them
(the Laplace fit of :mod:`~numpyro_ebm.evidence.references`) does not import the rest (the RBM
models and NumPyro among them).
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from numpyro_ebm.evidence import ais, exact, flow, mutations, rbm_ais, references, smc

__all__ = ["ais", "exact", "flow", "mutations", "rbm_ais", "references", "smc"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
