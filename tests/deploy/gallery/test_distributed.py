"""``rareid index --devices N`` writes the index one device writes: two CPU processes on gloo
(Lightning's ``ddp``, which runs the command once more as a subprocess) give the same paths in
the same order and the same embeddings, also for ``--add``; the padding repeats of the
distributed sampler are dropped; a rank other than 0 neither locks nor writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.deploy.gallery.distributed import is_rank_zero, merge_rank_outputs, plan_digest
from rareid.deploy.gallery.index import GalleryIndex, GalleryIndexError
from tests.deploy.conftest import GALLERY_NAMES, delete_change_and_add, run_cli
from tests.deploy.conftest import index_args as gallery_index_args

ROOT = Path(__file__).resolve().parents[3]


run = run_cli


def index_args(checkpoint: Path, folder: Path, out: Path, *extra: str) -> list[str]:
    # several batches per rank, the last one short
    return gallery_index_args(checkpoint, folder, out, "--batch-size", "2", *extra)


def run_two_processes(argv: list[str]) -> subprocess.CompletedProcess:
    """The command as a user runs it: Lightning's ddp re-runs it for rank 1."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "rareid", *argv, "--devices", "2", "--accelerator", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def assert_same_index(one: Path, two: Path) -> None:
    first, second = GalleryIndex.load(one), GalleryIndex.load(two)
    assert second.paths == first.paths
    torch.testing.assert_close(second.embeddings, first.embeddings, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(second.sizes, first.sizes)
    np.testing.assert_array_equal(second.stats, first.stats)
    assert second.levels.tolist() == first.levels.tolist()
    assert second.record().meta() == first.record().meta()


@pytest.mark.e2e
@pytest.mark.usefixtures("one_torch_thread")
def test_two_cpu_processes_write_the_one_process_index(
    tmp_path, trained_checkpoint, gallery_dir, capsys
):
    folder = tmp_path / "gallery"
    shutil.copytree(gallery_dir, folder)  # 6 images and a broken one: 7 files on 2 ranks
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    assert run(index_args(trained_checkpoint, folder, one)) == 0
    single = capsys.readouterr().out
    result = run_two_processes(index_args(trained_checkpoint, folder, two))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_index(one, two)
    assert len(GalleryIndex.load(two)) == len(GALLERY_NAMES)
    # one summary line, from rank 0 only, counting as one device counts
    assert result.stdout.strip().splitlines() == [single.strip().replace(str(one), str(two))]
    assert result.stderr.count("skipped") == 1 and "broken.jpg" in result.stderr
    assert "deprecat" not in result.stderr.lower(), result.stderr  # nothing a user can change
    assert not (tmp_path / ".two.npz.lock").exists()

    delete_change_and_add(folder)
    assert run(index_args(trained_checkpoint, folder, one, "--add")) == 0
    single = capsys.readouterr().out
    result = run_two_processes(index_args(trained_checkpoint, folder, two, "--add"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_index(one, two)
    assert result.stdout.strip().splitlines() == [single.strip().replace(str(one), str(two))]
    assert "1 added, 1 changed and re-embedded, 1 deleted" in result.stdout


def batch_of(positions, failed=(), dimension=4):
    """What a rank's predict_step returns for the files at ``positions`` (embedding = position)."""
    return {
        "positions": list(positions),
        "names": [f"f{position}.png" for position in positions],
        "paths": [f"/g/f{position}.png" for position in positions],
        "sizes": [(10 + position, 5) for position in positions],
        "stats": [(100 + position, position) for position in positions],
        "failed": [
            (f"/g/f{position}.png", "unreadable", f"f{position}.png") for position in failed
        ],
        "failed_positions": list(failed),
        "embeddings": torch.tensor([[float(position)] * dimension for position in positions]),
    }


def test_merge_puts_ranks_back_in_list_order_and_drops_the_padding_repeats():
    # 7 files on 2 ranks, batches of 2: the sampler pads the list with file 0 for rank 1
    todo = [(f"f{position}.png", Path(f"/g/f{position}.png")) for position in range(7)]
    plan = plan_digest(todo)
    gathered = [
        {"plan": plan, "batches": [batch_of([0, 2]), batch_of([6], failed=[4])]},
        {"plan": plan, "batches": [batch_of([1, 3]), batch_of([5, 0])]},
    ]
    batch = merge_rank_outputs(gathered, 7)
    assert batch["names"] == [f"f{position}.png" for position in (0, 1, 2, 3, 5, 6)]
    assert batch["embeddings"][:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 5.0, 6.0]
    assert batch["sizes"][4] == (15, 5) and batch["stats"][4] == (105, 5)
    assert batch["failed"] == [("/g/f4.png", "unreadable", "f4.png")]


def test_merge_refuses_ranks_that_planned_other_files_or_a_lost_position():
    todo = [(f"f{position}.png", Path(f"/g/f{position}.png")) for position in range(3)]
    gathered = [
        {"plan": plan_digest(todo), "batches": [batch_of([0, 2])]},
        {"plan": plan_digest(todo[:2]), "batches": [batch_of([1, 0])]},
    ]
    with pytest.raises(GalleryIndexError, match="different files"):
        merge_rank_outputs(gathered, 3)
    gathered[1]["plan"] = plan_digest(todo)
    gathered[1]["batches"] = [batch_of([0])]
    with pytest.raises(GalleryIndexError, match="1 of 3 gallery files came back from no rank"):
        merge_rank_outputs(gathered, 3)


@pytest.mark.parametrize(
    ("variables", "zero"),
    [
        ({}, True),
        ({"LOCAL_RANK": "0", "NODE_RANK": "0", "SLURM_PROCID": "0"}, True),
        ({"LOCAL_RANK": "1"}, False),  # a process Lightning's ddp started on this node
        ({"NODE_RANK": "1"}, False),  # the first process of another node
        ({"RANK": "3"}, False),  # torchrun
        ({"SLURM_PROCID": "2"}, False),
    ],
)
def test_rank_zero_is_the_process_no_launcher_gave_another_rank(monkeypatch, variables, zero):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert is_rank_zero() is zero


def test_another_rank_neither_locks_nor_writes(
    tmp_path, monkeypatch, trained_checkpoint, gallery_dir, capsys
):
    """Rank 1 of a launch that found nothing to embed returns without touching the index."""
    folder = tmp_path / "gallery"
    shutil.copytree(gallery_dir, folder)
    (folder / "broken.jpg").unlink()  # else every update tries it again
    out = tmp_path / "g.npz"
    assert run(index_args(trained_checkpoint, folder, out)) == 0
    written = out.stat().st_mtime_ns
    capsys.readouterr()
    (tmp_path / ".g.npz.lock").write_text("held by rank 0")  # rank 0 holds the lock
    monkeypatch.setenv("LOCAL_RANK", "1")
    argv = index_args(trained_checkpoint, folder, out, "--add", "--devices", "2")
    assert run([*argv, "--accelerator", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "error" not in captured.err
    assert out.stat().st_mtime_ns == written


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--devices", "0"], "--devices: expected a positive integer, got 0"),
        (["--num-nodes", "-1"], "--num-nodes: expected a positive integer, got -1"),
        (["--accelerator", "cpu"], "--accelerator applies with --devices or --num-nodes above 1"),
        (["--devices", "2", "--device", "cuda"], "--device picks the device of a one-device run"),
        (["--num-nodes", "2", "--backend", "onnx", "--onnx", "m.onnx"], "ONNX runs on one"),
        (["--devices", "2", "--accelerator", "gpu"], "--accelerator gpu: this machine has no"),
    ],
)
def test_device_options_misused_are_one_line_and_exit_status_2(
    tmp_path, monkeypatch, capsys, extra, message
):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # as on a machine without GPU
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.ckpt").write_bytes(b"not read before the options are checked")
    (tmp_path / "m.onnx").write_bytes(b"not read before the options are checked")
    argv = ["index", "--ckpt", "m.ckpt", "--gallery", ".", "--out", "x.npz", *extra]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("rareid index: error:")
