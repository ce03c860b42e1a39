"""Fixtures of the tracklet tests: a tiny checkpoint trained for a few steps (the deploy tests'
recipe, fewer epochs: these tests check plumbing, not accuracy) and a small synthetic video."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.data.synthetic import SyntheticWorld
from rareid.data.synthetic.video import write_synthetic_video
from tests.deploy.conftest import MEAN, NUM_PEOPLE, STD, PairsModule, ViewPairs, make_model
from tests.helpers import quiet_trainer_kwargs


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-epoch checkpoint of timm's test_resnet with the datamodule's normalisation saved."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        L.seed_everything(0, verbose=False)
        root = tmp_path_factory.mktemp("tiny")
        world = SyntheticWorld(identities=48, seed=0, cameras=2, train_identities=24)
        people = [group[0] for group in world.groups[:NUM_PEOPLE]]
        trainer = L.Trainer(
            **quiet_trainer_kwargs(root, max_epochs=2), callbacks=[ProgressiveMaskTraining()]
        )
        trainer.fit(make_model(), PairsModule(ViewPairs(world, people, 4)))
        path = root / "tiny.ckpt"
        trainer.save_checkpoint(path)
    finally:
        torch.set_num_threads(previous)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["datamodule_hyper_parameters"] = {"mean": MEAN, "std": STD, "rates": [1, 2, 3, 4]}
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def video_root(tmp_path_factory) -> Path:
    """Two cameras, three walkers and one passer-by each (frames, MOT ground truth, crops)."""
    root = tmp_path_factory.mktemp("video")
    write_synthetic_video(root, identities=12, walkers=3, cameras=2, passers_by=1, seed=0)
    return root


def run_rareid(argv: list[str]) -> int:
    """``rareid`` in this process: its exit status, also when it exits through SystemExit."""
    from rareid.cli import main

    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)
