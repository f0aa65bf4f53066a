r"""Sampler values: a sampler's options bound, what it accepts declared.

A :class:`Sampler` is what :func:`numpyro_ebm.sample`, :func:`numpyro_ebm.compare` and the
NumPyro kernels of :mod:`numpyro_ebm.infer` run. Each public factory
(``ne.samplers.mala(step_size=0.05)``) checks its options when called, before anything is
compiled, and returns a value that

* names the target kinds it accepts (:data:`numpyro_ebm.targets.KINDS`) and refuses the
  others in one sentence (:meth:`Sampler.check`);
* is of a subclass of :class:`Sampler` that says how it runs, in a method a reader can open
  (``mala(...)`` returns a ``MALA``, whose :meth:`~Sampler.chain_sampler` builds MALA's chain);
* builds, for a :class:`~numpyro_ebm.targets.Target`, the three pure functions of ONE chain
  that ``sample`` vmaps over chains and scans over draws (a :class:`ChainSampler`,
  :meth:`Sampler.chain_sampler`):

  - ``warmup(rng_key, position, num_warmup) -> (state, parameters)``: initialize the kernel
    at ``position`` and tune it (step size, mass matrix, ladder); ``parameters`` is a pytree of
    the tuned values, one set per chain;
  - ``step(rng_key, state, parameters) -> (state, stats)``: one transition; ``stats`` a dict
    of scalars (:data:`STAT_NAMES`, plus the sampler's own);
  - ``position(state)``: the draw held by the state;

* or, for a sampler that is not one Markov chain per (chain, draw) (NumPyro's NUTS, tempered
  SMC), runs as a whole: :meth:`Sampler.run` ``(rng_key, target, *, num_warmup, num_samples,
  progress) -> (positions, stats, attrs)`` with (chain, draw) leading axes.

Sampler values are immutable and hashable (a compiled program is reused for an equal value);
:meth:`Sampler.replace` returns a copy with other options, checked again. Strings name the
registered factories (:data:`SAMPLERS`) for the command line and :func:`~numpyro_ebm.compare`:
``get_sampler("mala", step_size=0.05) == mala(step_size=0.05)``.

**One meaning of** ``step_size``. For every Langevin-type move (ULA, MALA, SGLD, annealed
Langevin, the replicas of parallel tempering, the negatives of contrastive divergence)
``step_size`` is :math:`\epsilon`, the variance of the injected noise:

.. math::

    x' = x + \frac{\epsilon}{2} \nabla_x \log p(x) + \sqrt{\epsilon}\, z,
    \qquad z \sim \mathcal{N}(0, I).

BlackJAX's MALA and SGLD write the same move as :math:`x + h \nabla \log p + \sqrt{2h}\, z`,
so :math:`h = \epsilon / 2`: the conversion is made once, where our samplers call BlackJAX
(:func:`blackjax_step_size`). For HMC and NUTS ``step_size`` is the leapfrog step
:math:`\delta`, as in Stan and BlackJAX (one leapfrog step with unit mass is a MALA move with
:math:`\epsilon = \delta^2`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.step_size import dual_averaging_adaptation

from numpyro_ebm._checks import all_finite
from numpyro_ebm.model_density import gradient_cannot_move, normalizer_message

__all__ = [
    "SAMPLERS",
    "STAT_NAMES",
    "ChainSampler",
    "Sampler",
    "blackjax_step_size",
    "get_sampler",
    "register_sampler",
    "tuned_across_chains",
]

#: Per-draw statistics every sampler reports (NaN where a sampler has no such notion).
STAT_NAMES = (
    "acceptance_rate",
    "diverging",
    "step_size",
    "potential_energy",
    "num_grad_evals",
    "nonfinite",
)

#: Target kinds of the continuous samplers that need only a log density.
DENSITY_KINDS = frozenset({"energy", "model"})

#: Target kinds whose chains the post-run health checks judge (:mod:`numpyro_ebm._health`).
HEALTH_KINDS = DENSITY_KINDS | {"mixed"}


class ChainSampler(NamedTuple):
    """One chain's warmup, transition and draw (see the module docstring); for a sampler tuned
    across chains (ChEES-HMC, MEADS), ``ensemble_warmup(keys, positions, num_warmup) ->
    (states, parameters)`` warms every chain up at once, every leaf with a leading chain axis
    (:func:`tuned_across_chains`)."""

    warmup: Callable
    step: Callable
    position: Callable
    ensemble_warmup: Callable | None = None


def tuned_across_chains(ensemble_warmup: Callable, step: Callable, position: Callable):
    """A :class:`ChainSampler` whose warm-up tunes across all chains at once (what
    :func:`~numpyro_ebm.sample` runs); its one-chain ``warmup`` is the ensemble of that chain
    alone, for callers that warm chains up one by one."""

    def warmup(rng_key, position, num_warmup):
        one = jax.tree.map(lambda x: jnp.asarray(x)[None], (rng_key, position))
        state, parameters = ensemble_warmup(*one, num_warmup)
        return jax.tree.map(lambda x: x[0], (state, parameters))

    return ChainSampler(warmup, step, position, ensemble_warmup)


def blackjax_step_size(step_size):
    r"""Our :math:`\epsilon` (noise variance) as BlackJAX's MALA/SGLD step :math:`h=\epsilon/2`."""
    return 0.5 * step_size


