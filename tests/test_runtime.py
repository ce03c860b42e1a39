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
