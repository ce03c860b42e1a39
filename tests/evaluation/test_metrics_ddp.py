"""MLRMetric under 2-process CPU DDP (gloo) equals 1 process, padding duplicates included."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.evaluation import MLRMetric
from rareid.evaluation.viz import rank_lists, tsne_inputs

SPLIT = [2, 2, 2, 2]
RATES = (1, 2, 3, 4)

WORKER = textwrap.dedent(
    """
    import sys

    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from rareid.evaluation import MLRMetric
    from rareid.evaluation.viz import rank_lists, tsne_inputs


    def work(rank, world, port, data_path, out_dir):
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
        data = torch.load(data_path)
        n = data[0].shape[0]
        order = list(range(n))
        total = -(-n // world) * world
        order += order[: total - n]  # DistributedSampler pads by repeating the first samples
        mine = torch.tensor(order[rank::world])
        metric = MLRMetric([2, 2, 2, 2], (1, 2, 3, 4))
        for a in range(0, len(mine), 3):
            metric.update(*(x[mine[a : a + 3]] for x in data))
        results = metric.compute()
        with metric.sync_context(should_sync=True):
            lists = rank_lists(metric, trial=1, topk=3)
            tsne = tsne_inputs(metric, trial=1)
        torch.save(
            {
                "results": results,
                "counts": metric.query_counts,
                "lists": lists,
                "tsne": tsne,
                "local": len(mine),
            },
            f"{out_dir}/rank{rank}.pt",
        )
        dist.destroy_process_group()


    if __name__ == "__main__":
        mp.spawn(work, args=(2, int(sys.argv[1]), sys.argv[2], sys.argv[3]), nprocs=2)
    """
)


def protocol_data(seed: int = 0) -> list[torch.Tensor]:
    """37 samples (odd: 2 ranks pad one duplicate); sample 0 is a query so a kept duplicate
    would change the numbers."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, 8))
    rows = []
    for pid in range(1, 6):
        for cam in (0, 1):  # MLR queries of trials 0 and 1, then an HR query
            for t in (0, 1):
                level = int(rng.integers(1, 4))
                emb = centers[pid] + rng.normal(scale=1.0, size=8)
                emb[2 * level :] = 0
                rows.append((emb, level, pid, cam, 1, t, 0))
    for pid in range(0, 6):
        for cam in (1, 2):
            bits = 0b01 if cam == 1 else 0b10
            rows.append((centers[pid] + rng.normal(scale=1.0, size=8), 4, pid, cam, 0, -1, bits))
    for pid in range(1, 6):
        rows.append((centers[pid] + rng.normal(scale=1.0, size=8), 4, pid, 0, 2, -1, 0))
    emb = torch.tensor(np.stack([r[0] for r in rows]), dtype=torch.float32)
    cols = [torch.tensor([r[k] for r in rows]) for k in range(1, 7)]
    return [emb, *cols, torch.arange(len(rows))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_two_process_gloo_equals_one_process(tmp_path: Path) -> None:
    data = protocol_data()
    assert data[0].shape[0] % 2 == 1 and int(data[4][0]) == 1  # padding repeats a query
    single = MLRMetric(SPLIT, RATES)
    for a in range(0, data[0].shape[0], 5):
        single.update(*(x[a : a + 5] for x in data))
    expected = single.compute()
    expected_lists = rank_lists(single, trial=1, topk=3)
    expected_tsne = tsne_inputs(single, trial=1)
    # Counting the duplicate would change the result: the test can tell.
    dup = MLRMetric(SPLIT, RATES)
    dup.update(*data)
    dup.update(*(x[:1] for x in data))
    dup.update(*(x[:1] for x in data[:-1]), torch.tensor([1000]))
    assert float(dup.compute()["mAP"]) != float(expected["mAP"])

    torch.save(data, tmp_path / "data.pt")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.run(
        [sys.executable, str(script), str(free_port()), str(tmp_path / "data.pt"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert out["local"] == (data[0].shape[0] + 1) // 2
        assert set(out["results"]) == set(expected)
        assert out["counts"] == single.query_counts
        for key, value in expected.items():
            assert float(out["results"][key]) == float(value), key
        for key, value in expected_lists.items():
            assert torch.equal(out["lists"][key], value), key
        for got, want in zip(out["tsne"], expected_tsne, strict=True):
            np.testing.assert_array_equal(got, want)
