"""rareid: resolution-adaptive representations for cross-resolution person re-ID."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["RAReIDModule", "ReIDDataModule", "__version__"]

if TYPE_CHECKING:
    from rareid.data.datamodule import ReIDDataModule
    from rareid.models.module import RAReIDModule


def __getattr__(name: str) -> Any:
    # Lazy so that `import rareid` (and `rareid synth`) stays fast.
    if name == "RAReIDModule":
        from rareid.models.module import RAReIDModule

        return RAReIDModule
    if name == "ReIDDataModule":
        from rareid.data.datamodule import ReIDDataModule

        return ReIDDataModule
    raise AttributeError(f"module 'rareid' has no attribute {name!r}")
