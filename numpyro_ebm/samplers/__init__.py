"""Sampler values (see :mod:`numpyro_ebm.samplers.base`): ``ne.samplers.mala(step_size=...)``,
``ne.samplers.parallel_tempering(inner=..., temperatures=...)``, ..., each registered under its
name for the command line and :func:`~numpyro_ebm.compare`."""

from numpyro_ebm.samplers.adaptive import chees_hmc, mclmc, meads
from numpyro_ebm.samplers.base import (
    SAMPLERS,
    STAT_NAMES,
    ChainSampler,
    Sampler,
    get_sampler,
    register_sampler,
)
from numpyro_ebm.samplers.discrete import (
    block_gibbs,
    checkerboard,
    gibbs,
    gibbs_with_gradients,
    swendsen_wang,
)
from numpyro_ebm.samplers.exchange import exchange
from numpyro_ebm.samplers.hmc import hmc, nuts
from numpyro_ebm.samplers.langevin import mala, sgld, ula
from numpyro_ebm.samplers.mixed import hmc_gibbs
from numpyro_ebm.samplers.pseudo_likelihood import pseudo_likelihood
from numpyro_ebm.samplers.tempering import annealed_langevin, parallel_tempering
from numpyro_ebm.samplers.whole_runs import numpyro_nuts, tempered_smc

__all__ = [
    "SAMPLERS",
    "STAT_NAMES",
    "ChainSampler",
    "Sampler",
    "annealed_langevin",
    "block_gibbs",
    "checkerboard",
    "chees_hmc",
    "exchange",
    "get_sampler",
    "gibbs",
    "gibbs_with_gradients",
    "hmc",
    "hmc_gibbs",
    "mala",
    "mclmc",
    "meads",
    "numpyro_nuts",
    "nuts",
    "parallel_tempering",
    "pseudo_likelihood",
    "register_sampler",
    "sgld",
    "swendsen_wang",
    "tempered_smc",
    "ula",
]
