"""The paper's configs are written once: ``conf/paper.yaml`` holds the recipe and each
``conf/<dataset>/<backbone>.yaml`` what differs. Stacked (``--config conf/paper.yaml --config
conf/<dataset>/<backbone>.yaml``) each resolves to exactly the values the single-file configs
held before the split, frozen below: a changed value fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rareid.cli import main

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "conf" / "paper.yaml"

#: Every value the paper's configs share, as they were written in each single-file config.
RECIPE: dict[str, Any] = {
    "seed_everything": 0,
    "trainer.accelerator": "auto",
    "trainer.devices": 1,
    "trainer.precision": "16-mixed",
    "trainer.max_epochs": 120,
    "trainer.check_val_every_n_epoch": 10,
    "model.pretrained": True,
    "model.weights_path": None,
    "model.embedding_dim": 2048,
    "model.split": "proportional",
    "model.use_masks": True,
    "model.varying_length": True,
    "model.mask_schedule": "progressive",
    "model.use_cls_loss": True,
    "model.use_verif_loss": True,
    "model.verif_weight": 0.5,
    "model.lr": 3.5e-4,
    "model.weight_decay": 5.0e-4,
    "model.milestones": [40, 70],
    "model.lr_schedule": "step",
    "model.gamma": 0.1,
    "data.root": "data",
    "data.input_size": [256, 128],
    "data.rates": [1, 2, 3, 4],
    "data.p": 8,
    "data.k": 4,
    "data.num_workers": 8,
    "data.trials": 10,
    "data.val_identities": 0.1,
    "data.val_trials": 1,
    "data.gallery_mode": "single",
    "progressive.phase_epochs": [0, 10, 20, 30],
}
BACKBONES = {
    "resnet50": {"model.backbone": "resnet50", "model.channels_last": True},
    "swin_base": {"model.backbone": "swin_base_patch4_window7_224", "model.channels_last": False},
    "swin_large": {
        "model.backbone": "swin_large_patch4_window7_224",
        "model.channels_last": False,
    },
}
DATASET_OPTIONS: dict[str, dict[str, Any]] = {
    "market1501": {},
    "dukemtmc": {},
    "cuhk03": {
        "data.dataset_options.cuhk03_labeled": False,
        "data.dataset_options.split_seed": 0,
    },
    "caviar": {"data.dataset_options.split_seed": 0},
}
PAIRS = [(dataset, backbone) for dataset in DATASET_OPTIONS for backbone in BACKBONES]


def expected(dataset: str, backbone: str) -> dict[str, Any]:
    """The flat values of ``conf/<dataset>/<backbone>.yaml`` as one file held them."""
    return {
        **RECIPE,
        **BACKBONES[backbone],
        "trainer.default_root_dir": f"runs/{dataset}_{backbone}",
        "data.dataset": dataset,
        **DATASET_OPTIONS[dataset],
    }


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def nested(values: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def config_file(dataset: str, backbone: str) -> Path:
    return REPO / "conf" / dataset / f"{backbone}.yaml"


@pytest.mark.parametrize(("dataset", "backbone"), PAIRS)
def test_stacked_files_hold_exactly_the_frozen_values(dataset: str, backbone: str) -> None:
    layers = [yaml.safe_load(path.read_text()) for path in (PAPER, config_file(dataset, backbone))]
    stacked = {**flat(layers[0]), **flat(layers[1])}
    assert stacked == expected(dataset, backbone)
    # the dataset x backbone file holds only what differs from the recipe
    assert not set(flat(layers[1])) & set(RECIPE), config_file(dataset, backbone)


def print_config(configs: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    arguments = [item for config in configs for item in ("--config", config)]
    assert main(["fit", *arguments, "--print_config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize(("dataset", "backbone"), PAIRS)
def test_the_cli_resolves_the_stack_as_the_single_file_before(
    dataset: str, backbone: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through LightningCLI: the later --config overrides key by key, the rest of the recipe
    stays, so every option (defaults included) resolves as the frozen single file does."""
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(nested(expected(dataset, backbone))))
    stacked = print_config([str(PAPER), str(config_file(dataset, backbone))], capsys)
    assert stacked == print_config([str(single)], capsys)
