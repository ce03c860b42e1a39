"""The policies of ``rareid fit/validate/test/predict``, each checked without building a CLI:
the run folder (lock, ``--overwrite``), ``--ckpt_path`` resolution, the options a checkpoint
fixes, checkpoint selection on validation, and which errors become one line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from rareid.checkpointing import (
    checkpoint_to_load,
    evaluation_options,
    validation_ranks_checkpoints,
)
from rareid.levels import normalize_rates
from rareid.runs import (
    LOCK_NAME,
    TEMP_PREFIX,
    RunFailure,
    RunFolder,
    UsageError,
    is_usage_error,
    one_line_errors,
)


def earlier_run(root: Path, *names: str) -> Path:
    folder = root / "checkpoints"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_a_fresh_fit_refuses_an_earlier_runs_checkpoints(tmp_path: Path) -> None:
    earlier_run(tmp_path, "last.ckpt")
    with pytest.raises(UsageError, match="--overwrite"):
        RunFolder(tmp_path, fresh_fit=True).open()
    folder = RunFolder(tmp_path, fresh_fit=False).open()  # resuming, or evaluating
    assert (tmp_path / LOCK_NAME).is_file()
    folder.close()
    assert not (tmp_path / LOCK_NAME).exists()


def test_overwrite_deletes_the_checkpoints_only_when_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = earlier_run(tmp_path, "best.ckpt", "last.ckpt")
    run = RunFolder(tmp_path, fresh_fit=True, overwrite=True).open()
    assert sorted(path.name for path in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    run.apply_overwrite()
    run.close()
    assert not list(folder.iterdir())
    assert "--overwrite: deleted 2 checkpoint(s)" in capsys.readouterr().out


def test_one_process_per_folder_and_workers_leave_it_alone(tmp_path: Path) -> None:
    first = RunFolder(tmp_path).open()
    with pytest.raises(UsageError, match="in use by process"):
        RunFolder(tmp_path).open()
    worker = RunFolder(tmp_path, overwrite=True, rank_zero=False).open()  # a DDP rank
    worker.apply_overwrite()
    worker.close()
    assert (tmp_path / LOCK_NAME).is_file()  # still the first run's
    first.close()


def test_unfinished_saves_are_removed_with_a_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    earlier_run(tmp_path, f"{TEMP_PREFIX}last.ckpt")
    RunFolder(tmp_path).open().close()
    assert "removed 1 unfinished checkpoint file(s)" in capsys.readouterr().out


def test_ckpt_path_aliases_and_their_fallbacks(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    assert checkpoint_to_load("m.ckpt", tmp_path, "test") == ("m.ckpt", None)
    assert checkpoint_to_load("best", tmp_path, "test") == (str(folder / "best.ckpt"), None)
    path, note = checkpoint_to_load("last", tmp_path, "fit")
    assert path is None and note == f"no {folder / 'last.ckpt'} to resume from: starting a new run"
    earlier_run(tmp_path, "last.ckpt")
    path, note = checkpoint_to_load("best", tmp_path, "test")  # no validation ran: last
    assert path == str(folder / "last.ckpt") and "no best.ckpt" in str(note)
    with pytest.raises(UsageError, match="give only one of them"):
        checkpoint_to_load("last", tmp_path, "fit", overwrite=True)


def test_the_checkpoint_defines_the_evaluated_model() -> None:
    checkpoint = {
        "hyper_parameters": {"backbone": "resnet18", "rates": [1, 2], "img_size": [64, 32]},
        "datamodule_hyper_parameters": {"mean": [0.5, 0.5, 0.5]},
    }
    model = {"backbone": "resnet50", "rates": [1, 2, 3], "img_size": [256, 128]}
    data = {"rates": [1, 2, 3], "input_size": [256, 128]}
    defaults = (dict(model), dict(data))
    options, updates = evaluation_options(
        checkpoint, model, data, defaults, statistics=lambda name: ((0.1,) * 3, (0.2,) * 3)
    )
    assert options == {"backbone": "resnet18", "rates": [1, 2], "img_size": [64, 32]}
    assert updates == {
        "rates": [1, 2],
        "input_size": [64, 32],
        "mean": (0.5, 0.5, 0.5),  # saved with the data
        "std": (0.2, 0.2, 0.2),  # the backbone's
    }
    with pytest.raises(UsageError, match=r"model\.backbone"):
        evaluation_options(checkpoint, model, data, defaults, explicit=({"backbone"}, set()))


def test_one_held_out_identity_cannot_rank_checkpoints(capsys) -> None:
    def datamodule(held: int) -> SimpleNamespace:
        split = SimpleNamespace(val_ids=list(range(held)))
        return SimpleNamespace(fit_split=split, hparams=SimpleNamespace(val_identities=held))

    assert validation_ranks_checkpoints(datamodule(2))
    assert not validation_ranks_checkpoints(datamodule(1))
    assert "no best.ckpt is kept" in capsys.readouterr().out


class ThirdPartyError(Exception):
    """Stands for an option error of Lightning's (MisconfigurationException)."""


def foreign(error: Exception) -> Exception:
    """``error`` as raised by code outside rareid (its traceback ends outside the package)."""
    try:
        exec(compile("raise error", "/elsewhere/library.py", "exec"), {"error": error})
    except Exception as raised:
        return raised
    raise AssertionError("unreachable")


def ours(error: Exception) -> Exception:
    try:
        raise error
    except Exception as raised:  # raised here, under tests/ (not the package): see below
        return raised


def test_which_errors_are_the_users() -> None:
    usage = (ThirdPartyError,)
    assert is_usage_error(UsageError("x"), "parse", usage)
    assert not is_usage_error(ThirdPartyError("x"), "parse", usage)
    assert is_usage_error(ThirdPartyError("x"), "run", usage)
    # building the classes: a ValueError is the configuration's wherever it was raised
    assert is_usage_error(foreign(ValueError("bad precision")), "build", usage)
    assert not is_usage_error(foreign(TypeError("x")), "build", usage)
    # running: only what rareid raised on purpose
    assert not is_usage_error(foreign(ValueError("x")), "run", usage)
    assert not is_usage_error(ours(ValueError("x")), "run", usage)  # tests/ is not rareid
    with pytest.raises(ValueError) as raised:
        normalize_rates([])  # a check of rareid's own
    assert is_usage_error(raised.value, "run", usage)


def test_one_line_errors_prints_one_line_and_exits(capsys) -> None:
    with pytest.raises(SystemExit) as stop, one_line_errors(lambda: "rareid fit", lambda: "run"):
        raise UsageError("no such folder")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "rareid fit: error: no such folder\n"
    with pytest.raises(SystemExit) as stop, one_line_errors(lambda: "rareid fit", lambda: "run"):
        raise RunFailure("the disk is full")
    assert stop.value.code == 1
    with pytest.raises(KeyError), one_line_errors(lambda: "rareid", lambda: "run"):
        raise KeyError("a bug keeps its traceback")
