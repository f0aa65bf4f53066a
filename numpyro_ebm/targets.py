r"""Targets: what a sampler samples, built once and explicit about what it is.

A :class:`Target` holds the log density of ONE configuration, one initial position per chain
(a leading ``num_chains`` axis on every leaf, as NumPyro's ``init_params``), and what the
callable behind it is (its ``kind``), so that samplers never guess from argument names:

* ``"energy"``: an energy :math:`E(x)`, sampled at :math:`\log p(x) = -E(x)/T`;
* ``"noise_conditional"``: an energy :math:`E(x, \sigma)` or a score :math:`s(x, \sigma)`
  (annealed Langevin); the log density reported is the one at the smallest noise level;
* ``"model"``: a NumPyro model, sampled on its unconstrained space
  (:func:`~numpyro_ebm.logdensity_from_model`) and reported in constrained space;
* ``"discrete"``: an energy of configurations of bits :math:`\{0, 1\}^d` or spins
  :math:`\{-1, +1\}^d` (``support="01"`` or ``"pm1"``), for the discrete kernels (Gibbs,
  checkerboard, Swendsen-Wang, block Gibbs, Gibbs with gradients);
* ``"mixed"``: a NumPyro model with discrete latent sites of bits or spins (``discrete``
  names them and their values) beside continuous ones, for Gibbs-within-HMC
  (:func:`~numpyro_ebm.samplers.hmc_gibbs`);
* ``"doubly_intractable"``: a NumPyro model with an energy site whose normalizer depends on a
  latent site (``intractable`` names them), for the exchange algorithm
  (:func:`~numpyro_ebm.samplers.exchange`).

:func:`energy_target` and :func:`model_target` build them; :func:`numpyro_ebm.sample` builds
one from a bare callable (an energy if ``event_shape`` or ``init_position`` is given, a model
otherwise) and accepts a ready target as well.

The log densities are evaluated at full float32 matmul precision
(:func:`numpyro_ebm._precision.full_precision`, the package's precision policy): on GPUs JAX
defaults to TF32, which loses about three digits in a reported potential, a Metropolis ratio
or a log normalizing constant.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_ebm import _cache, _host_random
from numpyro_ebm._checks import check_finite_array, check_int, check_key, check_positive
from numpyro_ebm._precision import full_precision
from numpyro_ebm._spins import SPINS, check_spins

__all__ = ["KINDS", "SUPPORTS", "Target", "TargetKey", "energy_target", "model_target"]

#: The kinds of target a sampler may accept.
KINDS = ("energy", "noise_conditional", "model", "discrete", "mixed", "doubly_intractable")

#: The kinds of a NumPyro model's target (:func:`model_target`, :func:`model_kind`).
MODEL_KINDS = ("model", "mixed", "doubly_intractable")

#: The supports of an energy's configurations: real vectors, spins {-1, +1} (``"pm1"``) or bits
#: {0, 1} (``"01"``), the encodings of :data:`numpyro_ebm._spins.SPINS`.
SUPPORTS = {"real": None, **SPINS}

#: Chains of a target when ``num_chains`` is not given.
DEFAULT_NUM_CHAINS = 4


class TargetKey(NamedTuple):
    """What a target computes, as the program cache and ``resume=`` compare it.

    ``content``: the digest of the traced energy (at one configuration; with a noise level for
    a noise-conditional one) or of the traced model with its arguments (see
    :mod:`numpyro_ebm._cache`), computed afresh on every ``sample()`` call. ``kind``,
    ``temperature`` and ``support`` as in :class:`Target`.
    """

    kind: str
    content: str
    temperature: float
    support: str


class Target(NamedTuple):
    """What a sampler samples (see the module docstring).

    ``logdensity_fn(x)``: log density of one configuration. ``initial_position``: one
    configuration per chain (leading axis ``num_chains``). ``kind``: one of :data:`KINDS`.
    ``fn``: the user's callable (energy, noise-conditional energy or score, or model).
    ``postprocess_fn(x)``: a model's constrained latent and deterministic sites (``None`` for
    energies). ``var_name``: an energy's variable name in ``posterior``. ``temperature``: the
    energy's :math:`T`. ``model_args``/``model_kwargs``: a model's arguments.
    ``minibatch_logdensity_fn(rng_key, x)``: for a model that subsamples its data, an unbiased
    minibatch estimate of the log density. ``cache_key``: a :class:`TargetKey`, equal for targets
    that compute the same thing (programs compiled for one are reused for the other);
    :func:`numpyro_ebm.sample` computes it again from ``fn`` for a ready target, since the
    energy or model may have changed since.
    ``support``: ``"real"``, ``"pm1"`` or ``"01"`` (see :data:`SUPPORTS`). ``discrete``: for a
    ``"mixed"`` target, ``((site, support), ...)`` of its discrete latent sites, whose values
    the positions hold as they are. ``intractable``: for a ``"doubly_intractable"`` target,
    ``((site, latent), ...)`` of its energy sites whose normalizer depends on a latent.
    """

    logdensity_fn: Callable
    initial_position: Any
    kind: str
    fn: Callable
    postprocess_fn: Callable | None = None
    var_name: str = "x"
    temperature: float = 1.0
    model_args: tuple = ()
    model_kwargs: dict | None = None
    minibatch_logdensity_fn: Callable | None = None
    cache_key: Any = None
    support: str = "real"
    discrete: tuple = ()
    intractable: tuple = ()

    @property
    def num_chains(self) -> int:
        return int(jax.tree.leaves(self.initial_position)[0].shape[0])


class TargetOptions(NamedTuple):
    """How :func:`numpyro_ebm.sample` makes its target from a bare callable (or checks a ready
    :class:`Target` against them): the options of :func:`energy_target` for an energy, and
    ``model_args``/``model_kwargs`` for a NumPyro model, with ``sample``'s defaults.

    ``sample`` gathers its keywords into one value and passes it to :func:`build_target`, so
    that an option is written here and in ``sample``'s signature, not in every function
    between.
    """

    key: jax.Array | None = None
    num_chains: int | None = None
    init_position: Any = None
    event_shape: Sequence[int] | None = None
    init_scale: float = 1.0
    temperature: float = 1.0
    model_args: tuple = ()
    model_kwargs: dict | None = None
    var_name: str = "x"
    support: str = "real"


#: The options that describe a target, refused beside a ready one.
_DESCRIBE_A_TARGET = ("init_position", "event_shape", "model_args", "model_kwargs")

#: The options of :func:`energy_target` among :class:`TargetOptions`.
_ENERGY_OPTIONS = tuple(
    name for name in TargetOptions._fields if name not in ("model_args", "model_kwargs")
)


def _event_shape(event_shape) -> tuple[int, ...]:
    try:
        shape = tuple(operator.index(d) for d in event_shape)
    except TypeError:
        raise TypeError(f"event_shape must be a tuple of ints, got {event_shape!r}") from None
    if any(d <= 0 for d in shape):
        raise ValueError(f"event_shape must hold positive sizes, got {event_shape!r}")
    return shape


def _as_real_array(name: str, value) -> jax.Array:
    """``value`` as a floating array: integers and nested lists are converted (unambiguous),
    strings, objects, booleans and complex numbers refused."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}") from error
    if array.dtype == object or array.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of real numbers, got dtype {array.dtype} ({value!r:.80})"
        )
    if array.dtype.kind in "iu":
        array = array.astype(jnp.result_type(float))
    return jnp.asarray(array)


