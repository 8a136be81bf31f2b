"""Names of a package imported on first use (PEP 562): one loader for ``theory`` and ``modular``."""

from __future__ import annotations

import importlib
from typing import Callable, Iterable


def lazy_exports(package: str, exports: dict[str, Iterable[str]], namespace: dict,
                 extra: Iterable[str] = ()) -> tuple[list[str], Callable, Callable]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for a package whose public names live in submodules.

    ``exports`` maps each submodule to the names it defines; a name is imported from its
    submodule the first time it is looked up and then kept in the package's ``namespace``.
    ``extra`` are public names the package binds itself.
    """
    home = {name: module for module, names in exports.items() for name in names}
    public = sorted({*home, *extra})

    def __getattr__(name: str):
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(public))

    return public, __getattr__, __dir__
