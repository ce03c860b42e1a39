"""Old module paths that keep working: a moved module's names, reached through its old name
with a :class:`DeprecationWarning` saying where it lives now."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved(old: str, *new: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Warn that ``old`` moved to ``new`` and return the module ``__getattr__`` and ``__dir__``
    that look names up in the ``new`` modules, in order."""
    warnings.warn(
        f"{old} moved to {' and '.join(new)}; import from there",
        DeprecationWarning,
        stacklevel=3,
    )
    modules = [importlib.import_module(name) for name in new]

    def __getattr__(name: str) -> Any:
        for module in modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({name for module in modules for name in vars(module)})

    return __getattr__, __dir__
