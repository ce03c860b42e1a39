"""Frozen MLR split files: written once, read by fit and test, same seed -> same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rareid.data.datamodule import ReIDDataModule
from rareid.data.splitfile import (
    SplitFileError,
    read_split_file,
    split_document,
    write_split_file,
)
from tests.data.fixtures import market_datamodule, write_market_tree

SIZE = (32, 16)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("market_split")
    write_market_tree(
        root, train_ids=tuple(range(2, 12)), cameras=(1, 2), size=(32, 16), extras=False
    )
    return str(root)


def make_dm(root: str, **kwargs) -> ReIDDataModule:
    defaults = {"input_size": SIZE, "k": 2, "trials": 3, "val_identities": 2, "val_trials": 2}
    return market_datamodule(root, **{**defaults, **kwargs})


def assert_same_table(a, b) -> None:
    assert [a.paths[i] for i in a.path_index] == [b.paths[i] for i in b.path_index]
    for key in ("pid", "camid", "role", "trial", "rate", "level", "gallery_trials", "synthesize"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_same_seed_same_bytes(root, tmp_path):
    first, second, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    digest = write_split_file(make_dm(root, seed=1), first)
    assert write_split_file(make_dm(root, seed=1), second) == digest
    assert first.read_bytes() == second.read_bytes()
    assert write_split_file(make_dm(root, seed=2), other) != digest
    document = json.loads(first.read_text())
    assert document["sha256"] == digest
    assert len(document["val_ids"]) == 2 and len(document["train_ids"]) == 8
    assert document["test_ids"] == [3, 5, 40]
    trials = document["stages"]["test"]["trials"]
    assert len(trials) == 3 and all(q["file"].startswith("Market-1501") for q in trials[0])
    assert {q["rate"] for t in trials for q in t} <= {2.0, 3.0, 4.0}
    with pytest.raises(FileExistsError, match="overwrite"):
        write_split_file(make_dm(root, seed=1), first)


def test_split_file_reproduces_the_evaluation_sets(root, tmp_path):
    path = tmp_path / "split.json"
    original = make_dm(root, seed=4)
    digest = write_split_file(original, path)
    # Another seed: without the file it would draw other ids, rates and galleries.
    frozen = make_dm(root, seed=9, split_file=str(path))
    assert frozen.split_hash == digest == original.split_hash
    for stage in ("test", "val"):
        assert_same_table(frozen.eval_dataset(stage).table, original.eval_dataset(stage).table)
    assert frozen.fit_split.val_ids == original.fit_split.val_ids
    assert frozen.fit_split.train_ids == original.fit_split.train_ids
    train_paths = {r.path for r in frozen.fit_split.train}
    assert train_paths == {r.path for r in original.fit_split.train}
    unfrozen = make_dm(root, seed=9)
    assert unfrozen.fit_split.val_ids != original.fit_split.val_ids
    assert unfrozen.split_hash != digest


def test_altered_or_mismatched_split_file_is_an_error(root, tmp_path):
    path = tmp_path / "split.json"
    write_split_file(make_dm(root), path)
    document = json.loads(path.read_text())
    document["stages"]["test"]["trials"][0][0]["rate"] = 2.5
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(document))
    with pytest.raises(SplitFileError, match="altered"):
        read_split_file(altered)
    with pytest.raises(SplitFileError, match="rates"):
        make_dm(root, rates=[1, 2, 4, 8], split_file=str(path)).eval_dataset("test")
    with pytest.raises(SplitFileError, match="does not exist"):
        make_dm(root, split_file=str(tmp_path / "none.json")).eval_dataset("test")


def test_split_file_without_validation(root, tmp_path):
    dm = make_dm(root, val_identities=0)
    document = split_document(dm)
    assert "val" not in document["stages"] and document["val_ids"] == []
    path = tmp_path / "split.json"
    write_split_file(dm, path)
    assert not make_dm(root, split_file=str(path)).has_validation


def test_rareid_splits_command(root, tmp_path, capsys):
    from rareid.cli import main

    config = tmp_path / "conf.yaml"
    config.write_text(
        "model:\n  backbone: resnet50\n"
        f"data:\n  dataset: market1501\n  root: {root}\n  input_size: [32, 16]\n"
        "  val_identities: 2\n  trials: 3\n"
    )
    out = tmp_path / "out" / "split.json"
    assert main(["splits", "--config", str(config), "--out", str(out)]) == 0
    digest = json.loads(out.read_text())["sha256"]
    assert digest in capsys.readouterr().out
    expected = make_dm(root, val_trials=1).split_hash
    assert digest == expected
    assert main(["splits", "--config", str(config), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["splits", "--config", str(config), "--out", str(out), "--overwrite"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"data:\n  root: {root}\n  dataset: market1501\n  gallery_mode: few\n")
    assert main(["splits", "--config", str(bad), "--out", str(tmp_path / "x.json")]) == 2
    assert "gallery_mode" in capsys.readouterr().err
    assert Path(out).is_file()
