"""Process-level settings of a Lightning run: the CPU allocator, the default loggers and the
third-party messages a rareid user can do nothing about."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

__all__ = [
    "BF16_CPU_FLAGS",
    "CPU_MALLOC_ENV",
    "LIGHTNING_INFO_LOGGER",
    "cpu_bf16_flags",
    "cpu_malloc_wanted",
    "default_loggers",
    "die_with_parent",
    "follow_launching_parent",
    "keep_freed_memory",
    "mark_parent_for_children",
    "quiet_third_party_noise",
    "resolve_precision",
]

log = logging.getLogger(__name__)

#: Set to ``0`` to leave glibc's malloc as it is in ``rareid fit/test/predict`` on the CPU.
CPU_MALLOC_ENV = "RAREID_CPU_MALLOC"

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    PyTorch has no caching allocator on the CPU. With glibc's defaults, every tensor above
    its mmap threshold (32 MB at most) is a fresh ``mmap`` whose pages fault in one at a time
    and are unmapped again when it is freed, and a training step allocates many such
    activations. Keeping freed memory avoids those page faults (``benchmarks/model_overhead.py
    --allocator default`` measures the difference on your machine), including the ones the
    masks' extra activations would cost. The cost is that the process keeps its peak memory
    until it exits.

    Serves every block from the heap (``M_MMAP_MAX=0``), never trims it, and grows it 64 MB
    at a time. Returns True when applied; False where malloc is not glibc's (macOS, Windows,
    musl), which is left unchanged.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = all(
        mallopt(option, value) == 1
        for option, value in (
            (_M_MMAP_MAX, 0),
            (_M_TRIM_THRESHOLD, _INT_MAX),
            (_M_TOP_PAD, 64 << 20),
        )
    )
    if applied:
        log.info(
            "rareid: glibc malloc now keeps freed memory for reuse (faster CPU steps; the "
            "process holds its peak memory). Set %s=0 to turn this off.",
            CPU_MALLOC_ENV,
        )
    return applied


def cpu_malloc_wanted() -> bool:
    """False when the user opted out with ``RAREID_CPU_MALLOC=0``."""
    return os.environ.get(CPU_MALLOC_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


#: CPU flags (``/proc/cpuinfo``) whose bf16 instructions make bf16 autocast pay on the CPU.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The bf16 flags this CPU advertises (empty where it has none, or off Linux).

    Without them PyTorch emulates bf16 on the CPU, many times slower than float32.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo = handle.read()
        except OSError:
            return []
    words = set(cpuinfo.split())
    return [flag for flag in BF16_CPU_FLAGS if flag in words]


def resolve_precision(
    accelerator: str | None, cuda_bf16: bool = False, cpuinfo: str | None = None
) -> tuple[str, str]:
    """What ``trainer.precision: auto`` means on this machine, and why (one phrase).

    bf16-mixed on a GPU with bf16 support, or on a CPU with AMX or AVX512-BF16; float32
    everywhere else, where bf16 would be emulated or unsupported.
    """
    device = (accelerator or "auto").lower()
    if device in ("gpu", "cuda") or (device == "auto" and cuda_bf16):
        if cuda_bf16:
            return "bf16-mixed", "the GPU supports bf16"
        return "32-true", "the GPU has no bf16 support"
    if device not in ("cpu", "auto"):
        return "32-true", f"accelerator {accelerator!r}"
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return "bf16-mixed", f"the CPU has {' and '.join(flags)}"
    return "32-true", "the CPU has neither AMX nor AVX512-BF16 (bf16 would be emulated)"


#: wandb's folders outside its run directory (debug logs, cache, staging), and the values this
#: process gave them: a folder the user chose is left alone.
_WANDB_FOLDERS = ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")
_wandb_folders_set: dict[str, str] = {}


def keep_wandb_in(folder: Path) -> None:
    """Point wandb's cache, config and staging folders into the run folder (they default to
    ~/.cache and ~/.config), so that an offline run leaves nothing outside it."""
    for key in _WANDB_FOLDERS:
        if key in os.environ and os.environ[key] != _wandb_folders_set.get(key):
            continue  # set by the user
        value = str((folder / key.removeprefix("WANDB_").removesuffix("_DIR").lower()).resolve())
        os.environ[key] = _wandb_folders_set[key] = value


def default_loggers(root: str | os.PathLike) -> list[Logger]:
    """CSV metrics (first, so it decides ``trainer.log_dir``) and wandb in offline mode.

    Without wandb installed (a minimal GPU image, say) the run logs CSV only and says so,
    rather than failing before it trains."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    root = Path(root)
    csv_logger = CSVLogger(save_dir=root, name="csv")
    if importlib.util.find_spec("wandb") is None:
        print("rareid: wandb is not installed; logging CSV metrics only", file=sys.stderr)
        return [csv_logger]
    keep_wandb_in(root / "wandb")
    wandb_logger = WandbLogger(save_dir=str(root), project="rareid", name=root.name, offline=True)
    # Lightning's WandbLogger always passes anonymous=None (lightning/pytorch/loggers/wandb.py)
    # and wandb warns "The anonymous setting has no effect" for any value but unset.
    init = getattr(wandb_logger, "_wandb_init", {})
    if init.get("anonymous", "") is None:
        del init["anonymous"]
    return [csv_logger, wandb_logger]


#: The logger of Lightning's rank-zero messages (its tips among them).
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def quiet_third_party_noise() -> None:
    """Silence, by name, third-party messages a rareid user can do nothing about."""
    # torch deprecates LeafSpec; Lightning's own pytree helpers still create one.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    # Lightning's CLI calls jsonargparse methods deprecated in jsonargparse 4.49 (its switch).
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    # run_cli(args) is meant to be called from Python while sys.argv holds another program's.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    # Lightning's tip to install litlogger, a logger rareid does not use.
    rank_zero_logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _NoLitLoggerTip) for f in rank_zero_logger.filters):
        rank_zero_logger.addFilter(_NoLitLoggerTip())


class _NoLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


#: Set by a rareid process that re-runs itself in child processes (``index --devices N``):
#: its id, so that each child can tie its life to it.
PARENT_VARIABLE = "RAREID_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Be killed when the parent process dies, even by ``kill -9``, so that no orphan keeps
    working for a command that is gone (Linux's parent-death signal; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def mark_parent_for_children() -> None:
    """Before a launcher re-runs this command in child processes: tell them whose they are
    (read by :func:`follow_launching_parent`)."""
    os.environ[PARENT_VARIABLE] = str(os.getpid())


def follow_launching_parent() -> None:
    """In a child that a rareid process launched (:func:`mark_parent_for_children`): die with
    that parent, and stop at once if it is already gone. The mark is removed so the child's
    own children do not take it for theirs."""
    parent = os.environ.pop(PARENT_VARIABLE, None)
    if parent is None:
        return
    die_with_parent()
    if str(os.getppid()) != parent:  # the parent died before the signal was armed
        sys.stderr.write(f"the rareid process {parent} that started this one is gone: stopping\n")
        os._exit(1)