def _initial_positions(init_position, event_shape, num_chains, key, scale):
    """One rule: ``init_position`` has a leading ``num_chains`` axis on every leaf
    (``num_chains=None``: :data:`DEFAULT_NUM_CHAINS`, where that is unambiguous)."""
    if init_position is None:
        if event_shape is None:
            raise ValueError("an energy target needs event_shape or init_position")
        shape = _event_shape(event_shape)
        chains = DEFAULT_NUM_CHAINS if num_chains is None else num_chains
        start = scale * _host_random.generator(key).standard_normal((chains, *shape))
        return jnp.asarray(start.astype(jax.dtypes.canonicalize_dtype(np.float64)))
    if isinstance(init_position, list | tuple) and not hasattr(init_position, "_fields"):
        init_position = _as_real_array("init_position", init_position)  # nested numbers
    positions = jax.tree.map(lambda x: _as_real_array("init_position", x), init_position)
    leaves = jax.tree.leaves(positions)
    if not leaves:
        raise ValueError(f"init_position holds no array, got {init_position!r}")
    if num_chains is None:
        num_chains = _default_num_chains(leaves, event_shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(positions):
        where = f"init_position{jax.tree_util.keystr(path)}"
        if leaf.ndim == 0 or leaf.shape[0] != num_chains:
            chains = "" if leaf.ndim == 0 else f"pass num_chains={leaf.shape[0]} if these are "
            chains += "" if leaf.ndim == 0 else f"{leaf.shape[0]} chains' starts, or "
            raise ValueError(
                f"{where} has shape {leaf.shape}, but initial positions carry a leading "
                f"num_chains={num_chains} axis (one configuration per chain, as NumPyro's "
                f"init_params): {chains}for one start shared by every chain pass "
                f"jnp.broadcast_to(x0, ({num_chains}, *x0.shape))"
            )
        check_finite_array(where, leaf)
    if event_shape is not None:
        shape = _event_shape(event_shape)
        if len(leaves) != 1 or leaves[0].shape[1:] != shape:
            raise ValueError(
                f"init_position of shape {[leaf.shape for leaf in leaves]} is not "
                f"(num_chains, *event_shape) = {(num_chains, *shape)}"
            )
    if any(leaf.size == 0 for leaf in leaves):
        raise ValueError(f"init_position is empty: shapes {[leaf.shape for leaf in leaves]}")
    return positions


def _default_num_chains(leaves, event_shape) -> int:
    """:data:`DEFAULT_NUM_CHAINS`, unless the leaves of an ``init_position`` are 1-D of that
    length and no ``event_shape`` says what they are: 4 chains of scalars, or one start of
    shape (4,) whose chain axis was forgotten."""
    chains = DEFAULT_NUM_CHAINS
    if event_shape is None and all(leaf.shape == (chains,) for leaf in leaves):
        raise ValueError(
            f"init_position of shape ({chains},) can be read two ways: {chains} chains of "
            f"scalars, or one start of shape ({chains},) without its leading num_chains axis. "
            f"Pass num_chains={chains} (or event_shape=()) for {chains} chains of scalars, or "
            f"jnp.broadcast_to(x0, (num_chains, {chains})) for one start shared by every chain"
        )
    return chains


class _EnergyLogDensity(NamedTuple):
    energy: Callable
    temperature: float

    def __call__(self, x):
        return -self.energy(x) / self.temperature


def energy_target(
    energy: Callable,
    *,
    key: jax.Array | None = None,
    num_chains: int | None = None,
    init_position=None,
    event_shape: Sequence[int] | None = None,
    init_scale: float = 1.0,
    temperature: float = 1.0,
    var_name: str = "x",
    noise_conditional: bool = False,
    support: str = "real",
) -> Target:
    r"""The target :math:`\log p_T(x) = -E(x)/T` of an energy.

    Parameters
    ----------
    energy
        ``E(x) -> scalar`` for one configuration; ``E(x, sigma)`` (or a score ``s(x, sigma)``)
        with ``noise_conditional=True``. It is traced at one configuration's shape (nothing
        compiled) to key its programs by what it computes (:class:`TargetKey`); an energy
        that is not a pure function of ``x`` (Python or NumPy random numbers drawn when it
        is traced) is refused with a ``ValueError``.
    key
        PRNG key of the default initial positions (needed unless ``init_position`` is given).
    num_chains
        Number of chains (default 4; required, or ``event_shape``, with an ``init_position``
        of shape (4,), which could be 4 chains of scalars or one start).
    init_position
        One configuration per chain: every leaf has a leading ``num_chains`` axis (an array of
        shape ``(num_chains, *event_shape)``). Integer arrays and nested lists are converted
        to floats. Default: :math:`\mathcal{N}(0, \text{init\_scale}^2)` draws.
    event_shape
        Shape of one configuration (required without ``init_position``; checked against it).
    init_scale, temperature
        Scale of the default initial positions; temperature :math:`T > 0`.
    var_name
        The variable's name in ``posterior``.
    noise_conditional
        ``energy`` is noise-conditional (annealed Langevin); the target then has no
        ``logdensity_fn`` of its own: the sampler evaluates ``energy(x, sigma)`` at its noise
        levels.
    support
        ``"real"`` (default), or for a discrete energy ``"01"`` (configurations in
        :math:`\{0, 1\}^d`) or ``"pm1"`` (:math:`\{-1, +1\}^d`): a ``"discrete"`` target,
        whose default initial positions are uniform over the configurations and whose given
        ones are checked to lie in the support.
    """
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {sorted(SUPPORTS)}, got {support!r}")
    if support != "real" and noise_conditional:
        raise ValueError("a discrete energy (support='01' or 'pm1') is not noise-conditional")
    if not callable(energy):
        raise TypeError(f"energy must be callable, got {energy!r}")
    if num_chains is not None:
        num_chains = check_int("num_chains", num_chains)
    check_positive("temperature", temperature)
    check_positive("init_scale", init_scale)
    if not isinstance(var_name, str) or not var_name:
        raise TypeError(f"var_name must be a non-empty string, got {var_name!r}")
    if init_position is None:
        if key is None:
            raise ValueError("energy_target needs key= to draw the initial positions")
        key = check_key(key)
    if support != "real" and init_position is None:
        low, high = SUPPORTS[support]
        chains = DEFAULT_NUM_CHAINS if num_chains is None else num_chains
        bits = _host_random.generator(key).integers(0, 2, (chains, *_event_shape(event_shape)))
        init_position = jnp.asarray(np.where(bits, high, low))
    positions = _initial_positions(init_position, event_shape, num_chains, key, init_scale)
    if support != "real":
        _check_support(positions, support)
    if noise_conditional:
        kind, logdensity_fn = "noise_conditional", None
    else:
        kind = "energy" if support == "real" else "discrete"
        logdensity_fn = full_precision(_EnergyLogDensity(energy, float(temperature)))
    cache_key = _energy_key(energy, positions, kind, float(temperature), support)
    if logdensity_fn is not None:
        _check_energy_at(energy, positions, cache_key)
    return Target(
        logdensity_fn=logdensity_fn,
        initial_position=positions,
        kind=kind,
        fn=energy,
        var_name=var_name,
        temperature=float(temperature),
        support=support,
        cache_key=cache_key,
    )


def _check_support(positions, support: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(positions):
        check_spins(f"init_position{jax.tree_util.keystr(path)}", leaf, support)


def _energy_key(energy: Callable, positions, kind: str, temperature: float, support: str):
    """The :class:`TargetKey` of an energy (a noise-conditional energy or score for
    ``kind="noise_conditional"``), traced at one configuration of ``positions`` (and a scalar
    noise level): raises in our words if it cannot take them, or if an energy does not return
    a scalar, and refuses an energy that is not a pure function of ``x``."""
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), positions)
    noise_conditional = kind == "noise_conditional"
    args = (one, jax.ShapeDtypeStruct((), jnp.result_type(float))) if noise_conditional else (one,)
    try:
        content, out = _cache.trace(energy, *args)
    except Exception as error:  # the energy cannot take this shape: say so in our words
        shapes = [leaf.shape for leaf in jax.tree.leaves(one)]
        shape = shapes[0] if len(shapes) == 1 else shapes
        what, calling = "the energy", "calling it"
        if noise_conditional:
            what = "the noise-conditional energy E(x, sigma) or score s(x, sigma)"
            calling = "calling the target as fn(x, sigma)"
        cause = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(
            f"{what} cannot take one configuration of shape {shape} (event_shape or "
            f"init_position): {calling} fails with {type(error).__name__}: {cause}"
        ) from error
    if not noise_conditional and (
        jax.tree.structure(out).num_leaves != 1 or jnp.shape(jax.tree.leaves(out)[0]) != ()
    ):
        raise TypeError(
            f"energy must return a scalar for one configuration, got {out}; batch with "
            "jax.vmap instead of inside the energy"
        )
    _cache.check_pure(energy, args, content, "the energy")
    return TargetKey(kind, content, temperature, support)


