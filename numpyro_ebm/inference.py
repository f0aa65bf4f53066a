"""``sample()``: a target and a sampler name in, ``arviz.InferenceData`` out."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from numpyro_ebm._checks import check_finite_array, check_int, check_positive
from numpyro_ebm.model import (
    ModelDensity,
    logdensity_from_model,
    minibatch_logdensity_from_model,
)
from numpyro_ebm.samplers import Target, get_sampler

__all__ = ["sample"]


def _energy_target(energy, temperature, init_position, event_shape, num_chains, key, scale):
    """The energy's log density and one initial position per chain."""
    if init_position is None:
        shape = tuple(int(d) for d in event_shape)
        init_position = scale * jax.random.normal(key, (num_chains, *shape))
    else:
        init_position = jax.tree.map(jnp.asarray, init_position)
        leaves = jax.tree.leaves(init_position)
        if event_shape is not None:
            shape = (tuple(int(d) for d in event_shape),)
            if leaves[0].shape[-len(shape[0]) :] != shape[0]:
                raise ValueError(
                    f"init_position of shape {leaves[0].shape} does not end with "
                    f"event_shape={shape[0]}"
                )
        if event_shape is None or leaves[0].shape == tuple(event_shape):
            init_position = jax.tree.map(
                lambda x: jnp.broadcast_to(x, (num_chains, *x.shape)), init_position
            )
        for leaf in jax.tree.leaves(init_position):
            if leaf.shape[0] != num_chains:
                raise ValueError(
                    f"init_position has {leaf.shape[0]} chains along its first "
                    f"axis but num_chains={num_chains}"
                )
        check_finite_array(
            "init_position",
            np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(init_position)]),
        )

    def logdensity_fn(x):
        return -energy(x) / temperature

    return logdensity_fn, init_position


def _model_target(model, args, kwargs, num_chains, key, sampler):
    """A model's Target, postprocess function and one initial position per chain."""
    keys = jax.random.split(key, num_chains)
    try:
        densities = [logdensity_from_model(model, *args, key=k, **kwargs) for k in keys]
        minibatch_fn = None
    except ValueError as error:
        if "subsample" not in str(error):
            raise
        if sampler != "sgld":
            raise ValueError(
                f"the model subsamples its data (a plate with subsample_size), which only the "
                f"stochastic-gradient sampler 'sgld' supports; {sampler!r} needs the full data"
            ) from error
        densities = [minibatch_logdensity_from_model(model, *args, key=k, **kwargs) for k in keys]
        minibatch_fn = densities[0][0]
        fixed = keys[0]
        densities = [ModelDensity(lambda z: minibatch_fn(fixed, z), *d[1:]) for d in densities]
    positions = jax.tree.map(lambda *xs: jnp.stack(xs), *[d.initial_position for d in densities])
    target = Target(densities[0].logdensity_fn, model, "model", tuple(args), kwargs, minibatch_fn)
    return target, densities[0].postprocess_fn, positions


def _run_chains(chain_sampler, key, positions, num_warmup, num_samples, thinning, progress):
    """Warm up, then draw, all chains vmapped; draws are taken in jitted scan chunks so that a
    host-side tqdm bar can follow (one compiled chunk, reused), without host callbacks."""
    num_chains = jax.tree.leaves(positions)[0].shape[0]
    warmup_key, sample_key = jax.random.split(key)
    warmup = jax.jit(jax.vmap(chain_sampler.warmup, in_axes=(0, 0, None)), static_argnums=2)
    state, parameters = warmup(jax.random.split(warmup_key, num_chains), positions, num_warmup)

    def one_draw(carry, key):
        (state,) = carry
        keys = jax.random.split(key, thinning)

        def transition(state, key):
            chain_keys = jax.random.split(key, num_chains)
            return jax.vmap(chain_sampler.step)(chain_keys, state, parameters)

        state, stats = jax.lax.scan(transition, state, keys)
        stats = jax.tree.map(lambda s: s[-1], stats) | {
            "num_grad_evals": stats["num_grad_evals"].sum(0),
            "nonfinite": stats["nonfinite"].any(0),
            "diverging": stats["diverging"].any(0),
        }
        return (state,), (jax.vmap(chain_sampler.position)(state), stats)

    chunk = num_samples if not progress else max(1, min(num_samples, 100))
    run_chunk = jax.jit(lambda state, keys: jax.lax.scan(one_draw, (state,), keys))
    draw_keys = jax.random.split(sample_key, num_samples)
    outputs, carry = [], (state,)
    with tqdm(total=num_samples, disable=not progress, desc="sampling") as bar:
        for start in range(0, num_samples, chunk):
            keys = draw_keys[start : start + chunk]
            if keys.shape[0] < chunk:  # the last, shorter chunk: pad, then drop the extra
                keys = jnp.concatenate([keys, draw_keys[: chunk - keys.shape[0]]])
            carry, out = run_chunk(carry[0], keys)
            taken = min(chunk, num_samples - start)
            outputs.append(jax.tree.map(lambda x, n=taken: x[:n], out))
            bar.update(taken)
    positions, stats = jax.tree.map(lambda *xs: jnp.concatenate(xs), *outputs)
    # scan stacks draws first: move to (chain, draw, ...)
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (positions, stats))


