r"""Samplers of discrete energies: single-site Gibbs, checkerboard sweeps, Gibbs with gradients,
Swendsen-Wang clusters and block Gibbs, on ``"discrete"`` targets (configurations of bits or
spins: ``ne.sample(energy, sampler, support="pm1" | "01", ...)``).

Each wraps a kernel of :mod:`numpyro_ebm.kernels` (the maths and references are there); all
report the package's statistics (``acceptance_rate``: 1 for heat-bath moves) and tune nothing
in warm-up. ``gibbs``, ``checkerboard`` and ``gibbs_with_gradients`` need only the log density
and can be the inner move of :func:`~numpyro_ebm.samplers.parallel_tempering`.
"""

from __future__ import annotations

import jax

from numpyro_ebm.energy import BoundEnergy, BoundLogDensity
from numpyro_ebm.kernels import block_gibbs as _block_gibbs
from numpyro_ebm.kernels import checkerboard as _checkerboard
from numpyro_ebm.kernels import gibbs as _gibbs
from numpyro_ebm.kernels import gibbs_with_gradients as _gwg
from numpyro_ebm.kernels import swendsen_wang as _swendsen_wang
from numpyro_ebm.samplers.base import (
    ChainSampler,
    Sampler,
    register_sampler,
    stats,
    untuned_warmup,
)

__all__ = [
    "BlockGibbs",
    "DensityMove",
    "SwendsenWang",
    "block_gibbs",
    "checkerboard",
    "gibbs",
    "gibbs_with_gradients",
    "swendsen_wang",
]

DISCRETE = frozenset({"discrete"})


def _chain(algorithm) -> ChainSampler:
    """A kernel with a ``position``/``logdensity`` state and an info with ``acceptance_rate``,
    ``is_finite`` and ``num_grad_evals``, as one chain of ``sample()``."""

    def warmup(rng_key, position, num_warmup):
        init_key, run_key = jax.random.split(rng_key)
        state = algorithm.init(position, init_key)
        return untuned_warmup(algorithm.step, state, run_key, num_warmup), {}

    def step(rng_key, state, parameters):
        state, info = algorithm.step(rng_key, state)
        return state, stats(
            acceptance_rate=info.acceptance_rate,
            logdensity=state.logdensity,
            grads=getattr(info, "num_grad_evals", 0),
            finite=info.is_finite,
        )

    return ChainSampler(warmup, step, lambda state: state.position)


class DensityMove(Sampler):
    """A discrete sampler whose move needs only the target's log density (Gibbs, checkerboard,
    Gibbs with gradients): its chain runs its ``kernel``."""

    def chain_sampler(self, target) -> ChainSampler:
        return _chain(self.kernel(target.logdensity_fn, target.support, **self.options))


def _density_sampler(name: str, module, options: dict) -> DensityMove:
    """The discrete sampler ``name``, moved by ``module``'s kernel (a BlackJAX-style module of
    :mod:`numpyro_ebm.kernels`)."""

    def kernel(logdensity_fn, support, **options):
        return module.as_top_level_api(logdensity_fn, spins=support, **options)

    return DensityMove(name, options, DISCRETE, kernel=kernel)


@register_sampler("gibbs")
def gibbs(*, scan: str = "random", update: str = "heat_bath") -> Sampler:
    """Single-site Gibbs (``update="heat_bath"``) or Metropolis sweeps, random or systematic
    ``scan``, for any energy of bits or spins (:mod:`numpyro_ebm.kernels.gibbs`)."""
    _gibbs.check_update(update)
    if scan not in ("random", "systematic"):
        raise ValueError(f"scan must be 'random' or 'systematic', got {scan!r}")
    return _density_sampler("gibbs", _gibbs, {"scan": scan, "update": update})


@register_sampler("checkerboard")
def checkerboard(*, update: str = "heat_bath", flip_ratio: str = "gradient") -> Sampler:
    """Red-black sweeps of a lattice model with nearest-neighbour couplings (the Ising model),
    each sublattice updated at once (:mod:`numpyro_ebm.kernels.checkerboard`); even sides.
    ``flip_ratio="gradient"`` reads the sites' flip log ratios from one gradient (log densities
    affine in each site); ``"curvature"`` adds each site's curvature, for log densities of
    degree at most two in each site (a Gaussian likelihood of the spins)."""
    _gibbs.check_update(update)
    _checkerboard.check_flip_ratio(flip_ratio)
    return _density_sampler(
        "checkerboard", _checkerboard, {"update": update, "flip_ratio": flip_ratio}
    )


