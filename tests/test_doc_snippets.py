"""Every ```python block of README.md and docs/*.md runs as written.

Paths are the only thing a snippet is given, and only one way: each block runs with the
working folder set to a temporary folder where this test has created every file the snippets
name (``FILES``): a checkpoint of a tiny model fitted for one step, at the path the docs use,
and a few small crops. Nothing in a block is rewritten. The dataset registry is restored after
each block, so a block that registers a reader leaves no trace.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest

import rareid.data.readers as readers
from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.models.module import RAReIDModule
from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKPOINT = "runs/benchmark/rareid-full/seed0/checkpoints/last.ckpt"
#: The files the snippets name, relative to the folder they run in: name -> crop height.
FILES = {
    **{f"q{number}.jpg": 32 for number in (1, 2, 3)},
    **{f"g{number}.jpg": 128 for number in (1, 2)},
    **{f"my_gallery/person {number}.jpg": 128 for number in range(12)},
    **{f"my_queries/query {number}.jpg": 40 for number in range(3)},
}
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """(``file:line``, source) of every ```python block of the documents."""
    blocks = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_the_documents_hold_python_blocks() -> None:
    """The extraction finds the blocks of both docs pages (a broken pattern finds none)."""
    where = {name.split(":")[0] for name, _ in BLOCKS}
    assert {"docs/cli-and-configs.md", "docs/match-your-crops.md"} <= where
    assert len(BLOCKS) >= 3


@pytest.fixture(scope="module")
def snippet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a one-step checkpoint at ``CHECKPOINT`` and the crops of ``FILES``."""
    folder = tmp_path_factory.mktemp("snippets")
    L.seed_everything(0, verbose=False)
    model = RAReIDModule(
        **tiny_module_kwargs(backbone="test_resnet", embedding_dim=32, mask_schedule="end_to_end")
    )
    trainer = L.Trainer(
        **quiet_trainer_kwargs(folder / "fit", max_steps=1), callbacks=[ProgressiveMaskTraining()]
    )
    trainer.fit(model, datamodule=RandomReIDDataModule(size=4, batch_size=4))
    (folder / CHECKPOINT).parent.mkdir(parents=True)
    trainer.save_checkpoint(folder / CHECKPOINT)
    generator = np.random.default_rng(0)
    for name, height in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        crop = generator.integers(0, 256, (height, height // 2, 3), dtype=np.uint8)
        assert cv2.imwrite(str(path), crop)
    return folder


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.filterwarnings("ignore:You defined a `validation_step`")
@pytest.mark.parametrize(("where", "source"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_python_block_runs_as_written(
    where: str, source: str, snippet_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(snippet_folder)
    monkeypatch.setattr(readers, "_READERS", dict(readers._READERS))
    monkeypatch.setattr(readers, "_ALIASES", dict(readers._ALIASES))
    exec(compile(source, where, "exec"), {"__name__": "__snippet__"})
