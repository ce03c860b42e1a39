"""User mistakes through ``main([...])``: one ``error:`` line, exit status 2, nothing lost.

Every case runs on a tiny synthetic dataset with one-epoch, two-step fits.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from rareid.cli import main
from tests.helpers import one_error_line, tiny_run_args


def _run_args(data: Path, run: Path, options: dict | None = None) -> list[str]:
    """A one-epoch, two-step run on ``data`` in ``run``."""
    settings = {
        "trainer.max_epochs": 1,
        "trainer.limit_train_batches": 2,
        "trainer.enable_model_summary": False,
        "report.rank_list_queries": 1,
        **(options or {}),
    }
    return tiny_run_args(data, run, settings)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("usage") / "synthetic"
    assert main(["synth", "--out", str(out), "--identities", "12", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def fitted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run folder (checkpoints/last.ckpt, config.yaml)."""
    run = tmp_path_factory.mktemp("fitted") / "run"
    assert main(["fit", *_run_args(data, run)]) == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return run


@pytest.fixture
def earlier_run(fitted: Path, tmp_path: Path) -> Path:
    """A copy of ``fitted`` that a test may damage."""
    run = tmp_path / "run"
    shutil.copytree(fitted, run)
    return run


# --------------------------------------------------------------------- 1: --overwrite
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data.p": 50}, "p = 50 distinct identities"),
        ({"model.backbone": "no_such_net"}, "no_such_net"),
        ({"trainer.max_epochs": -3}, "max_epochs"),
    ],
    ids=["data", "model", "trainer"],
)
def test_overwrite_checks_everything_before_deleting(
    data: Path,
    earlier_run: Path,
    capsys: pytest.CaptureFixture[str],
    options: dict,
    message: str,
) -> None:
    before = _tree_digest(earlier_run)
    status = main(["fit", *_run_args(data, earlier_run, options), "--overwrite"])
    assert status == 2
    assert message in one_error_line(capsys.readouterr().err, "fit")
    assert _tree_digest(earlier_run) == before  # checkpoints and config.yaml untouched


def test_overwrite_with_resume_is_a_usage_error(
    data: Path, earlier_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree_digest(earlier_run)
    status = main(["fit", *_run_args(data, earlier_run), "--overwrite", "--ckpt_path", "last"])
    assert status == 2
    line = one_error_line(capsys.readouterr().err, "fit")
    assert "--overwrite" in line and "--ckpt_path" in line
    assert _tree_digest(earlier_run) == before


def test_overwrite_deletes_the_old_checkpoints_once_everything_is_checked(
    data: Path, earlier_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = (earlier_run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    assert main(["fit", *_run_args(data, earlier_run), "--overwrite"]) == 0
    assert "--overwrite: deleted 1 checkpoint(s)" in capsys.readouterr().out
    assert (earlier_run / "checkpoints" / "last.ckpt").stat().st_mtime_ns != old


# --------------------------------------------------------------------- 13: unknown options
@pytest.mark.parametrize(
    ("args", "prog", "message"),
    [
        (["fit", "--bogus", "1"], "rareid fit", "unrecognized arguments: --bogus 1"),
        (["fit", "--data.p"], "rareid fit", "--data.p: expected one argument"),
        (["fit", "--data.p", "abc"], "rareid fit", "data.p"),
        (["test", "--model.embeding_dim", "8"], "rareid test", "--model.embeding_dim"),
        (["fitt"], "rareid", "unknown subcommand 'fitt'"),
        ([], "rareid", "subcommand"),
        (["synth", "--out", "unused", "--bogus"], "rareid synth", "--bogus"),
        (["aggregate"], "rareid aggregate", "required: results"),
        (["splits", "--out", "x.json"], "rareid splits", "required: --config"),
    ],
    ids=[
        "unknown",
        "missing_value",
        "bad_value",
        "misspelt",
        "subcommand",
        "no_subcommand",
        "synth",
        "aggregate",
        "splits",
    ],
)
def test_bad_options_are_one_line_pointing_to_help(
    capsys: pytest.CaptureFixture[str], args: list[str], prog: str, message: str
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # no usage text
    assert err.startswith(f"{prog}: error: ") and message in err
    assert f"see {prog} --help" in err


# --------------------------------------------------------------------- 14: foreign checkpoints
class _RunsCode:
    """Pickles as a call of ``os.system``: loading it without ``weights_only`` runs a command."""

    def __reduce__(self) -> tuple:
        import os

        return (os.system, ("echo this must never run",))


def _write_foreign_checkpoint(kind: str, path: Path) -> None:
    import torch

    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch: 3\nnot a checkpoint\n")
    elif kind == "state_dict":
        torch.save({"backbone.conv1.weight": torch.zeros(2, 3)}, path)
    elif kind == "code":
        torch.save({"state_dict": {}, "payload": _RunsCode()}, path)
    elif kind == "truncated":
        torch.save({"state_dict": {"weight": torch.zeros(4096)}}, path)
        path.write_bytes(path.read_bytes()[:5000])


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "is an empty file"),
        ("text", "is a text file"),
        ("state_dict", "holds a plain state dict"),
        ("code", "holds pickled Python objects (posix.system"),
        ("truncated", "is damaged or truncated"),
    ],
)
def test_foreign_checkpoints_are_named_in_one_line(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    message: str,
) -> None:
    path = tmp_path / f"{kind}.ckpt"
    _write_foreign_checkpoint(kind, path)
    status = main(["test", *_run_args(data, tmp_path / "run"), "--ckpt_path", str(path)])
    captured = capsys.readouterr()
    assert status == 2
    line = one_error_line(captured.err, "test")
    assert f"checkpoint '{path}' {message}" in line
    assert "weights_only" not in captured.err and "this must never run" not in captured.out


# --------------------------------------------------------------------- 9: options vs checkpoint
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--model.backbone", "resnet50"],
            "model.backbone: the checkpoint was trained with 'resnet18'",
        ),
        (
            ["--model.embedding_dim", "2048"],
            "model.embedding_dim: the checkpoint was trained with 32",
        ),
        (["--model.use_masks", "false"], "model.use_masks: the checkpoint was trained with True"),
    ],
    ids=["backbone", "embedding_dim", "use_masks"],
)
def test_options_equal_to_their_default_still_contradict_the_checkpoint(
    data: Path,
    fitted: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: list[str],
    message: str,
) -> None:
    # Each value is the parser's default: the user asked for it all the same.
    ckpt = fitted / "checkpoints" / "last.ckpt"
    args = ["test", *_run_args(data, tmp_path / "t"), *option, "--ckpt_path", str(ckpt)]
    assert main(args) == 2
    assert message in one_error_line(capsys.readouterr().err, "test")


