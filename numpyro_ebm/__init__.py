"""numpyro-ebm: energy-based models as first-class citizens of NumPyro, BlackJAX and optax.

The public API is re-exported here; nothing is defined in this module. Names are imported on
first use (PEP 562), so that ``import numpyro_ebm`` and the command line's ``--help`` start
without importing JAX, ArviZ or the samplers.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, for type checkers and the API documentation
    from numpyro_ebm import (
        datasets,
        diagnostics,
        evidence,
        infer,
        kernels,
        metrics,
        models,
        plots,
        samplers,
        targets,
        training,
    )
    from numpyro_ebm.comparison import Comparison, compare
    from numpyro_ebm.energy import (
        BoundEnergy,
        DiscreteEnergyDistribution,
        EnergyDistribution,
        at_noise_level,
        energy_factor,
        evaluate_energy,
        potential_fn,
    )
    from numpyro_ebm.kernels.replica_exchange import geometric_ladder
    from numpyro_ebm.model_density import ModelDensity, logdensity_from_model
    from numpyro_ebm.nets import MLPEnergy, NoiseConditionalMLP, as_pure
    from numpyro_ebm.report import MixingReport, mixing_report
    from numpyro_ebm.samplers import Sampler, register_sampler
    from numpyro_ebm.sampling import Until, clear_cache, sample
    from numpyro_ebm.targets import Target, energy_target, model_target
    from numpyro_ebm.training import fit

__version__ = "0.1.0"

_SUBMODULES = (
    "datasets",
    "diagnostics",
    "evidence",
    "infer",
    "kernels",
    "metrics",
    "models",
    "plots",
    "samplers",
    "targets",
    "training",
)

_EXPORTS = {
    "Comparison": "numpyro_ebm.comparison",
    "compare": "numpyro_ebm.comparison",
    "BoundEnergy": "numpyro_ebm.energy",
    "DiscreteEnergyDistribution": "numpyro_ebm.energy",
    "EnergyDistribution": "numpyro_ebm.energy",
    "at_noise_level": "numpyro_ebm.energy",
    "energy_factor": "numpyro_ebm.energy",
    "evaluate_energy": "numpyro_ebm.energy",
    "potential_fn": "numpyro_ebm.energy",
    "Until": "numpyro_ebm.sampling",
    "clear_cache": "numpyro_ebm.sampling",
    "sample": "numpyro_ebm.sampling",
    "geometric_ladder": "numpyro_ebm.kernels.replica_exchange",
    "ModelDensity": "numpyro_ebm.model_density",
    "logdensity_from_model": "numpyro_ebm.model_density",
    "MLPEnergy": "numpyro_ebm.nets",
    "NoiseConditionalMLP": "numpyro_ebm.nets",
    "as_pure": "numpyro_ebm.nets",
    "MixingReport": "numpyro_ebm.report",
    "mixing_report": "numpyro_ebm.report",
    "Sampler": "numpyro_ebm.samplers",
    "register_sampler": "numpyro_ebm.samplers",
    "Target": "numpyro_ebm.targets",
    "energy_target": "numpyro_ebm.targets",
    "model_target": "numpyro_ebm.targets",
    "fit": "numpyro_ebm.training",
}

__all__ = sorted([*_SUBMODULES, *_EXPORTS, "__version__"])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"numpyro_ebm.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'numpyro_ebm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
