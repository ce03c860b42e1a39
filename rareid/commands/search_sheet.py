"""What ``rareid search`` shows a person: rank sheets (PNG pages), a console summary table,
and the full results in CSV and JSON.

The sheets are drawn for reading at 100 % zoom: every tile carries its file name (wrapped, never
cut), the distance that ordered it and the verdict, in a 9 pt font at 100 dpi; all queries are
drawn, ``QUERIES_PER_SHEET`` to a page (``rank_sheet_001.png``, ``rank_sheet_002.png``, ...).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rareid.deploy.verify.verdicts import level_threshold, usable_fars
from rareid.runs import atomic_write

#: Query rows per rank-sheet page.
QUERIES_PER_SHEET = 8
#: Matches per query drawn on the sheet (the CSV and JSON hold all of them).
SHEET_MATCHES = 10
#: Font size (points) of every text on the sheet; saved at ``SHEET_DPI`` so 1 pt is 1.39 px.
SHEET_FONT_PT = 9
SHEET_DPI = 100
#: Characters per line of a wrapped file name under a tile (fits a tile at 9 pt).
NAME_WRAP = 20
#: Matches per query in the console table (all are in the CSV and JSON).
TABLE_MATCHES = 3
#: Longest file name in the console table before its middle is elided.
TABLE_NAME_CHARS = 28
VERDICT_COLORS = {"same": "tab:green", "different": "tab:red", "uncalibrated": "0.35"}


def sheet_name(number: int) -> str:
    return f"rank_sheet_{number:03d}.png"


def write_results(
    rows: list[dict[str, Any]], out_dir: Path, run: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """``results.csv`` (one row per query x rank) and ``results.json``: ``run`` (what
    produced it: index, checkpoint hash, FAR, backend ...) and ``matches`` (the same rows)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "results.csv", out_dir / "results.json"
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    # Written whole or not at all (temporary file + rename): a full disk leaves no empty
    # results.csv that would block the rerun.
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields or ["query"], restval="")
    writer.writeheader()
    writer.writerows(rows)
    document = json.dumps({"run": run or {}, "matches": rows}, indent=1)
    for path, text in ((csv_path, table.getvalue()), (json_path, document)):
        data = text.encode()
        atomic_write(path, lambda handle, data=data: handle.write(data))
    return csv_path, json_path


def wrap_name(name: str, width: int = NAME_WRAP) -> str:
    """A file name broken into lines of about ``width`` characters: after a path separator
    (or a space, ``-`` or ``_``) when it can, and never inside the extension. The lines put
    together give the name back."""
    stem, dot, extension = name.rpartition(".")
    if not dot or "/" in extension or len(extension) > 5:
        stem, extension = name, ""
    else:
        extension = "." + extension
    pieces = [piece for piece in re.split(r"(?<=[/ _-])", stem) if piece]
    if pieces:
        pieces[-1] += extension
    else:
        pieces = [extension]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        while len(lines[-1]) + len(piece) > width and len(piece) - len(extension) > width:
            room = width - len(lines[-1])  # a word longer than a line: cut it, not its extension
            lines[-1] += piece[:room]
            piece = piece[room:]
            lines.append("")
        lines[-1] += piece
    return "\n".join(line for line in lines if line) or name


