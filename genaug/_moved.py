"""Old package names kept for one release: ``genaug.synthetic`` and ``genaug.balance`` split
into ``genaug.cache`` (what generation writes) and ``genaug.sampling`` (what training draws)."""

from __future__ import annotations

import warnings
from importlib import import_module


def moved_to(old: str, *new: str):
    """A module ``__getattr__`` for package ``old`` whose names now live in ``new``: each name
    is looked up in the new packages' ``__all__`` and returned with a ``DeprecationWarning``."""

    def __getattr__(name: str):
        for package in new:
            module = import_module(package)
            if name in module.__all__:
                warnings.warn(f"{old}.{name} moved to {package}.{name}; {old} goes away in "
                              "genaug 0.3", DeprecationWarning, stacklevel=2)
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
