"""numpyro-ebm: energy-based models as first-class citizens of NumPyro, BlackJAX and optax.

The public API is re-exported here; nothing is defined in this module.
"""

from numpyro_ebm.energy import EnergyDistribution, energy_factor, evaluate_energy, potential_fn
from numpyro_ebm.model import ModelDensity, logdensity_from_model
from numpyro_ebm.nets import MLPEnergy, NoiseConditionalMLP, as_pure

__version__ = "0.1.0"

__all__ = [
    "EnergyDistribution",
    "MLPEnergy",
    "ModelDensity",
    "NoiseConditionalMLP",
    "__version__",
    "as_pure",
    "energy_factor",
    "evaluate_energy",
    "logdensity_from_model",
    "potential_fn",
]