def _check_energy_at(energy: Callable, positions, cache_key) -> None:
    """The energy at the chains' starts: finite, in our words. The check is compiled once per
    energy content (``cache_key``) and shapes, so that a repeated ``sample()`` call pays one
    evaluation, not a fresh trace."""
    check = _energy_program(energy, cache_key, positions)
    check_finite_array("energy at init_position (one per chain)", check(positions))


def _energy_program(energy: Callable, cache_key, like) -> Callable:
    """The compiled energies of a batch shaped like ``like``, cached by content and shapes."""
    signature = ("energy_at", cache_key, shapes_of(like))
    return _cache.cached(signature, lambda: _energy_checker(energy))


def energies_like_starts(target: Target, points) -> np.ndarray:
    """The energies of ``points``, a batch shaped like an energy ``target``'s chain starts,
    by the program compiled for the check of the starts (:func:`energy_target`): no new
    program."""
    program = _energy_program(target.fn, target.cache_key, target.initial_position)
    return np.asarray(program(points))


def _energy_checker(energy: Callable) -> Callable:
    from numpyro_ebm.energy import evaluate_energy

    return jax.jit(jax.vmap(lambda x: evaluate_energy(energy, x, name="target")))


def target_key(target: Target) -> TargetKey:
    """The :class:`TargetKey` of ``target``, computed afresh from its ``fn`` (and model
    arguments, temperature and support), as :func:`energy_target` and :func:`model_target`
    compute it."""
    if target.fn is None:
        raise ValueError(
            "this Target has no fn (the energy or model it samples), so what it computes "
            "cannot be keyed: build it with energy_target or model_target"
        )
    if target.kind in MODEL_KINDS:
        return _model_key(target.fn, target.model_args, target.model_kwargs or {})
    return _energy_key(
        target.fn, target.initial_position, target.kind, target.temperature, target.support
    )


