"""Run folders and checkpoint files: the lock, best/last names, atomic writes, loading rules."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rareid.checkpointing import (
    AtomicCheckpointIO,
    adapt_classifier,
    atomic_torch_save,
    model_options_from_checkpoint,
    read_checkpoint,
)
from rareid.runs import (
    LOCK_NAME,
    TEMP_PREFIX,
    RunLock,
    UsageError,
    check_writable,
    remove_stale_temp_files,
    resolve_checkpoint,
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    first = RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    with pytest.raises(UsageError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()

    dead = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{dead} {socket.gethostname()}\n")
    second = RunLock(tmp_path).acquire()
    assert second.took_over == dead
    assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    second.release()


def test_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(f"{_dead_pid()} some-other-host\n")
    with pytest.raises(UsageError, match="on some-other-host"):
        RunLock(tmp_path).acquire()


def test_best_and_last_resolve_into_the_run_folder(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    assert resolve_checkpoint("best", tmp_path) == (str(folder / "best.ckpt"), None)
    assert resolve_checkpoint("last", tmp_path) == (str(folder / "last.ckpt"), None)
    path, note = resolve_checkpoint("best", tmp_path, has_validation=False)
    assert path == str(folder / "last.ckpt") and "no best.ckpt" in note
    assert resolve_checkpoint("my.ckpt", tmp_path) == ("my.ckpt", None)
    assert resolve_checkpoint(None, tmp_path) == (None, None)


def test_stale_temp_files_are_removed_and_counted(tmp_path: Path) -> None:
    (tmp_path / f"{TEMP_PREFIX}last.ckpt.abc").write_bytes(b"partial")
    (tmp_path / f"{TEMP_PREFIX}best.ckpt.def").write_bytes(b"partial")
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    assert remove_stale_temp_files(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert remove_stale_temp_files(tmp_path / "absent") == 0


def test_check_writable_names_the_folder(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "new" / "run").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="is not writable"):
        check_writable(blocker / "run")


def test_atomic_save_keeps_the_old_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"epoch": 1}, target)
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would give

    def broken_save(obj: object, handle: object) -> None:
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"epoch": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoint_io_writes_locally_through_the_atomic_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(
        "rareid.checkpointing.atomic_torch_save", lambda ckpt, path: calls.append(Path(path))
    )
    AtomicCheckpointIO().save_checkpoint({"epoch": 0}, tmp_path / "sub" / "a.ckpt")
    assert calls == [tmp_path / "sub" / "a.ckpt"]


def test_unreadable_checkpoint_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read_checkpoint(tmp_path / "none.ckpt")
    truncated = tmp_path / "short.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(UsageError, match="is damaged or truncated"):
        read_checkpoint(truncated)


def test_checkpoint_options_win_and_conflicts_name_both_values() -> None:
    saved = {"backbone": "resnet18", "embedding_dim": 256, "lr": 1e-3, "distance": "euclidean"}
    defaults = {
        "backbone": "resnet50",
        "embedding_dim": 2048,
        "lr": 3.5e-4,
        "distance": "euclidean",
    }
    # Unset options (at their defaults) and training-only ones follow the checkpoint.
    given = {**defaults, "lr": 0.1}
    options = model_options_from_checkpoint(saved, given, defaults)
    assert options == {**saved, "distance": "euclidean"}
    # Evaluation options stay the user's.
    options = model_options_from_checkpoint(saved, {**defaults, "distance": "cosine"}, defaults)
    assert options["distance"] == "cosine"
    # An architecture option that contradicts the checkpoint is an error naming both values.
    with pytest.raises(UsageError, match=r"model\.embedding_dim: .*256.* asks for 128"):
        model_options_from_checkpoint(saved, {**defaults, "embedding_dim": 128}, defaults)
    # Same value spelt differently is no conflict.
    rates = model_options_from_checkpoint(
        {"rates": (1.0, 2.0)}, {"rates": [1, 2]}, {"rates": [1, 2, 3]}, prefix="data"
    )
    assert rates == {"rates": (1.0, 2.0)}


class _WithClassifier(torch.nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classifier = torch.nn.Linear(4, classes)
        self.head = torch.nn.Linear(4, 4)


def test_classifier_of_other_identities_is_kept_out_of_evaluation_only() -> None:
    trained = _WithClassifier(7)
    checkpoint = {"state_dict": trained.state_dict()}
    evaluated = _WithClassifier(3)
    replaced = adapt_classifier(evaluated, checkpoint, fitting=False)
    assert sorted(replaced) == ["classifier.bias", "classifier.weight"]
    evaluated.load_state_dict(checkpoint["state_dict"])  # strict: nothing missing
    assert torch.equal(evaluated.head.weight, trained.head.weight)
    with pytest.raises(UsageError, match=r"shape \(7, 4\) .* needs \(3, 4\)"):
        adapt_classifier(_WithClassifier(3), {"state_dict": trained.state_dict()}, fitting=True)
    assert adapt_classifier(_WithClassifier(7), {"state_dict": trained.state_dict()}, True) == []
