"""The ``numpyro-ebm`` commands: ``demo``, ``train`` (an MLP energy, or an RBM with
``--model rbm``), ``sample``, ``compare`` and ``diagnose``, each a function of the parsed
arguments that returns the exit status; :func:`command` names them.

The library is imported inside the functions, when a command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from numpyro_ebm._cli_inputs import (
    UserError,
    check_fresh_run_folder,
    check_memory,
    check_output,
    rbm_training_memory,
    read_data,
    training_memory,
)


def command(name: str) -> Callable[[argparse.Namespace], int]:
    """The function of the command ``name``."""
    return {
        "demo": demo_command,
        "train": train_command,
        "sample": sample_command,
        "compare": compare_command,
        "diagnose": diagnose_command,
    }[name]


def _key(seed: int):
    import jax

    return jax.random.key(seed)


def demo_command(args: argparse.Namespace) -> int:
    """``demo``: :func:`numpyro_ebm.demo.run_demo` into a fresh ``--out``."""
    out = check_output(args.out, folder=True)
    check_fresh_run_folder(out, resume=None)
    from numpyro_ebm import demo, workflow

    settings = workflow.TrainSettings(num_steps=args.steps)
    demo.run_demo(
        out,
        key=_key(args.seed),
        dataset=args.dataset,
        settings=settings,
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        num_sweeps=args.sweeps,
        progress=not args.no_progress,
    )
    return 0


def train_command(args: argparse.Namespace) -> int:
    """``train``: an MLP energy by :func:`numpyro_ebm.workflow.train` (``--model rbm``: an
    RBM), saved with its checkpoints and loss curve in ``--out``."""
    # sizes beyond the memory available are refused before anything is read or built
    check_memory(
        training_memory(args.hidden, args.batch_size),
        f"--hidden {' '.join(map(str, args.hidden))} with --batch-size "
        f"{args.batch_size} (weights, gradients and a minibatch's activations)",
    )
    out = check_output(args.out, folder=True)
    if args.model == "rbm":
        return _train_rbm(args, out)
    check_fresh_run_folder(out, resume=args.resume)
    data = read_data(args.data)
    from numpyro_ebm import plots, workflow

    training_points = len(data) - round(args.held_out * len(data))
    settings = workflow.TrainSettings(
        objective=args.objective,
        num_steps=args.steps,
        batch_size=max(1, min(args.batch_size, training_points)),
        learning_rate=args.lr,
        hidden=tuple(args.hidden),
        num_sigmas=args.num_sigmas,
        sigma_max=args.sigma_max,
        sigma_min=args.sigma_min,
        sigma=args.sigma,
        checkpoint_every=args.checkpoint_every,
        likelihood_steps=args.likelihood_steps,
        likelihood_chains=args.likelihood_chains,
        max_temperature=args.max_temperature,
        held_out=args.held_out,
    )
    trained, result = workflow.train(
        data,
        settings,
        key=_key(args.seed),
        out_dir=out,
        resume=args.resume,
        progress=not args.no_progress,
    )
    plots.training_curve(result.history, out / "training_loss.png")
    print(
        f"trained {trained.spec['network']} with {args.objective} on {len(data)} points: "
        f"final loss {trained.metadata['final_loss']:.4g}; saved to {out}"
    )
    return 0


def _train_rbm(args: argparse.Namespace, out: Path) -> int:
    """``train --model rbm``: a Bernoulli RBM by CD-k or PCD-k with block Gibbs, checkpointed
    in ``<out>/checkpoints`` every ``--checkpoint-every`` steps (``--resume`` continues the
    latest bit for bit), its exact log-likelihood (smaller layer <= 20 units) or an AIS
    estimate, saved as JSON + .npz."""
    if args.objective not in ("cd", "pcd"):
        raise UserError(f"--model rbm trains with --objective cd or pcd, got {args.objective!r}")
    if len(args.hidden) != 1:
        sizes = " ".join(map(str, args.hidden))
        raise UserError(f"--model rbm takes one --hidden size, got --hidden {sizes}")
    check_fresh_run_folder(out, resume=args.resume)
    if not args.resume and out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty: give a new folder for the RBM")
    data = read_data(args.data, binary=True)
    from numpyro_ebm import storage, workflow
    from numpyro_ebm.evidence.rbm_ais import rbm_ais
    from numpyro_ebm.models import rbm
    from numpyro_ebm.training import rbm as rbm_training

    data = rbm.check_binary("--data", data)
    batch_size = min(args.batch_size, len(data))
    check_memory(
        rbm_training_memory(data.shape[1], args.hidden[0], batch_size),
        f"an RBM with --hidden {args.hidden[0]} on {data.shape[1]} visible units in batches of "
        f"{batch_size}",
    )
    key = _key(args.seed)
    fitted = rbm_training.train_rbm(
        data,
        args.hidden[0],
        key=key,
        method=args.objective,
        k=args.k,
        learning_rate=args.lr,
        num_steps=args.steps,
        batch_size=batch_size,
        steps_per_chunk=workflow.chunk_length(args.checkpoint_every),
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        progress=not args.no_progress,
    )
    model, params = fitted.model, fitted.params
    storage.save_rbm(out, model, params)
    if min(model.n_visible, model.n_hidden) <= 20:
        value, how = float(model.log_likelihood(params, data)), "exact"
    else:
        import jax

        ais = rbm_ais(jax.random.fold_in(key, 1), model, params, data=data)
        free = float(-jax.vmap(lambda v: model.free_energy(params, v))(data).mean())
        value = free - float(ais.log_normalizer)
        how = f"AIS, log Z +- {float(ais.standard_error):.3g}"
    print(
        f"trained a Bernoulli RBM ({model.n_visible} visible, {model.n_hidden} hidden) with "
        f"{args.objective}-{args.k} on {len(data)} rows: log-likelihood {value:.4f} nats per "
        f"row ({how}); saved to {out}"
    )
    return 0


def _sample_rbm(args: argparse.Namespace, out: Path) -> int:
    """``sample`` of an RBM saved by ``train --model rbm`` (or ``save_rbm``): its visible
    units, by block Gibbs (MALA for a Gaussian RBM's real values) unless ``--sampler`` names
    another sampler of their kind."""
    import numpyro_ebm as ne
    from numpyro_ebm import storage

    model, params = storage.load_rbm(args.checkpoint)
    sampler = args.sampler or ("block_gibbs" if model.binary_visible else "mala")
    data = ne.sample(
        ne.BoundEnergy(model.free_energy, params),
        sampler,
        key=_key(args.seed),
        support="01" if model.binary_visible else "real",
        event_shape=(model.n_visible,),
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        progress=not args.no_progress,
        **_step_size(args, sampler),
    )
    return _write_draws(data, out)


def _write_draws(data, out: Path) -> int:
    """Write ``sample``'s draws as netCDF to ``out`` and print their mixing report."""
    import numpyro_ebm as ne
    from numpyro_ebm import _arviz

    out.parent.mkdir(parents=True, exist_ok=True)
    _arviz.to_netcdf(data, out)
    ne.mixing_report(data)
    print(f"wrote {out}")
    return 0


def _step_size(args: argparse.Namespace, sampler: str) -> dict:
    """``--step-size`` as the sampler's ``step_size`` option (``initial_step_size`` for one that
    tunes it, as HMC and NUTS); refused, naming the sampler, for one that has neither
    (unknown names are left to the sampler registry's own error)."""
    if args.step_size is None:
        return {}
    import inspect

    from numpyro_ebm.samplers import SAMPLERS

    if sampler not in SAMPLERS:
        return {"step_size": args.step_size}
    options = inspect.signature(SAMPLERS[sampler]).parameters
    for name in ("step_size", "initial_step_size"):
        if name in options:
            return {name: args.step_size}
    raise UserError(
        f"--step-size does not apply to the sampler {sampler!r}: it has no step size option "
        f"(its options: {', '.join(options) or 'none'})"
    )


def _sample_args(args: argparse.Namespace, sampler: str, trained) -> dict:
    from numpyro_ebm import workflow

    options = workflow.sampler_options(sampler, trained, args.steps_per_level)
    return {**options, **_step_size(args, sampler)}


def _load_network(folder: str):
    """The network saved by ``train`` in ``folder``; a saved RBM, or a noise ladder that is
    missing or not positive numbers, refused in one line naming the folder or file."""
    from numpyro_ebm import workflow

    if (Path(folder) / "rbm.json").is_file():
        raise UserError(
            f"{folder} holds a saved RBM (rbm.json), not a network; compare takes a network "
            f"saved by `train --model mlp`; sample the RBM with `sample --checkpoint {folder}`"
        )
    trained = workflow.load(folder)
    record = Path(folder) / "network" / "network.json"
    record = record if record.is_file() else Path(folder) / "network.json"
    sigmas = trained.metadata.get("sigmas")
    if sigmas is None:
        if trained.spec.get("network") == "NoiseConditionalMLP":
            raise UserError(
                f"{record} describes a noise-conditional network but gives no noise ladder "
                "(metadata.sigmas)"
            )
        return trained
    if not _positive_numbers(sigmas):
        raise UserError(
            f"{record}: metadata.sigmas (the noise ladder) must be a list of positive numbers, "
            f"got {sigmas!r:.80}"
        )
    return trained


def _positive_numbers(values) -> bool:
    """Whether ``values`` is a non-empty list of finite positive numbers."""
    import numpy as np

    if not isinstance(values, list) or not values:
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return False
    array = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.isfinite(array) & (array > 0)))


