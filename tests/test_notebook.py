"""notebooks/quickstart.ipynb runs top to bottom on tiny data, and is stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.e2e
def test_notebook_runs_on_tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("RAREID_NB_DATA", str(tmp_path / "synthetic"))
    monkeypatch.setenv("RAREID_NB_CKPT", str(tmp_path / "missing.ckpt"))  # forces a tiny fit
    monkeypatch.setenv("RAREID_NB_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("RAREID_NB_IDENTITIES", "12")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    assert (tmp_path / "work" / "rank_list.png").is_file()
    assert (tmp_path / "work" / "tsne.png").is_file()
    assert (tmp_path / "work" / "search" / "rank_sheet_001.png").is_file()
    outputs = "".join(
        str(output.get("text", "")) for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "rank-1" in outputs
