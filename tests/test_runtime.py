"""The CPU malloc setting: freed activation-sized blocks are reused, not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from rareid.runtime import cpu_malloc_wanted

# Allocates and frees 64 MB + 32 MB tensors (above glibc's largest mmap threshold) until the
# heap is warm, then counts the page faults of three more rounds.
FAULTS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from rareid.runtime import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    n = 16 * 2**20
    for _ in range(8):
        y = torch.ones(n); z = torch.ones(n // 2); del y, z
    before = faults()
    for _ in range(3):
        y = torch.ones(n); z = torch.ones(n // 2); del y, z
    print(faults() - before)
    """
)


def page_faults(mode: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_keep_freed_memory_stops_page_faults_on_reallocation() -> None:
    default, kept = page_faults("default"), page_faults("keep")
    if default < 3 * 4096:  # 288 MB in huge pages or a caching malloc: nothing to remove
        pytest.skip(f"this system's malloc already reuses the blocks ({default} faults)")
    assert kept < default / 20, (kept, default)


def test_keep_freed_memory_reports_whether_it_applied() -> None:
    # In a child process: the setting is process-wide and would outlive this test.
    code = "from rareid.runtime import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out.stdout.strip() == str(glibc)


@pytest.mark.parametrize(
    ("value", "wanted"), [(None, True), ("1", True), ("0", False), ("off", False), ("no", False)]
)
def test_opt_out_environment_variable(
    value: str | None, wanted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("RAREID_CPU_MALLOC", raising=False)
    else:
        monkeypatch.setenv("RAREID_CPU_MALLOC", value)
    assert cpu_malloc_wanted() is wanted


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_a_launched_child_dies_with_its_parent_killed_by_sigkill() -> None:
    """What ``rareid index --devices 2`` does: rank 0 marks itself and starts a child that
    re-runs the command; a ``kill -9`` of rank 0 takes the child with it."""
    import os
    import signal
    import time

    child = (
        "from rareid.runtime import follow_launching_parent; follow_launching_parent(); "
        "import time; time.sleep(60)"
    )
    parent = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from rareid.runtime import mark_parent_for_children
        mark_parent_for_children()
        worker = subprocess.Popen([sys.executable, "-c", {child!r}])
        print(worker.pid, flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    worker = int(process.stdout.readline())
    time.sleep(2)  # the worker arms its parent-death signal
    assert _alive(worker)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive
