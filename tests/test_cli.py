"""The ``rareid`` command: configs parse, bad input fails clearly, fit + test run end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

from rareid import cli as cli_module
from rareid import lightning_cli, runtime
from rareid.cli import main, run_cli
from tests.helpers import tiny_run_args

REPO = Path(__file__).resolve().parents[1]
# conf/grids/ holds grids of `rareid experiment`, not LightningCLI configs.
CONFIGS = sorted(p for p in (REPO / "conf").rglob("*.yaml") if "grids" not in p.parts)


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "synthetic"
    assert main(["synth", "--out", str(out), "--identities", "12", "--seed", "3"]) == 0
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
    assert main(["fit", "--config", str(config), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert "model" in printed and "data" in printed
    # Forced callbacks are always there, whatever the file says.
    assert "progressive" in printed and "checkpoint" in printed and "report" in printed
    # Linked values come from the data section, so the model section does not carry them.
    for linked in ("rates", "num_classes", "img_size"):
        assert linked not in printed["model"]
    assert printed["data"]["rates"]


def test_misspelt_config_key_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["fit", "--config", str(REPO / "conf/quickstart.yaml"), "--model.embeding_dim", "8"]
    )
    assert status == 2
    assert "embeding_dim" in capsys.readouterr().err


def test_unknown_backbone_is_a_clear_error(
    tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
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
    assert status == 2
    err = capsys.readouterr().err
    assert "resnet_does_not_exist" in err and "Traceback" not in err


def test_missing_data_root_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    status = main(
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
    assert status == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_synth_is_deterministic(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((first, 7), (second, 7), (other, 8)):
        assert main(["synth", "--out", str(out), "--identities", "6", "--seed", str(seed)]) == 0
    assert _tree_hash(first) == _tree_hash(second)
    assert _tree_hash(first) != _tree_hash(other)


@pytest.mark.e2e
def test_fit_then_test_end_to_end(
    tiny_synthetic: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    malloc_calls: list[bool] = []  # recorded, not applied: it would outlive this test
    monkeypatch.setattr(lightning_cli, "keep_freed_memory", lambda: malloc_calls.append(True))
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
    status = main(
        [
            "fit",
            *common,
            "--trainer.max_epochs",
            "2",
            "--trainer.limit_train_batches",
            "2",
            "--data.val_identities",  # one held-out identity cannot select a checkpoint
            "2",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--progressive.phase_epochs",
            "[0, 0, 1, 1]",
        ]
    )
    assert status == 0
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert malloc_calls == [True]  # CPU trainer: freed memory is kept for reuse
    cli = run_cli(["test", *common, "--ckpt_path", "best"])
    assert cli.config.test.ckpt_path == str(best)
    results = json.loads((run / "results" / "results.json").read_text())
    for key in ("rank1", "rank5", "mAP", "rank1_std", "hr/rank1"):
        assert 0.0 <= results[key] <= 1.0
    assert any(key.startswith("level1/") for key in results)
    assert (run / "results" / "rank_list.png").is_file()
    assert "test/rank1" in cli.trainer.callback_metrics
    assert main(["predict", *common, "--ckpt_path", str(best)]) == 0
    table = torch.load(run / "predictions" / "embeddings.pt", weights_only=True)
    rows = len(table["index"])
    assert table["embedding"].shape == (rows, 32) and rows > 0
    assert sorted(table["index"].tolist()) == list(range(rows))
    assert set(table["role"].tolist()) == {0, 1, 2}
    # A test cut short before the first query (gallery rows come first) still reports.
    (run / "results" / "rank_list.png").unlink()
    short = ["--trainer.limit_test_batches", "1", "--data.eval_batch_size", "4"]
    short += ["--report.tsne", "true", "--report.overwrite", "true"]
    assert main(["test", *common, "--ckpt_path", str(best), *short]) == 0
    assert not (run / "results" / "rank_list.png").exists()
    assert json.loads((run / "results" / "results.json").read_text())["rank1"] is None
    # A second fit in the same folder stops rather than replace the first run's checkpoints,
    # and replaces them (with a word) when asked to.
    again = ["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]
    assert main(again) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*again, "--overwrite"]) == 0
    assert "deleted 2 checkpoint(s)" in capsys.readouterr().out
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0


def test_data_normalisation_follows_the_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    from rareid.data.transforms import backbone_statistics

    assert backbone_statistics("resnet18")[0] == (0.485, 0.456, 0.406)
    assert backbone_statistics("resnet18")[1] == (0.229, 0.224, 0.225)

    class OtherCfg:
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    monkeypatch.setattr(timm, "get_pretrained_cfg", lambda name: OtherCfg())
    assert backbone_statistics("resnet18")[1] == (0.25, 0.25, 0.25)


def _tiny_fit_args(data: Path, run: Path) -> list[str]:
    """A fit of one batch on the tiny dataset, no loggers, no pictures."""
    options = {"data.p": 3, "trainer.max_epochs": 1, "trainer.limit_train_batches": 1}
    return ["fit", *tiny_run_args(data, run, options)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--data.p", "50"], "training set has only 5"),
        (["--progressive.phase_epochs", "[0, 5]"], "phase_epochs=[0, 5]"),
        (["--data.rates", "[1, .inf]"], "rates: every rate must be a finite number"),
        (["--data.rates", "[1, .nan]"], "rates: every rate must be a finite number"),
        (["--data.eval_rates", "[2, .nan]"], "eval_rates"),
        (["--trainer.max_epochs", "-3"], "max_epochs"),
        (["--ckpt_path", "missing.ckpt"], "missing.ckpt' not found"),
    ],
    ids=["p", "phase_epochs", "rates_inf", "rates_nan", "eval_rates_nan", "epochs", "ckpt"],
)
def test_user_errors_are_one_line_with_status_2(
    tiny_synthetic: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    status = main([*_tiny_fit_args(tiny_synthetic, tmp_path / "run"), *options])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and "Traceback" not in err
    assert [line for line in err.splitlines() if "error:" in line] == [
        line for line in err.splitlines() if line.startswith("rareid fit: error:")
    ]


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write into (root ignores permission bits)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        return folder / "run"
    (folder / "probe").unlink()
    if not os.access("/sys", os.F_OK):
        pytest.skip("running as root with no read-only filesystem to write into")
    return Path("/sys/rareid-run")  # sysfs refuses new entries, even to root


def test_read_only_run_folder_is_one_line(
    tiny_synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _unwritable_folder(tmp_path)
    status = main(_tiny_fit_args(tiny_synthetic, run))
    err = capsys.readouterr().err
    assert status == 2
    assert f"the run folder '{run}' is not writable" in err and "Traceback" not in err


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", *cli_module.HELPER_COMMANDS):
        assert f"  {name} " in out
    assert "Write the built-in synthetic dataset" in out


def test_helper_commands_return_their_status(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def helper(argv: list[str]) -> int:
        """A helper for the test."""
        calls.append(list(argv))
        return 3

    probe = types.ModuleType("rareid_probe_command")
    probe.main = helper  # type: ignore[attr-defined]
    table = {**cli_module.HELPER_COMMANDS, "probe": (probe.__name__, "A helper for the test.")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, probe.__name__, probe)
        patch.setattr(cli_module, "HELPER_COMMANDS", table)
        assert main(["probe", "--x", "1"]) == 3
        last_line = cli_module.helper_commands_help().splitlines()[-1]
        assert last_line.split() == ["probe", "A", "helper", "for", "the", "test."]
    assert calls == [["--x", "1"]]


def _console_script() -> Path:
    """The installed ``rareid`` script of this interpreter's environment."""
    script = Path(sys.executable).parent / "rareid"
    if not script.is_file():
        pytest.skip(f"no installed console script at {script}")
    return script


def test_installed_console_script_exit_status(tmp_path: Path) -> None:
    script = _console_script()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], env=env, capture_output=True, text=True, timeout=300
        )

    synth = run("synth", "--out", str(tmp_path / "data"), "--identities", "4")
    assert synth.returncode == 0, synth.stderr
    printed = run("fit", "--config", str(REPO / "conf/quickstart.yaml"), "--print_config")
    assert printed.returncode == 0, printed.stderr
    bad = run("fit", "--config", str(REPO / "conf/quickstart.yaml"), "--model.embeding_dim", "8")
    assert bad.returncode == 2
    for result in (synth, printed, bad):
        assert "RAReIDCLI object" not in result.stderr
        assert "PosixPath(" not in result.stderr


def test_third_party_noise_is_silenced_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import warnings

    from lightning.pytorch import Trainer
    from torch.utils._pytree import LeafSpec

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    lightning_logger = logging.getLogger(runtime.LIGHTNING_INFO_LOGGER)
    for old in list(lightning_logger.filters):
        lightning_logger.removeFilter(old)
    collect = Collect(level=logging.INFO)
    lightning_logger.addHandler(collect)
    monkeypatch.setattr(lightning_logger, "level", logging.INFO)
    try:
        Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
        assert any("litlogger" in m for m in messages)  # the noise exists
        messages.clear()
        monkeypatch.delenv("JSONARGPARSE_DEPRECATION_WARNINGS", raising=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runtime.quiet_third_party_noise()
            LeafSpec()
            Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    finally:
        lightning_logger.removeHandler(collect)
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    assert messages and not any("litlogger" in m for m in messages)
    assert os.environ["JSONARGPARSE_DEPRECATION_WARNINGS"] == "off"
    wandb_logger = runtime.default_loggers(tmp_path)[1]
    assert "anonymous" not in wandb_logger._wandb_init


def test_default_loggers_without_wandb_log_csv_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A minimal image without wandb trains with CSV metrics instead of failing at start."""
    from lightning.pytorch.loggers import CSVLogger

    real_find_spec = runtime.importlib.util.find_spec
    monkeypatch.setattr(
        runtime.importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "wandb" else real_find_spec(name, *rest),
    )
    loggers = runtime.default_loggers(tmp_path)
    assert [type(logger) for logger in loggers] == [CSVLogger]
    assert "wandb is not installed" in capsys.readouterr().err