def test_options_not_given_come_from_the_checkpoint(
    data: Path, fitted: Path, tmp_path: Path
) -> None:
    from rareid.cli import run_cli

    # No config file: the model section is all defaults (resnet50, d = 2048), none given.
    args = [
        "test",
        f"--data.root={data}",
        "--data.trials=1",
        "--data.num_workers=0",
        "--trainer.accelerator=cpu",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--report.tsne=false",
        "--report.rank_list_queries=1",
        f"--trainer.default_root_dir={tmp_path / 't'}",
        f"--ckpt_path={fitted / 'checkpoints' / 'last.ckpt'}",
    ]
    cli = run_cli(args)
    assert cli.model.hparams.backbone == "resnet18"
    assert cli.model.hparams.embedding_dim == 32
    assert tuple(cli.datamodule.input_size) == (64, 32)


# --------------------------------------------------------------------- 5: NaN and negative rates
@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("lr", "nan", "nan"),  # refused by the parser itself
        ("lr", ".nan", "nan"),  # YAML's NaN, as a config file gives it
        ("lr", "-0.001", "-0.001"),
        ("lr", "0", "0"),
        ("mask_lr", ".nan", "nan"),
        ("mask_lr", ".inf", "inf"),
        ("mask_lr", "-1", "-1"),
        ("weight_decay", "-0.1", "-0.1"),
        ("verif_weight", ".nan", "nan"),
        ("verif_weight", "-0.5", "-0.5"),
        ("gamma", ".inf", "inf"),
        ("label_smoothing", "1.5", "1.5"),
    ],
)
def test_bad_learning_rates_and_weights_are_usage_errors(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    shown: str,
) -> None:
    status = main(["fit", *_run_args(data, tmp_path / "run"), f"--model.{option}={value}"])
    assert status == 2
    line = one_error_line(capsys.readouterr().err, "fit")
    assert option in line and shown in line
    assert not (tmp_path / "run" / "checkpoints").exists()