def shorten(name: str, limit: int = TABLE_NAME_CHARS) -> str:
    """``name`` with its middle elided when longer than ``limit`` (both ends stay readable)."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return name[:head] + "\u2026" + name[len(name) - (limit - 1 - head) :]


def shorten_path(name: str, limit: int = TABLE_NAME_CHARS) -> str:
    """``name`` within ``limit`` characters keeping its last folder and file (the camera is
    often the folder): the leading folders go first, then the middle of what is left."""
    if len(name) <= limit:
        return name
    parts = name.split("/")
    if len(parts) < 3:
        return shorten(name, limit)
    return shorten("\u2026/" + "/".join(parts[-2:]), limit)


def distance_text(match: dict[str, Any]) -> str:
    """The distance line under a match: with re-ranking, the re-ranked distance that ordered
    it and the prefix distance ``d`` its verdict was taken from, named apart."""
    if "rerank_distance" in match:
        return (
            f"re-ranked {match['rerank_distance']:.4g}\n"
            f"d {match['distance']:.4g}: {match['verdict']}"
        )
    return f"d {match['order_distance']:.4g}  {match['verdict']}"


def draw_rank_sheets(
    queries: list[dict[str, Any]],
    matches: list[list[dict[str, Any]]],
    out_dir: Path,
    title: str,
    caption: str = "",
    per_sheet: int = QUERIES_PER_SHEET,
    max_matches: int = SHEET_MATCHES,
) -> list[Path]:
    """PNG pages, one row per query: its crop at its own size (name, level, size, flags), then
    its ranked matches, each named, with the ordering distance and the verdict."""
    import cv2
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    out_dir.mkdir(parents=True, exist_ok=True)
    pages = max(1, -(-len(queries) // per_sheet))
    written = []
    for page in range(pages):
        part = slice(page * per_sheet, (page + 1) * per_sheet)
        page_queries, page_matches = queries[part], matches[part]
        columns = 1 + min(max((len(ranked) for ranked in page_matches), default=0), max_matches)
        rows = max(len(page_queries), 1)
        figure = Figure(figsize=(1.9 * columns, 3.3 * rows + 0.7))
        axes = figure.subplots(rows, columns, squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        for row, (query, ranked) in enumerate(zip(page_queries, page_matches, strict=True)):
            image = cv2.imread(str(query["path"]))
            if image is not None:
                axes[row][0].imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), interpolation="nearest")
            text = (
                f"QUERY\n{wrap_name(Path(query['name']).name)}\nlevel {query['level']}, "
                f"{query['height']}x{query['width']} px"
            )
            if query.get("flags"):
                text += "\n" + wrap_name("flagged: " + query["flags"])
            _label(axes[row][0], text, "black")
            for col, match in enumerate(ranked[:max_matches], start=1):
                image = cv2.imread(str(match["path"]))
                if image is not None:
                    axes[row][col].imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                _label(
                    axes[row][col],
                    f"#{col} {wrap_name(str(match['gallery']))}\n{distance_text(match)}",
                    VERDICT_COLORS[match["verdict"]],
                )
        heading = f"{title} - page {page + 1} of {pages}"
        figure.suptitle(heading + (f"\n{caption}" if caption else ""), fontsize=SHEET_FONT_PT + 2)
        figure.tight_layout(rect=(0, 0, 1, 1 - 0.5 / figure.get_figheight()))
        path = out_dir / sheet_name(page + 1)
        # bbox "tight" grows the page to every label (a label below a tile is no axis
        # decoration, so the layout alone would clip the last lines of a one-row page).
        atomic_write(path, lambda handle, figure=figure: _save(figure, handle))
        written.append(path)
    return written


def _save(figure: Any, handle: Any) -> None:
    figure.savefig(handle, format="png", dpi=SHEET_DPI, bbox_inches="tight", pad_inches=0.1)


def _label(axis: Any, text: str, color: str) -> None:
    axis.text(
        0.5,
        -0.03,
        text,
        transform=axis.transAxes,
        ha="center",
        va="top",
        fontsize=SHEET_FONT_PT,
        color=color,
        linespacing=1.1,
    )


def summary_table(
    queries: Sequence[dict[str, Any]],
    matches: Sequence[Sequence[dict[str, Any]]],
    distance_label: str,
    top: int = TABLE_MATCHES,
) -> list[str]:
    """Console lines: query, level, its first ``top`` matches with the distance that ordered
    them and the verdict, and the crop's flags."""
    lines = [f"{'query':<{TABLE_NAME_CHARS}}  lvl  top {top} matches ({distance_label}, verdict)"]
    for query, ranked in zip(queries, matches, strict=True):
        cells = "  ".join(
            f"{rank}. {shorten_path(str(match['gallery']))} {match['order_distance']:.4g} "
            f"{match['verdict']}"
            for rank, match in enumerate(ranked[:top], start=1)
        )
        name = shorten_path(query.get("label", query["name"]))
        line = f"{name:<{TABLE_NAME_CHARS}}  {query['level']:>3}  {cells}"
        if query.get("flags"):
            line += f"  [flagged: {query['flags']}]"
        lines.append(line)
    return lines


def calibration_lines(calibration: dict[str, Any] | None, num_levels: int, far: float) -> list[str]:
    """One line per level: usable at which FARs and the threshold of the verdicts, or why not."""
    if not calibration:
        return [
            "no calibration: every verdict is 'uncalibrated' (run `rareid calibrate`)",
        ]
    lines = []
    for level in range(1, num_levels + 1):
        threshold, reason = level_threshold(calibration, level, far)
        fars = usable_fars(calibration, level)
        if threshold is not None:
            lines.append(
                f"level {level}: usable at FAR {', '.join(f'{value:g}' for value in fars)}; "
                f"same person if distance <= {threshold:.4g} (FAR {far:g})"
            )
        elif fars:
            lines.append(
                f"level {level}: uncalibrated at FAR {far:g} ({reason}); usable at FAR "
                + ", ".join(f"{value:g}" for value in fars)
            )
        else:
            lines.append(f"level {level}: uncalibrated ({reason})")
    if not any(usable_fars(calibration, level) for level in range(1, num_levels + 1)):
        lines.append("no level has a usable threshold: every verdict is 'uncalibrated'")
    return lines


def calibration_caption(calibration: dict[str, Any] | None, num_levels: int, far: float) -> str:
    """A short line for the rank sheet: which levels give verdicts at ``far``."""
    usable = [
        level
        for level in range(1, num_levels + 1)
        if level_threshold(calibration, level, far)[0] is not None
    ]
    if not usable:
        return f"verdicts: none (no level has a usable threshold at FAR {far:g})"
    others = [level for level in range(1, num_levels + 1) if level not in usable]
    text = f"verdicts at FAR {far:g} for levels {', '.join(map(str, usable))}"
    if others:
        text += f"; levels {', '.join(map(str, others))} uncalibrated"
    return text
