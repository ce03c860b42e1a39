"""faiss, the optional ``deploy`` extra: whether it is here, and the one error when it is
needed and missing. No torch, so that the torch-free search imports it."""

from __future__ import annotations

from typing import Any


def faiss_available() -> bool:
    """Whether faiss imports here (it is the optional ``deploy`` extra)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require_faiss(needed_for: str = "approximate search", otherwise: str = "") -> Any:
    """The faiss module, or an ImportError saying what needs it and how to install it."""
    try:
        import faiss
    except ImportError:
        raise ImportError(
            f"{needed_for} needs faiss-cpu: pip install 'rareid[deploy]'{otherwise}"
        ) from None
    return faiss
