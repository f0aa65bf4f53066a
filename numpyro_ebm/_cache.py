"""The one cache of built programs, keyed by what they compute, bounded and explicit.

``sample()`` builds, per run signature (sampler, target content, shapes, ...), its warm-up and
chunk programs, the list of statistics its sampler reports, and the compiled check of an
energy at the chains' starts. Built once, these are kept here, most recently used last, at
most :data:`SIZE` of them, so that a repeated call traces and compiles nothing new.
``numpyro_ebm.clear_cache()`` empties it.

A target's content is what JAX computes from it, never the identity of a Python object:
:func:`trace` traces a function on abstract arguments (``jax.make_jaxpr``: milliseconds,
nothing compiled) and digests the jaxpr's text (its operations, shapes and Python numbers)
with the bytes of its constants (closed-over arrays, a bound object's arrays, a flax module's
parameters). An energy that reads a changed global, a mutated array, a changed attribute of
its object, or a module after ``nnx.update`` is therefore a new entry, and two functions that
compute the same thing share one. What a trace does not show is not keyed: custom derivative
rules and host callbacks enter by their names (their bodies run only when differentiated or
on the host), and a function ``jax.jit`` has traced before is keyed by that trace, as JAX
itself runs it.

One JAX behaviour needs more: without ``jax_enable_x64``, JAX narrows a float64 (or int64)
NumPy array to 32 bits once per array *object*, and serves that copy again for as long as a
program built from it lives. An array changed in place would then be read with its old
values, by our key and by the program built for it. So :func:`trace` also looks for such
arrays where the function can read them (its closure, the globals it names, a bound
object's attributes, a ``functools.partial``'s arguments, and what those hold, a few levels
deep; best effort: what it cannot look into it skips), remembers a digest of each one a
trace read (its narrowed values are a constant of the trace), and when one has changed
since, forgets every entry here and JAX's own caches, so that the copy goes and the new
values are read. An array the function holds but does not read never clears anything.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import inspect
import types
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

SIZE = 64
_ENTRIES: OrderedDict = OrderedDict()
# id -> (weak reference, digest) of the NumPy arrays JAX narrows that a traced function read
_NARROWED: dict[int, tuple[weakref.ref, bytes]] = {}
# how many references deep :func:`_narrowed_arrays` looks from a traced function, the longest
# list, tuple or dict it looks into, and how many objects it looks at in all
_DEPTH = 4
_MAX_ITEMS = 1000
_MAX_OBJECTS = 10_000


def cached(signature: Hashable, build: Callable[[], Any]) -> Any:
    """The entry of ``signature``, built by ``build()`` on a miss (nothing is kept if it
    raises)."""
    if signature in _ENTRIES:
        _ENTRIES.move_to_end(signature)
        return _ENTRIES[signature]
    value = build()
    _ENTRIES[signature] = value
    while len(_ENTRIES) > SIZE:
        _ENTRIES.popitem(last=False)
    return value


def clear() -> None:
    """Forget every entry."""
    _ENTRIES.clear()


def trace(fn: Callable, *args) -> tuple[str, Any]:
    """``(key, out)``: a digest of what ``fn`` computes on ``args`` (pytrees of
    ``jax.ShapeDtypeStruct``) and the shapes of its output.

    The key is the BLAKE2b digest of the jaxpr's text, the structures of the arguments and of
    the output, and the bytes of every constant (see the module docstring). ``fn``'s own
    errors propagate. ``fn`` is traced through a new wrapper each time, so that JAX's own cache
    of traces (keyed by the function object) never answers."""
    narrowed = _narrowed_arrays(fn)
    _forget_if_changed(narrowed)
    closed, out = jax.make_jaxpr(lambda *a: fn(*a), return_shape=True)(*args)
    _remember_read(narrowed, closed.consts)
    digest = hashlib.blake2b(str(closed.jaxpr).encode())
    digest.update(f"{jax.tree.structure(args)}->{jax.tree.structure(out)}".encode())
    for const in closed.consts:
        digest.update(_bytes(const))
    return digest.hexdigest(), out


def check_pure(fn: Callable, args: tuple, key: str, what: str) -> None:
    """Raise ``ValueError`` unless a second trace of ``fn`` on ``args`` gives ``key`` again.

    A function that draws Python or NumPy random numbers (or reads a counter) when traced is
    not a function of its arguments: a compiled program freezes one of its draws, so that
    each process would sample another target. The second trace runs once per key (kept in
    the cache), so a repeated call pays one trace."""

    def second_trace() -> bool:
        if trace(fn, *args)[0] != key:
            raise ValueError(
                f"{what} is not a pure function of its arguments: two traces of it compute "
                "different things (it draws Python or NumPy random numbers, or reads state "
                "that changes, each time it is called), and a compiled program would freeze "
                f"one of them; draw such constants once, outside {what}, or from a "
                "jax.random key"
            )
        return True

    cached(("pure", key), second_trace)


def _narrowed_arrays(root) -> list[np.ndarray]:
    """The NumPy arrays reachable from ``root`` (see the module docstring) whose dtype JAX
    narrows (64-bit ones without ``jax_enable_x64``), breadth first, so that an object is
    looked into from its shortest path."""
    found, seen, queue = [], set(), deque([(root, 0)])
    while queue and len(seen) < _MAX_OBJECTS:
        obj, depth = queue.popleft()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type)):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.dtype != jax.dtypes.canonicalize_dtype(obj.dtype):
                found.append(obj)
            continue
        if depth < _DEPTH:
            try:
                children = _held(obj)
            except Exception:  # an object that will not say what it holds is skipped
                children = []
            queue.extend((child, depth + 1) for child in children)
    return found


def _held(obj) -> list:
    """What a function, partial, method, container or object reads or holds."""
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if inspect.ismethod(obj):
        return [obj.__func__, obj.__self__]
    if inspect.isfunction(obj):
        cells = []
        for cell in obj.__closure__ or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # a cell not assigned yet
                pass
        names = obj.__code__.co_names
        return cells + [obj.__globals__[name] for name in names if name in obj.__globals__]
    if isinstance(obj, (list, tuple, dict)):
        values = obj.values() if isinstance(obj, dict) else obj
        return list(values) if len(obj) <= _MAX_ITEMS else []
    return list(vars(obj).values())


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes()).digest()


def _drop_narrowed(key: int, _reference) -> None:
    _NARROWED.pop(key, None)


def _forget_if_changed(arrays: list[np.ndarray]) -> None:
    """If one of ``arrays`` that a trace read has changed since, forget every entry and JAX's
    caches (which hold JAX's narrowed copy of it)."""
    for array in arrays:
        known = _NARROWED.get(id(array))
        if known is not None and known[0]() is array and known[1] != _digest(array):
            clear()
            jax.clear_caches()
            gc.collect()
            return


def _remember_read(arrays: list[np.ndarray], consts: list) -> None:
    """Remember the digests of the ``arrays`` whose narrowed values are among a trace's
    ``consts``."""
    shapes = {array.shape for array in arrays}
    read = {
        (np.shape(const), hashlib.blake2b(_bytes(const)).digest())
        for const in consts
        if np.shape(const) in shapes
    }
    for array in arrays:
        narrowed = np.asarray(array, jax.dtypes.canonicalize_dtype(array.dtype))
        if (array.shape, _digest(narrowed)) in read:
            key = id(array)
            reference = weakref.ref(array, functools.partial(_drop_narrowed, key))
            _NARROWED[key] = (reference, _digest(array))


def _bytes(const) -> bytes:
    """The bytes of a jaxpr constant (a typed PRNG key by its key data)."""
    if isinstance(const, jax.Array) and jax.dtypes.issubdtype(const.dtype, jax.dtypes.prng_key):
        const = jax.random.key_data(const)
    return np.asarray(const).tobytes()