def sample_command(args: argparse.Namespace) -> int:
    """``sample``: draws of a saved network (or RBM) as netCDF, and their mixing report."""
    out = check_output(args.out, folder=False)
    if (Path(args.checkpoint) / "rbm.json").is_file():
        return _sample_rbm(args, out)
    import numpyro_ebm as ne
    from numpyro_ebm import workflow

    trained = _load_network(args.checkpoint)
    sampler = args.sampler or "annealed_langevin"
    data = ne.sample(
        workflow.energy_of(trained),
        sampler,
        key=_key(args.seed),
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        event_shape=tuple(trained.spec["event_shape"]),
        progress=not args.no_progress,
        **_sample_args(args, sampler, trained),
    )
    return _write_draws(data, out)


def compare_command(args: argparse.Namespace) -> int:
    """``compare``: :func:`numpyro_ebm.compare` on a saved network; its table, files and
    figures."""
    out = check_output(args.out, folder=True)
    import numpyro_ebm as ne
    from numpyro_ebm import workflow

    trained = _load_network(args.checkpoint)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    reference = None
    if args.reference is not None:
        reference = read_data(args.reference)
        workflow.check_event_shape(reference, trained)
        reference = {"x": reference}
    options = {s: _sample_args(args, s, trained) for s in samplers}
    result = ne.compare(
        workflow.energy_of(trained),
        samplers,
        key=_key(args.seed),
        reference=reference,
        num_chains=args.chains,
        num_samples=args.samples,
        num_warmup=args.warmup,
        sampler_options={s: o for s, o in options.items() if o},
        event_shape=tuple(trained.spec["event_shape"]),
        progress=not args.no_progress,
    )
    print(result)
    paths = result.save(out) + result.plot(out)
    print(f"wrote {len(paths)} files to {out}")
    return 0


def diagnose_command(args: argparse.Namespace) -> int:
    """``diagnose``: the mixing report of a netCDF file (status 1 with ``--strict`` and
    warnings)."""
    import numpyro_ebm as ne
    from numpyro_ebm import _arviz

    try:
        data = _arviz.from_netcdf(args.file)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {args.file} as sampler output: {error}") from None
    groups = _arviz.group_names(data)
    if "posterior" not in groups:
        raise UserError(
            f"{args.file} holds no posterior group (groups: {groups}); give a file written by "
            "`numpyro-ebm sample` or `compare`"
        )
    report = ne.mixing_report(data)
    return 1 if args.strict and not report.ok else 0
