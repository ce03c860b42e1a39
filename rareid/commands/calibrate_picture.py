"""The words on ``rareid calibrate``'s picture: per level, what the distributions' panel says
about separability and the thresholds stored (or why none is)."""

from __future__ import annotations

from typing import Any


def histogram_title(calibration: dict[str, Any], level: str) -> str:
    """The title of a level's distributions: pairs, AUC, TAR and false alarms per search at
    each stored threshold, or why the level gives no verdict."""
    entry = calibration["levels"].get(level) or {}
    lines = [
        f"level {level}: {entry.get('genuine_pairs', 0)} genuine / "
        f"{entry.get('impostor_pairs', 0)} impostor pairs"
    ]
    if entry.get("auc") is not None:
        low, high = entry["auc_ci"]
        lines.append(f"AUC {entry['auc']:.3f} (95 % CI {low:.3f}-{high:.3f})")
    per_search = calibration.get("false_same_per_search") or {}
    for key in entry.get("thresholds", {}):
        cell = f"FAR {float(key):g}: TAR {entry['tar'][key]:.3f}"
        if key in per_search:
            cell += f", {per_search[key]:.3g} false 'same'/search"
        lines.append(cell)
    if entry.get("usable") is False:
        lines.append("UNUSABLE: not separable, verdicts 'uncalibrated'")
    elif not entry.get("thresholds"):
        reasons = set((entry.get("unresolved") or {}).values())
        short = "TAR below the floor" if any("TAR" in r for r in reasons) else "too few pairs"
        lines.append(f"UNCALIBRATED: {short}")
    return "\n".join(lines)