def model_kind(density) -> str:
    """The kind of a model's target from its :class:`~numpyro_ebm.model_density.ModelDensity`:
    ``"doubly_intractable"``, ``"mixed"`` (discrete latent sites) or ``"model"``."""
    if density.intractable:
        return "doubly_intractable"
    return "mixed" if density.discrete else "model"


def _model_key(model: Callable, args: tuple, kwargs: dict) -> TargetKey:
    from numpyro_ebm.model_density import model_key

    return TargetKey("model", model_key(model, args, kwargs), 1.0, "real")


def event_shapes(positions) -> str:
    """The shape and dtype of one configuration of ``positions`` (leading chain axis), in
    words: ``(2,) float32``, or ``{'a': (2,) float32, 'b': () float32}`` for a pytree."""
    leaves = jax.tree_util.tree_leaves_with_path(positions)
    words = {jax.tree_util.keystr(path): f"{leaf.shape[1:]} {leaf.dtype}" for path, leaf in leaves}
    if list(words) == [""]:
        return words[""]
    return "{" + ", ".join(f"{path}: {shape}" for path, shape in words.items()) + "}"


def shapes_of(tree) -> tuple:
    """A hashable signature of a pytree's structure, shapes and dtypes."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((leaf.shape, leaf.dtype) for leaf in leaves)


def model_target(
    model: Callable,
    *model_args,
    key: jax.Array,
    num_chains: int = 4,
    subsample: bool = False,
    **model_kwargs,
) -> Target:
    """The target of a NumPyro model: its log joint on the unconstrained space.

    Initial positions follow NumPyro's ``init_to_uniform`` (one per chain, from ``key``).
    ``subsample=True`` admits a model that subsamples its data (a plate with
    ``subsample_size``): the target then carries an unbiased minibatch log density for
    stochastic-gradient samplers; exact samplers refuse it. A model with discrete latent sites
    of bits or spins (``Bernoulli``, :class:`~numpyro_ebm.DiscreteEnergyDistribution`) gives a
    ``"mixed"`` target, whose positions hold those sites' values (drawn uniformly at the
    start) beside the continuous sites' unconstrained ones.
    """
    from numpyro_ebm.model_density import (
        ModelDensity,
        SubsampledModelError,
        density_of,
        minibatch_logdensity_from_model,
    )

    if not callable(model):
        raise TypeError(f"model must be a callable NumPyro model, got {model!r}")
    num_chains = check_int("num_chains", num_chains)
    keys = jax.random.split(check_key(key), num_chains)
    cache_key = _model_key(model, model_args, model_kwargs)
    minibatch_fn = None
    try:
        # one trace for all chains: NumPyro draws a batch of keys' initial positions
        density = density_of(model, model_args, model_kwargs, keys, cache_key.content)
    except SubsampledModelError:
        if not subsample:
            raise
        densities = [
            minibatch_logdensity_from_model(model, *model_args, key=k, **model_kwargs) for k in keys
        ]
        minibatch_fn = densities[0][0]
        fixed = keys[0]
        density = ModelDensity(
            lambda z: minibatch_fn(fixed, z),
            jax.tree.map(lambda *xs: jnp.stack(xs), *[d[1] for d in densities]),
            densities[0][2],
        )
    return Target(
        logdensity_fn=full_precision(density.logdensity_fn),
        initial_position=density.initial_position,
        kind=model_kind(density),
        discrete=density.discrete,
        intractable=density.intractable,
        fn=model,
        postprocess_fn=density.postprocess_fn,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs),
        minibatch_logdensity_fn=None if minibatch_fn is None else full_precision(minibatch_fn),
        cache_key=cache_key,
    )


def build_target(target, sampler, options: TargetOptions) -> Target:
    """The target of a :func:`numpyro_ebm.sample` call: a ready :class:`Target` (keyed afresh,
    its energy may have changed; ``options`` may not describe another), or one built from a
    callable with ``options``: an energy if ``event_shape`` or ``init_position`` is given, a
    NumPyro model otherwise. ``sampler`` (a :class:`~numpyro_ebm.samplers.Sampler`) says
    whether an energy is noise-conditional and whether a model may subsample its data."""
    if isinstance(target, Target):
        given = options._replace(model_args=options.model_args or None)
        extra = sorted(name for name in _DESCRIBE_A_TARGET if getattr(given, name) is not None)
        if extra:
            raise TypeError(
                f"{extra} were given beside a ready Target; they belong to energy_target or "
                "model_target"
            )
        if options.num_chains is not None and options.num_chains != target.num_chains:
            raise ValueError(
                f"num_chains={options.num_chains} but the target holds {target.num_chains} "
                "initial positions"
            )
        return target._replace(cache_key=target_key(target))  # its energy may have changed
    if not callable(target):
        raise TypeError(f"target must be an energy, a NumPyro model or a Target, got {target!r}")
    model_args, model_kwargs = options.model_args, options.model_kwargs
    if options.event_shape is not None or options.init_position is not None:
        if model_args or model_kwargs:
            raise TypeError(
                "model_args/model_kwargs were given with event_shape/init_position: a target "
                "is either an energy (event_shape or init_position) or a NumPyro model"
            )
        noise_conditional = (
            "noise_conditional" in sampler.accepts and "energy" not in sampler.accepts
        )
        energy_options = {name: getattr(options, name) for name in _ENERGY_OPTIONS}
        return energy_target(target, noise_conditional=noise_conditional, **energy_options)
    _check_model_call(target, model_args, model_kwargs)
    return model_target(
        target,
        *model_args,
        key=options.key,
        num_chains=DEFAULT_NUM_CHAINS if options.num_chains is None else options.num_chains,
        subsample=sampler.minibatch,
        **(model_kwargs or {}),
    )


def _check_model_call(target, model_args, model_kwargs) -> None:
    """A callable given without ``event_shape``/``init_position`` is read as a NumPyro model;
    refuse, in words, one that needs arguments it was not given (an energy ``E(x)`` whose
    ``event_shape`` was forgotten), rather than let NumPyro call it and fail."""
    try:
        signature = inspect.signature(target)
        signature.bind(*(model_args or ()), **(model_kwargs or {}))
    except ValueError:  # no signature to read (a builtin): let the call tell
        return
    except TypeError as error:
        raise TypeError(
            f"{getattr(target, '__name__', target)!r} was read as a NumPyro model (neither "
            f"event_shape nor init_position was given), but it cannot be called with "
            f"model_args={tuple(model_args or ())} and model_kwargs={model_kwargs or {}}: "
            f"{error}. For an energy give event_shape= (the shape of one configuration) or "
            "init_position=; for a model, its arguments in model_args/model_kwargs"
        ) from None
