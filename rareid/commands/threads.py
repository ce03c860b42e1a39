"""``--threads`` of the helper commands: how many CPU threads torch (and faiss) may use.

torch starts one thread per core. On a machine shared with other jobs, a search of a handful
of crops then spends its time waiting for busy cores; one thread per batch of images, never
more than the cores this process may run on, keeps small jobs quick and large ones parallel.
"""

from __future__ import annotations

import argparse
import os

#: Images per thread of the default: a smaller job gets fewer threads.
IMAGES_PER_THREAD = 64


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--threads N`` option (checked by :func:`threads_problem`)."""
    parser.add_argument(
        "--threads",
        type=int,
        help=f"CPU threads for embedding and ranking (default: one per {IMAGES_PER_THREAD} "
        "images, at most the cores this process may use; 1 for a handful of queries)",
    )


def threads_problem(threads: int | None) -> str | None:
    """One line saying why ``--threads`` is wrong, or None."""
    if threads is not None and threads < 1:
        return f"--threads: expected a positive integer, got {threads}"
    return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads(images: int) -> int:
    """One thread per :data:`IMAGES_PER_THREAD` images, between 1 and the usable cores."""
    return max(1, min(usable_cores(), images // IMAGES_PER_THREAD))


def use_threads(threads: int | None, images: int, torch_threads: bool = True) -> int:
    """Set torch's (``torch_threads``: a run that embeds with torch) and faiss's (when
    installed) thread count; returns it."""
    count = threads if threads is not None else default_threads(images)
    if torch_threads:
        import torch

        torch.set_num_threads(count)
    try:
        import faiss
    except ImportError:
        return count
    faiss.omp_set_num_threads(count)
    return count
