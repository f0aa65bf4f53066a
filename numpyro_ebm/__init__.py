"""numpyro-ebm: energy-based models as first-class citizens of NumPyro, BlackJAX and optax.

The public API is re-exported here; nothing is defined in this module.
"""

from numpyro_ebm import (
    datasets,
    diagnostics,
    infer,
    kernels,
    metrics,
    plots,
    samplers,
    targets,
    training,
)
from numpyro_ebm.compare import Comparison, compare
from numpyro_ebm.energy import EnergyDistribution, energy_factor, evaluate_energy, potential_fn
from numpyro_ebm.inference import Until, clear_cache, sample
from numpyro_ebm.kernels.replica_exchange import geometric_ladder
from numpyro_ebm.model import ModelDensity, logdensity_from_model
from numpyro_ebm.nets import MLPEnergy, NoiseConditionalMLP, as_pure
from numpyro_ebm.report import MixingReport, mixing_report
from numpyro_ebm.samplers import Sampler, register_sampler
from numpyro_ebm.targets import Target, energy_target, model_target
from numpyro_ebm.training import fit

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "EnergyDistribution",
    "MLPEnergy",
    "MixingReport",
    "ModelDensity",
    "NoiseConditionalMLP",
    "Sampler",
    "Target",
    "Until",
    "__version__",
    "as_pure",
    "clear_cache",
    "compare",
    "datasets",
    "diagnostics",
    "energy_factor",
    "energy_target",
    "evaluate_energy",
    "fit",
    "geometric_ladder",
    "infer",
    "kernels",
    "logdensity_from_model",
    "metrics",
    "mixing_report",
    "model_target",
    "plots",
    "potential_fn",
    "register_sampler",
    "sample",
    "samplers",
    "targets",
    "training",
]
