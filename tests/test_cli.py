"""The ``rareid`` command: configs parse, bad input fails clearly, fit + test run end to end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from rareid import cli as cli_module
from rareid.cli import main

REPO = Path(__file__).resolve().parents[1]
# conf/experiments/ holds grids of `rareid experiment`, not LightningCLI configs.
CONFIGS = sorted(p for p in (REPO / "conf").rglob("*.yaml") if "experiments" not in p.parts)


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "synthetic"
    main(["synth", "--out", str(out), "--identities", "12", "--seed", "3"])
    return out


def test_conf_folder_has_the_paper_configurations() -> None:
    names = {str(p.relative_to(REPO / "conf")) for p in CONFIGS}
    for dataset in ("market1501", "dukemtmc", "cuhk03", "caviar"):
        for backbone in ("resnet50", "swin_base", "swin_large"):
            assert f"{dataset}/{backbone}.yaml" in names
    assert "quickstart.yaml" in names
    assert any(name.startswith("ddp/") for name in names)
    assert any(name.startswith("ablation/") for name in names)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "conf")))
def test_every_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert "model" in printed and "data" in printed
    # Forced callbacks are always there, whatever the file says.
    assert "progressive" in printed and "checkpoint" in printed and "report" in printed
    # Linked values come from the data section, so the model section does not carry them.
    for linked in ("rates", "num_classes", "img_size"):
        assert linked not in printed["model"]
    assert printed["data"]["rates"]


def test_misspelt_config_key_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "conf/quickstart.yaml"), "--model.embeding_dim", "8"])
    assert exit_info.value.code == 2
    assert "embeding_dim" in capsys.readouterr().err


def test_unknown_backbone_is_a_clear_error(
    tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(REPO / "conf/quickstart.yaml"),
                "--data.root",
                str(tiny_synthetic),
                "--model.backbone",
                "resnet_does_not_exist",
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "resnet_does_not_exist" in err and "Traceback" not in err


def test_missing_data_root_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(REPO / "conf/quickstart.yaml"),
                "--data.root",
                str(missing),
                "--trainer.default_root_dir",
                str(tmp_path / "run"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_synth_is_deterministic(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    main(["synth", "--out", str(first), "--identities", "6", "--seed", "7"])
    main(["synth", "--out", str(second), "--identities", "6", "--seed", "7"])
    main(["synth", "--out", str(other), "--identities", "6", "--seed", "8"])
    assert _tree_hash(first) == _tree_hash(second)
    assert _tree_hash(first) != _tree_hash(other)


@pytest.mark.e2e
def test_fit_then_test_end_to_end(
    tiny_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    malloc_calls: list[bool] = []  # recorded, not applied: it would outlive this test
    monkeypatch.setattr(cli_module, "keep_freed_memory", lambda: malloc_calls.append(True))
    run = tmp_path / "run"
    common = [
        "--config",
        str(REPO / "conf/quickstart.yaml"),
        "--data.root",
        str(tiny_synthetic),
        "--data.input_size",
        "[64, 32]",
        "--data.p",
        "3",
        "--data.k",
        "2",
        "--data.num_workers",
        "0",
        "--data.trials",
        "2",
        "--model.embedding_dim",
        "32",
        "--trainer.default_root_dir",
        str(run),
        "--trainer.logger",
        "[{class_path: lightning.pytorch.loggers.CSVLogger, init_args: {save_dir: "
        + str(run)
        + "}}]",
        "--report.tsne",
        "false",
    ]
    main(
        [
            "fit",
            *common,
            "--trainer.max_epochs",
            "2",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--progressive.phase_epochs",
            "[0, 0, 1, 1]",
        ]
    )
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert malloc_calls == [True]  # CPU trainer: freed memory is kept for reuse
    cli = main(["test", *common, "--ckpt_path", str(best)])
    results = json.loads((run / "results" / "results.json").read_text())
    for key in ("rank1", "rank5", "mAP", "rank1_std", "hr/rank1"):
        assert 0.0 <= results[key] <= 1.0
    assert any(key.startswith("level1/") for key in results)
    assert (run / "results" / "rank_list.png").is_file()
    assert "test/rank1" in cli.trainer.callback_metrics
    main(["predict", *common, "--ckpt_path", str(best)])
    table = torch.load(run / "predictions" / "embeddings.pt", weights_only=True)
    rows = len(table["index"])
    assert table["embedding"].shape == (rows, 32) and rows > 0
    assert sorted(table["index"].tolist()) == list(range(rows))
    assert set(table["role"].tolist()) == {0, 1, 2}
    # A second fit in the same folder must not crash (config is overwritten).
    main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"])


def test_data_normalisation_follows_the_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    from rareid import cli

    assert cli.backbone_normalization("resnet18", "mean") == (0.485, 0.456, 0.406)
    assert cli.backbone_normalization("resnet18", "std") == (0.229, 0.224, 0.225)

    class OtherCfg:
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    monkeypatch.setattr(cli.timm, "get_pretrained_cfg", lambda name: OtherCfg())
    assert cli.backbone_normalization("resnet18", "std") == (0.25, 0.25, 0.25)
