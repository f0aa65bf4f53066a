"""The one cache of built programs, by content signature, bounded and explicit.

``sample()`` builds, per run signature (sampler, target content, shapes, ...), its warm-up and
chunk programs, the list of statistics its sampler reports, and the compiled check of an
energy at the chains' starts. Built once, these are kept here, most recently used last, at
most :data:`SIZE` of them, so that a repeated call traces and compiles nothing new.
Signatures are made of hashable values and array digests (never ``id()``), so equal content
finds the same entry. ``numpyro_ebm.clear_cache()`` empties it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

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