def _freeze(value) -> Any:
    """A hashable stand-in of an option value (arrays by content)."""
    if isinstance(value, Sampler):
        return value
    if isinstance(value, jax.Array | np.ndarray):
        array = np.asarray(value)
        return ("array", array.dtype.str, array.shape, array.tobytes())
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True, eq=False)
class Sampler:
    """A sampler with its options bound (see the module docstring); a subclass overrides
    exactly one of :meth:`chain_sampler` (a Markov-chain sampler) and :meth:`run` (a sampler
    that runs as a whole).

    ``name``: its registry name. ``options``: the options as given to the factory.
    ``accepts``: the target kinds it samples.
    ``kernel(logdensity_fn, step_size, **options) -> blackjax.SamplingAlgorithm``: the move
    with a fixed step (``None`` where the sampler has none), which replica exchange tempers.
    ``minibatch``: it accepts models that subsample their data. ``refine(sampler) ->
    Sampler``: for samplers whose draws are independent sweeps (annealed Langevin, tempered
    SMC), whose shared bias R-hat cannot see, the same sampler with half the step and twice the
    steps, against which :func:`~numpyro_ebm.compare` checks it (``check_bias=True``).
    """

    name: str
    options: Mapping[str, Any]
    accepts: frozenset
    kernel: Callable | None = None
    minibatch: bool = False
    refine: Callable | None = None
    _identity: Any = field(default=None, repr=False)

    def __post_init__(self):
        overrides = [
            m for m in ("chain_sampler", "run") if getattr(type(self), m) is not getattr(Sampler, m)
        ]
        if len(overrides) != 1:
            raise TypeError(
                f"{type(self).__name__} must override exactly one of Sampler.chain_sampler "
                f"(a Markov-chain sampler) and Sampler.run (a sampler run as a whole), "
                f"overrides {overrides}"
            )
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "accepts", frozenset(self.accepts))
        # the class too: it says how the sampler runs (a class redefined is another sampler)
        object.__setattr__(self, "_identity", (type(self), self.name, _freeze(self.options)))

    def __hash__(self) -> int:
        return hash(self._identity)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sampler) and self._identity == other._identity

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({options})"

    @property
    def is_runner(self) -> bool:
        """Whether it runs as a whole (not one Markov chain per chain and draw)."""
        return type(self).run is not Sampler.run

    def replace(self, **options) -> Sampler:
        """The same sampler with some options changed (checked again by its factory)."""
        return get_sampler(self.name, **{**self.options, **options})

    def check(self, target) -> None:
        """Refuse a target of a kind this sampler does not sample, in one sentence."""
        if target.kind not in self.accepts:
            accepted = " or ".join(sorted(self.accepts))
            article = "an" if target.kind[0] in "aeiou" else "a"
            raise ValueError(
                f"sampler {self.name!r} samples {accepted} targets, not {article} "
                f"{target.kind} target{_hint(self, target)}"
            )
        if target.minibatch_logdensity_fn is not None and not self.minibatch:
            raise ValueError(
                f"the model subsamples its data (a plate with subsample_size), which only a "
                f"stochastic-gradient sampler such as 'sgld' supports; {self.name!r} needs the "
                "full data"
            )

    def chain_sampler(self, target) -> ChainSampler:
        """The :class:`ChainSampler` of this sampler on ``target`` (a Markov-chain sampler's
        subclass overrides it)."""
        raise ValueError(f"sampler {self.name!r} runs as a whole, not chain by chain")

    def run(
        self, rng_key, target, *, num_warmup: int, num_samples: int, progress: bool
    ) -> tuple[Any, dict, dict]:
        """``(positions, stats, attrs)`` of a whole run, with (chain, draw) leading axes (a
        whole-run sampler's subclass overrides it)."""
        raise ValueError(f"sampler {self.name!r} draws chain by chain, not as a whole")