def _to_inference_data(posterior: dict, stats: dict, attrs: dict, sampler: str):
    posterior = {name: np.asarray(value) for name, value in posterior.items()}
    stats = {name: np.asarray(value) for name, value in stats.items()}
    with warnings.catch_warnings():
        # thousands of short chains are the norm for EBM samplers, not a transposed array
        warnings.filterwarnings("ignore", message="More chains .* than draws", category=UserWarning)
        idata = az.from_dict(posterior=posterior, sample_stats=stats, attrs={"sampler": sampler})
    idata.sample_stats.attrs.update(attrs)
    return idata


def sample(
    target: Callable,
    sampler: str = "nuts",
    *,
    key: jax.Array,
    num_chains: int = 4,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    thinning: int = 1,
    init_position=None,
    event_shape: Sequence[int] | None = None,
    init_scale: float = 1.0,
    temperature: float = 1.0,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    var_name: str = "x",
    progress: bool = False,
    **sampler_options,
) -> az.InferenceData:
    r"""Draw from an energy or a NumPyro model with a named sampler.

    Parameters
    ----------
    target
        An **energy** ``E(x) -> scalar`` (give ``event_shape`` or ``init_position``), a
        noise-conditional energy or score for ``"annealed_langevin"``, or else a **NumPyro
        model** (with ``model_args``/``model_kwargs``), sampled on NumPyro's unconstrained space
        through :func:`~numpyro_ebm.logdensity_from_model` and reported in constrained space.
    sampler
        A registered name: ``"nuts"``, ``"hmc"``, ``"mala"``, ``"sgld"``,
        ``"annealed_langevin"``, ``"parallel_tempering"``, ``"tempered_smc"``,
        ``"numpyro_nuts"`` (see :mod:`numpyro_ebm.samplers`).
    key
        PRNG key; the result is a deterministic function of it.
    num_chains, num_samples, num_warmup, thinning
        Chains run in parallel (``vmap``) inside one compiled program; each keeps
        ``num_samples`` draws, one every ``thinning`` transitions, after ``num_warmup`` tuning
        transitions. For ``"tempered_smc"`` a chain is an independent SMC run and
        ``num_samples`` its number of particles.
    init_position
        Energy targets: one configuration (shared by all chains) or one per chain (leading
        axis ``num_chains``). Default: :math:`\mathcal{N}(0, \text{init\_scale}^2)` draws.
    event_shape
        Shape of one configuration of an energy target.
    temperature
        Sample :math:`p_T \propto e^{-E/T}` (energy targets).
    var_name
        Name of an energy target's variable in ``posterior``.
    progress
        Show a tqdm progress bar.
    **sampler_options
        Passed to the sampler (step sizes, noise schedules, ladders; see each sampler).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` with dims (chain, draw, ...), site names for models; ``sample_stats`` with
        ``acceptance_rate``, ``diverging``, ``step_size``, ``potential_energy``,
        ``num_grad_evals`` (per draw, thinning included) and ``nonfinite`` (a chain whose
        position or density stopped being finite; also reported by a ``RuntimeWarning``).
    """
    factory, is_runner = get_sampler(sampler)
    num_chains = check_int("num_chains", num_chains)
    num_samples = check_int("num_samples", num_samples)
    num_warmup = check_int("num_warmup", num_warmup, minimum=0)
    thinning = check_int("thinning", thinning)
    check_positive("temperature", temperature)
    check_positive("init_scale", init_scale)
    if not callable(target):
        raise TypeError(f"target must be an energy or a NumPyro model, got {target!r}")
    init_key, run_key = jax.random.split(key)

    if event_shape is not None or init_position is not None:
        logdensity_fn, positions = _energy_target(
            target, temperature, init_position, event_shape, num_chains, init_key, init_scale
        )
        if sampler != "annealed_langevin":
            from numpyro_ebm.energy import evaluate_energy

            energies = jax.vmap(lambda x: evaluate_energy(target, x, name="target"))(positions)
            check_finite_array("energy at init_position (one per chain)", energies)
        spec, postprocess = Target(logdensity_fn, target, "energy"), None
    else:
        spec, postprocess, positions = _model_target(
            target, model_args, model_kwargs or {}, num_chains, init_key, sampler
        )

    if is_runner:
        draws, stats, attrs = factory(
            run_key,
            spec,
            positions,
            num_warmup=num_warmup,
            num_samples=num_samples,
            progress=progress,
            **sampler_options,
        )
    else:
        accepted = inspect.signature(factory).parameters
        unknown = set(sampler_options) - set(accepted) if "options" not in accepted else set()
        if unknown:
            raise TypeError(f"sampler {sampler!r} takes no option(s) {sorted(unknown)}")
        chain_sampler = factory(spec, **sampler_options)
        draws, stats = _run_chains(
            chain_sampler, run_key, positions, num_warmup, num_samples, thinning, progress
        )
        attrs = {}

    if postprocess is None:
        posterior = {var_name: draws}
    else:
        posterior = jax.jit(jax.vmap(jax.vmap(postprocess)))(draws)
    bad = np.asarray(stats["nonfinite"]).any(axis=1)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {num_chains} chain(s) reached a non-finite position or "
            f"density (chains {np.flatnonzero(bad).tolist()}); see sample_stats.nonfinite and "
            "do not use their draws",
            RuntimeWarning,
            stacklevel=2,
        )
    return _to_inference_data(posterior, stats, attrs, sampler)