@register_sampler("gibbs_with_gradients")
def gibbs_with_gradients() -> Sampler:
    """Gibbs with gradients (Grathwohl et al. 2021) for a differentiable energy of bits or
    spins (:mod:`numpyro_ebm.kernels.gibbs_with_gradients`)."""
    return _density_sampler("gibbs_with_gradients", _gwg, {})


class SwendsenWang(Sampler):
    """Swendsen-Wang's sampler value (:func:`swendsen_wang`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _swendsen_wang_chain(target, **self.options)


def _swendsen_wang_chain(target) -> ChainSampler:
    from numpyro_ebm.models.ising import Ising

    model = getattr(target.fn, "__self__", None)
    if isinstance(model, Ising) and target.fn == model.energy and target.support == model.spins:
        # the couplings read off the model: no derivatives per sweep
        return _chain(_swendsen_wang.as_top_level_api(model.with_beta(1.0 / target.temperature)))
    return _chain(_swendsen_wang.for_log_density(target.logdensity_fn, target.support))


@register_sampler("swendsen_wang")
def swendsen_wang() -> Sampler:
    """Swendsen-Wang cluster updates (Swendsen & Wang 1987) of a ferromagnetic Ising model
    (:mod:`numpyro_ebm.kernels.swendsen_wang`): the cure for critical slowing down. As the move
    of a log density (the discrete move of :func:`~numpyro_ebm.samplers.hmc_gibbs`, the inner
    move of :func:`~numpyro_ebm.samplers.parallel_tempering`) it reads the coupling and the
    fields of an Ising model in a field from the log density at every sweep
    (:func:`~numpyro_ebm.kernels.swendsen_wang.for_log_density`)."""
    return SwendsenWang(
        "swendsen_wang",
        {},
        DISCRETE,
        kernel=lambda logdensity_fn, support: _swendsen_wang.for_log_density(
            logdensity_fn, support
        ),
    )


def bipartite(target) -> tuple:
    """The ``(model, params)`` of an RBM target of :func:`block_gibbs` (a
    ``BoundEnergy(rbm.free_energy, params)`` at temperature 1 on bits), or a ``ValueError``
    saying what block Gibbs needs."""
    fn = target.fn
    model = getattr(getattr(fn, "energy_fn", None), "__self__", None)
    if not isinstance(fn, BoundEnergy) or model is None or target.temperature != 1.0:
        raise ValueError(
            "block_gibbs samples a bipartite model (an RBM): pass "
            "ne.energy.BoundEnergy(rbm.free_energy, params) as the target, at temperature 1, "
            "with support='01'"
        )
    if not getattr(model, "binary_visible", True):
        raise ValueError(
            f"block_gibbs samples configurations of bits, but {model!r} has real-valued "
            "visible units: run numpyro_ebm.kernels.block_gibbs on it directly"
        )
    if target.support != "01":
        raise ValueError(
            "block_gibbs draws an RBM's visible units in {0, 1}, so the target's support must "
            f"be '01', got support={target.support!r}"
        )
    return model, fn.params


class BlockGibbs(Sampler):
    """Block Gibbs' sampler value (:func:`block_gibbs`)."""

    def chain_sampler(self, target) -> ChainSampler:
        return _block_gibbs_chain(target, **self.options)


def _block_gibbs_chain(target) -> ChainSampler:
    model, params = bipartite(target)
    logdensity = BoundLogDensity(model.free_energy, params)
    return _chain(_block_gibbs.as_top_level_api(logdensity, model=model))


@register_sampler("block_gibbs")
def block_gibbs() -> Sampler:
    """Block Gibbs of a bipartite model (an RBM: all hidden units given the visible ones, then
    all visible given the hidden; :mod:`numpyro_ebm.kernels.block_gibbs`)."""
    return BlockGibbs("block_gibbs", {}, DISCRETE)