def _hint(sampler: Sampler, target) -> str:
    if target.kind == "doubly_intractable":
        return f" ({normalizer_message(*target.intractable[0])})"
    if target.kind == "mixed":
        return f" ({gradient_cannot_move(target.discrete)})"
    if "mixed" in sampler.accepts and target.kind == "model":
        return " (the model has no discrete latent site: use nuts, hmc or mala)"
    if target.kind == "discrete":
        return (
            " (an energy of bits or spins: use gibbs, checkerboard, gibbs_with_gradients, "
            "swendsen_wang or block_gibbs)"
        )
    if "discrete" in sampler.accepts:
        return " (for an energy of bits or spins give support='01' or 'pm1')"
    if target.kind == "noise_conditional":
        return " (the target is a noise-conditional energy or score: use annealed_langevin)"
    if "noise_conditional" in sampler.accepts:
        return (
            " (it needs a noise-conditional energy E(x, sigma) or score s(x, sigma) and a "
            "noise schedule sigmas)"
        )
    return ""


#: The registry: name -> factory returning a :class:`Sampler`.
SAMPLERS: dict[str, Callable[..., Sampler]] = {}


def register_sampler(name: str) -> Callable:
    """Register a factory ``(**options) -> Sampler`` under ``name`` (a string alias for the
    command line and :func:`~numpyro_ebm.compare`)."""

    def decorate(factory: Callable[..., Sampler]) -> Callable[..., Sampler]:
        @functools.wraps(factory)
        def checked(*args, **options) -> Sampler:
            # options by name only, and an unknown one refused with the list of the known,
            # whether the factory is called directly or through its name
            if args:
                raise TypeError(f"{name}() takes its options by name, got {args!r}")
            accepted = inspect.signature(checked).parameters
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                raise TypeError(
                    f"sampler {name!r} takes no option(s) {unknown}; its options are "
                    f"{sorted(accepted)}"
                )
            return factory(**options)

        SAMPLERS[name] = checked
        return checked

    return decorate


def get_sampler(sampler, **options) -> Sampler:
    """A :class:`Sampler` from a value or a registered name with options.

    Unknown names list the known ones; unknown options list the sampler's options.
    """
    if isinstance(sampler, Sampler):
        if options:
            raise TypeError(
                f"options {sorted(options)} were given beside the sampler value {sampler!r}; "
                f"pass them to its factory (e.g. sampler.replace(**options))"
            )
        return sampler
    if not isinstance(sampler, str):
        raise TypeError(
            f"sampler must be a numpyro_ebm.samplers.Sampler or a registered name, got {sampler!r}"
        )
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; known samplers: {sorted(SAMPLERS)}")
    return SAMPLERS[sampler](**options)


def stats(
    *, acceptance_rate=jnp.nan, diverging=False, step_size=jnp.nan, logdensity, grads, finite
) -> dict[str, jax.Array]:
    """The :data:`STAT_NAMES` of one transition; ``finite``: position and density finite."""
    return {
        "acceptance_rate": jnp.asarray(acceptance_rate, jnp.float32),
        "diverging": jnp.asarray(diverging, bool),
        "step_size": jnp.asarray(step_size, jnp.float32),
        "potential_energy": -jnp.asarray(logdensity, jnp.float32),
        "num_grad_evals": jnp.asarray(grads, jnp.int32),
        "nonfinite": ~finite,
    }


def finite(position, logdensity) -> jax.Array:
    """Whether a position and its log density are finite (a traced boolean)."""
    return all_finite(position) & jnp.isfinite(logdensity)


def untuned_warmup(move: Callable, state, rng_key, num_warmup: int):
    """A warm-up that only runs the chain: ``num_warmup`` moves ``move(key, state) -> (state,
    ...)`` from ``state``, one key each of ``split(rng_key, num_warmup)``, tuning nothing (the
    samplers whose moves have no step to tune, or a fixed one). Returns the final state."""
    state, _ = jax.lax.scan(
        lambda state, key: (move(key, state)[0], None),
        state,
        jax.random.split(rng_key, num_warmup),
    )
    return state


def dual_averaging_warmup(
    make_step: Callable, state, rng_key, num_warmup: int, initial_step_size, target: float
):
    """Tune a step size by dual averaging of the acceptance rate (Hoffman & Gelman 2014,
    Algorithm 5; BlackJAX's ``dual_averaging_adaptation``) over ``num_warmup`` steps.
    ``make_step(step_size)(key, state) -> (state, acceptance_rate)``."""
    da_init, da_update, da_final = dual_averaging_adaptation(target)

    def body(carry, key):
        state, da_state = carry
        state, acceptance = make_step(jnp.exp(da_state.log_step_size))(key, state)
        return (state, da_update(da_state, jnp.nan_to_num(acceptance))), None

    (state, da_state), _ = jax.lax.scan(
        body, (state, da_init(initial_step_size)), jax.random.split(rng_key, num_warmup)
    )
    step_size = da_final(da_state) if num_warmup > 0 else jnp.asarray(initial_step_size)
    return state, step_size