# --------------------------------------------------------------------- 12: rates without 1
def test_rates_without_one_need_the_explicit_option(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rareid.data.datamodule import ReIDDataModule

    status = main(["fit", *_run_args(data, tmp_path / "run", {"data.rates": [2, 3, 4]})])
    assert status == 2
    line = one_error_line(capsys.readouterr().err, "fit")
    assert "rates: [2.0, 3.0, 4.0] has no rate 1" in line and "rates_without_hr" in line
    datamodule = ReIDDataModule(root=str(data), rates=[2, 3, 4], rates_without_hr=True)
    assert datamodule.rates == (2.0, 3.0, 4.0)


# --------------------------------------------------------------------- 4: test results
def test_test_keeps_earlier_results_unless_overwrite(
    data: Path, fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t"
    results = out / "results" / "results.json"
    results.parent.mkdir(parents=True)
    results.write_text('{"rank1": 0.5, "checkpoint": "another.ckpt"}')
    ckpt = str(fitted / "checkpoints" / "last.ckpt")
    args = ["test", *_run_args(data, out), "--ckpt_path", ckpt]
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err, "test")
    assert str(results) in line and "--report.overwrite true" in line
    assert "another.ckpt" in results.read_text()
    assert main([*args, "--report.overwrite", "true"]) == 0
    assert ckpt in results.read_text()


def test_rank_list_queries_zero_is_a_usage_error(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["fit", *_run_args(data, tmp_path / "run", {"report.rank_list_queries": 0})])
    assert status == 2
    assert "report.rank_list_queries" in one_error_line(capsys.readouterr().err, "fit")


# --------------------------------------------------------------------- 5: a loss that turns NaN
def test_nan_loss_stops_the_fit_and_keeps_the_good_checkpoint(
    data: Path,
    earlier_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    from rareid.models.module import RAReIDModule

    training_step = RAReIDModule.training_step

    def poisoned(self: RAReIDModule, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = training_step(self, batch, batch_idx)
        return loss * float("nan") if self.trainer.global_step == 3 else loss

    monkeypatch.setattr(RAReIDModule, "training_step", poisoned)
    last = earlier_run / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    args = _run_args(data, earlier_run, {"trainer.max_epochs": 3})
    assert main(["fit", *args, "--ckpt_path", "last"]) == 1  # resumes at step 2
    line = one_error_line(capsys.readouterr().err, "fit")
    assert "the training loss is nan at step 3" in line
    assert last.read_bytes() == good  # the NaN weights were never saved


# --------------------------------------------------------------------- 15: a disk that fills up
def test_full_disk_during_a_save_is_one_line_and_keeps_old_checkpoints(
    data: Path,
    earlier_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno
    import os

    import torch

    from rareid import checkpointing

    def full_disk(checkpoint: object, handle: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpointing.torch, "save", full_disk)
    last = earlier_run / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    args = _run_args(data, earlier_run, {"trainer.max_epochs": 2})
    assert main(["fit", *args, "--ckpt_path", "last"]) == 1
    line = one_error_line(capsys.readouterr().err, "fit")
    assert f"no space left to write {last}" in line
    assert last.read_bytes() == good
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".tmp-")]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0


def test_predict_refuses_an_existing_output_in_one_line(
    data: Path, fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p"
    target = out / "predictions" / "embeddings.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"earlier")
    ckpt = str(fitted / "checkpoints" / "last.ckpt")
    assert main(["predict", *_run_args(data, out), "--ckpt_path", ckpt]) == 2
    line = one_error_line(capsys.readouterr().err, "predict")
    assert str(target) in line and "--predict_writer.overwrite true" in line
    assert target.read_bytes() == b"earlier"


# --------------------------------------------------------------------- 6: useless validation
def test_validation_on_one_identity_is_flagged_and_best_falls_back_to_last(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    options = {"data.val_identities": 1, "trainer.check_val_every_n_epoch": 1}
    assert main(["fit", *_run_args(data, run, options)]) == 0
    assert "validation holds 1 identity" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]


# --------------------------------------------------------------------- 15: dataset options
def test_unknown_dataset_option_is_one_line(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {"data.dataset_options": {"bogus_key": 1}}
    assert main(["fit", *_run_args(data, tmp_path / "run", options)]) == 2
    line = one_error_line(capsys.readouterr().err, "fit")
    assert "'bogus_key'" in line and "valid options are" in line


# --------------------------------------------------------------------- 15: embed precision
@pytest.mark.parametrize("dtype_name", ["float16", "float64"])
def test_embed_converts_other_float_precisions(dtype_name: str, one_torch_thread: None) -> None:
    import torch

    from rareid.models.module import RAReIDModule
    from tests.helpers import tiny_module_kwargs

    model = RAReIDModule(**tiny_module_kwargs(use_masks=False)).eval()
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    expected = model.embed(images, [4, 1])
    embeddings = model.embed(images.to(getattr(torch, dtype_name)), [4, 1])
    assert embeddings.dtype == torch.float32
    tolerance = 5e-2 if dtype_name == "float16" else 1e-5
    torch.testing.assert_close(embeddings, expected, atol=tolerance, rtol=tolerance)
