"""Under 2-process DDP (gloo) the training loss and gradients equal one process on the
global batch: verification pairs are formed over the embeddings of every rank."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.helpers import random_train_batch, tiny_module_kwargs

REPO = Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 8  # 4 per rank

WORKER = textwrap.dedent(
    """
    import sys
    import warnings

    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from tests.models.test_module_ddp import build_module, global_batch


    def work(rank, world, port, out_dir):
        warnings.filterwarnings("ignore")
        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
        module = build_module()
        batch = global_batch()
        size = batch["hr"].shape[0] // world
        mine = {key: value[rank * size : (rank + 1) * size] for key, value in batch.items()}
        loss = module.training_step(mine, 0)
        loss.backward()
        grads = {}
        for name, param in module.named_parameters():
            grad = param.grad.clone()
            dist.all_reduce(grad)  # what DDP does: the mean of the ranks' gradients
            grads[name] = grad / world
        torch.save({"loss": loss.detach(), "grads": grads}, f"{out_dir}/rank{rank}.pt")
        dist.destroy_process_group()


    if __name__ == "__main__":
        mp.spawn(work, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2)
    """
)


def build_module():
    """The same tiny model on every process, all masks on, BatchNorm on running statistics
    (train-mode BatchNorm normalises per rank, which only SyncBatchNorm makes global)."""
    from rareid.models.module import RAReIDModule

    torch.manual_seed(0)
    module = RAReIDModule(**tiny_module_kwargs(embedding_dim=24))
    for stage in range(len(module.masks)):
        module.masks.set_active(stage, True)
    with torch.no_grad():
        module.classifier.weight.normal_(std=0.1)  # losses that depend on every embedding
    return module.eval()


def global_batch() -> dict[str, torch.Tensor]:
    """Every identity has images on both ranks: positive pairs span ranks, as in P x K."""
    batch = random_train_batch(batch_size=GLOBAL_BATCH, seed=3)
    batch["pid"] = torch.tensor([0, 1, 2, 3, 1, 0, 3, 2])
    return batch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_two_process_loss_and_gradients_equal_one_process(tmp_path: Path) -> None:
    module = build_module()
    loss = module.training_step(global_batch(), 0)
    loss.backward()
    expected = {name: param.grad for name, param in module.named_parameters()}

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(script), str(free_port()), str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # Mean over ranks of (local identity loss + lambda * global verification loss).
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, loss.detach())
    for name, grad in expected.items():
        torch.testing.assert_close(ranks[0]["grads"][name], grad, msg=name)
    for name in ("head.fc.weight", "verifier.fc1.weight", "classifier.weight"):
        assert torch.count_nonzero(expected[name]) > 0, name  # the comparison has teeth
