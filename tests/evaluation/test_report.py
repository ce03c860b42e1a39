"""Results table and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rareid.callbacks.report import EvaluationReport
from rareid.evaluation.report import format_results_table, results_to_json

RESULTS = {
    "rank1": torch.tensor(0.81234),
    "rank1_std": torch.tensor(0.01234),
    "rank5": 0.9,
    "rank5_std": 0.0,
    "rank10": 0.95,
    "rank10_std": 0.001,
    "rank20": 0.99,
    "rank20_std": 0.002,
    "mAP": 0.6049,
    "mAP_std": 0.0151,
    "level1/rank1": 0.5,
    "level1/rank1_std": 0.02,
    "level1/mAP": 0.4,
    "level1/mAP_std": 0.03,
    "level3/rank1": 0.9,
    "level3/rank1_std": 0.01,
    "level3/mAP": 0.7,
    "level3/mAP_std": 0.0,
    "hr/rank1": 0.95,
    "hr/rank1_std": 0.005,
    "hr/mAP": 0.8,
    "hr/mAP_std": 0.0,
}


def test_terminal_table() -> None:
    table = format_results_table(RESULTS, [1, 2, 3, 4])
    lines = table.splitlines()
    assert lines[0].split() == ["queries", "rank-1", "rank-5", "rank-10", "rank-20", "mAP"]
    assert "81.2 ± 1.2" in lines[2] and "60.5 ± 1.5" in lines[2] and "90.0 ± 0.0" in lines[2]
    rows = [line.split("  ")[0].strip() for line in lines[2:]]
    assert rows == ["all levels", "level 3 (r=2)", "level 1 (r=4)", "HR query (r=1)"]
    assert "50.0 ± 2.0" in lines[4] and "40.0 ± 3.0" in lines[4] and "–" in lines[4]
    assert "95.0 ± 0.5" in lines[5]
    assert len({len(line) for line in lines}) == 1  # aligned


def test_markdown_table_and_missing_columns() -> None:
    table = format_results_table(
        {"rank1": 0.5, "rank1_std": 0.1, "mAP": 0.25, "mAP_std": 0.05}, (1, 2)
    )
    assert table.splitlines()[0].split() == ["queries", "rank-1", "mAP"]
    md = format_results_table(RESULTS, [1, 2, 3, 4], style="markdown").splitlines()
    assert md[0] == "| queries | rank-1 | rank-5 | rank-10 | rank-20 | mAP |"
    assert md[1].startswith("|---|---:")
    assert (
        md[2] == "| all levels | 81.2 ± 1.2 | 90.0 ± 0.0 | 95.0 ± 0.1 | 99.0 ± 0.2 | 60.5 ± 1.5 |"
    )
    with pytest.raises(ValueError, match="style"):
        format_results_table(RESULTS, [1, 2], style="html")


def test_results_to_json() -> None:
    data = json.loads(results_to_json({**RESULTS, "hr/rank5": float("nan")}, dataset="market"))
    assert data["rank1"] == pytest.approx(0.81234) and data["hr/rank5"] is None
    assert data["dataset"] == "market"


def test_skipped_queries_column_and_counts_in_json() -> None:
    counted = {
        **RESULTS,
        "queries": torch.tensor(400),
        "skipped": torch.tensor(96),
        "level1/queries": 200,
        "level1/skipped": 60,
        "level3/queries": 200,
        "level3/skipped": 36,
        "hr/queries": 100,
        "hr/skipped": 0,
    }
    lines = format_results_table(counted, [1, 2, 3, 4]).splitlines()
    assert lines[0].split()[-1] == "skipped"
    assert lines[2].endswith("96/400") and lines[3].endswith("36/200")
    assert lines[4].endswith("60/200") and lines[5].endswith("0/100")
    assert len({len(line) for line in lines}) == 1
    md = format_results_table(counted, [1, 2, 3, 4], style="markdown").splitlines()
    assert md[0].endswith("| mAP | skipped |") and md[1].count("---:") == 6
    assert md[2].endswith("| 96/400 |")
    per_trial = {"trials": [0, 1], "all": {"queries": [200, 200], "skipped": [50, 46]}}
    data = json.loads(results_to_json(counted, query_counts=per_trial))
    assert data["skipped"] == 96 and isinstance(data["skipped"], int)
    assert data["level1/queries"] == 200
    assert data["query_counts"]["all"]["skipped"] == [50, 46]


def test_report_callback_writes_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The callback of `rareid test`: results.json carries the per-trial counts, the printed
    # table the skipped column.
    per_trial = {"trials": [0, 1], "all": {"queries": [20, 20], "skipped": [3, 5]}}
    module = SimpleNamespace(
        test_results={"rank1": 0.5, "rank1_std": 0.1, "queries": 40, "skipped": 8},
        rates=[1, 2],
        test_metric=SimpleNamespace(query_counts=per_trial),
    )
    trainer = SimpleNamespace(datamodule=None, loggers=[], ckpt_path=None)
    EvaluationReport(output_dir=str(tmp_path), tsne=False)._write(trainer, module, {}, None)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["skipped"] == 8 and data["query_counts"]["all"]["skipped"] == [3, 5]
    printed = capsys.readouterr().out
    assert "skipped" in printed and "8/40" in printed
    assert "8/40" in (tmp_path / "results.md").read_text()


def test_reranked_rows_follow_the_plain_rows() -> None:
    from rareid.evaluation.report import format_results_table

    results = {
        "rank1": 0.5, "mAP": 0.4, "level1/rank1": 0.3, "level1/mAP": 0.2,
        "queries": 10, "skipped": 1, "level1/queries": 10, "level1/skipped": 1,
        "rerank/rank1": 0.6, "rerank/mAP": 0.5, "rerank/level1/rank1": 0.35,
        "rerank/level1/mAP": 0.25,
    }  # fmt: skip
    lines = format_results_table(results, (1, 2, 3, 4), style="markdown").splitlines()
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names == [
        "all levels", "level 1 (r=4)", "all levels, re-ranked", "level 1 (r=4), re-ranked",
    ]  # fmt: skip
    assert "60.0" in lines[4] and "1/10" in lines[4]  # re-ranked scores, the same query count
