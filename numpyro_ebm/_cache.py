"""The one cache of built programs, by content signature, bounded and explicit.

``sample()`` builds, per run signature (sampler, target content, shapes, ...), its warm-up and
chunk programs, the list of statistics its sampler reports, and the compiled check of an
energy at the chains' starts. Built once, these are kept here, most recently used last, at
most :data:`SIZE` of them, so that a repeated call traces and compiles nothing new.
Signatures are made of hashable values and array digests, so equal content finds the same
entry; an unhashable object stands for itself (held by its signature, so that its ``id`` is
never reused while the entry lives). ``numpyro_ebm.clear_cache()`` empties it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

SIZE = 64
_ENTRIES: OrderedDict = OrderedDict()


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


def content_key(*trees) -> Hashable:
    """A hashable signature of pytrees (functions, model arguments, energies with their
    parameters): the structure, and each leaf by value if hashable, an array by dtype, shape
    and a digest of its bytes, any other object by identity (held, so that its identity is
    not reused while the signature lives)."""
    leaves, treedef = jax.tree.flatten(trees)
    return treedef, tuple(_digest(leaf) for leaf in leaves)


def _digest(value) -> Any:
    if isinstance(value, jax.Array | np.ndarray):
        array = np.asarray(value)
        return ("array", array.dtype.str, array.shape, hashlib.blake2b(array.tobytes()).hexdigest())
    try:
        hash(value)
    except TypeError:
        return _Identity(value)  # unhashable and not an array: equal only to itself
    return value


class _Identity:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Identity) and other.value is self.value
