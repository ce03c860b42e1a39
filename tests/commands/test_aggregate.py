"""``rareid aggregate``: mean, spread over splits and over trials, kept apart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rareid.cli import main
from rareid.commands.aggregate import aggregate, format_markdown


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_spread_over_splits_and_over_trials_by_hand() -> None:
    splits = [
        {"rank1": 0.5, "rank1_std": 0.1, "mAP": 0.4, "mAP_std": 0.0, "level1/rank1": 0.2},
        {"rank1": 0.7, "rank1_std": 0.3, "mAP": 0.4, "mAP_std": 0.0, "level1/rank1": 0.4},
        {"rank1": 0.9, "rank1_std": 0.0, "mAP": 0.4, "mAP_std": 0.0, "level1/rank1": None},
    ]
    spreads, left_out = aggregate(splits)
    rank1 = spreads["rank1"]
    assert rank1.mean == pytest.approx(0.7)
    # population std of (0.5, 0.7, 0.9): sqrt((0.04 + 0 + 0.04) / 3)
    assert rank1.std_over_splits == pytest.approx(math.sqrt(0.08 / 3))
    # pooled trial std: sqrt((0.01 + 0.09 + 0) / 3)
    assert rank1.std_over_trials == pytest.approx(math.sqrt(0.10 / 3))
    assert rank1.per_split == (0.5, 0.7, 0.9)
    # Equal means across splits: no spread over splits, whatever the trials did.
    assert spreads["mAP"].std_over_splits == pytest.approx(0.0, abs=1e-12)
    assert spreads["mAP"].std_over_trials == 0.0
    # Null in one split: left out and named, not averaged over fewer splits.
    assert "level1/rank1" not in spreads and left_out == ["level1/rank1"]


def test_one_split_has_no_spread_over_splits_and_keeps_its_trial_spread() -> None:
    spreads, _ = aggregate([{"rank1": 0.6, "rank1_std": 0.05}])
    assert spreads["rank1"].std_over_splits == 0.0
    assert spreads["rank1"].std_over_trials == pytest.approx(0.05)


def test_markdown_table_keeps_the_two_spreads_in_their_columns() -> None:
    spreads, _ = aggregate(
        [
            {"rank1": 0.5, "rank1_std": 0.1, "level2/rank1": 0.6, "hr/rank1": 0.8},
            {"rank1": 0.7, "rank1_std": 0.3, "level2/rank1": 0.6, "hr/rank1": 0.8},
        ]
    )
    table = format_markdown(spreads, 2)
    assert "| all levels | rank-1 | 60.0 | 10.0 | 22.4 |" in table
    assert "| level 2 | rank-1 | 60.0 | 0.0 | – |" in table
    assert "| HR query (r=1) | rank-1 | 80.0 | 0.0 | – |" in table


def test_aggregate_command_writes_markdown_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _write(
        tmp_path / "s0/results.json",
        {"rank1": 0.5, "rank1_std": 0.1, "level1/mAP": None, "checkpoint": "a.ckpt"},
    )
    second = _write(
        tmp_path / "s1/results.json",
        {"rank1": 0.7, "rank1_std": 0.3, "level1/mAP": 0.2, "checkpoint": None},
    )
    assert main(["aggregate", str(first), str(second), "--out", str(tmp_path / "agg")]) == 0
    out = capsys.readouterr().out
    assert "| all levels | rank-1 | 60.0 | 10.0 | 22.4 |" in out
    assert "left out (1, missing or null in some split): level1/mAP" in out
    data = json.loads((tmp_path / "agg" / "aggregate.json").read_text())
    assert data["splits"] == 2 and data["left_out"] == ["level1/mAP"]
    assert set(data["metrics"]) == {"rank1"}
    assert data["metrics"]["rank1"]["per_split"] == [0.5, 0.7]
    assert data["metrics"]["rank1"]["std_over_splits"] == pytest.approx(0.1)
    assert (tmp_path / "agg" / "aggregate.md").read_text().startswith("Mean over 2 split(s)")


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), ("{", "not JSON"), ('{"mAP": 1}', "not a rareid results.json")],
    ids=["missing", "not_json", "no_rank1"],
)
def test_aggregate_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["aggregate", str(path)]) == 2
    assert message in capsys.readouterr().err
