"""``rareid calibrate``'s picture: the ROC per level and the distance distributions, with
what each panel says about separability and the thresholds stored (or why none is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rareid.runs import atomic_write


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


def plot_calibration(
    genuine: dict[int, np.ndarray],
    impostor: dict[int, np.ndarray],
    calibration: dict[str, Any],
    out_path: str | Path,
) -> Path:
    """ROC per level (log FAR) with the calibrated points, and the distance distributions;
    a level without a usable threshold says so in its title."""
    import matplotlib

    from rareid.deploy.verify.calibrate import roc_curve

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [
        level
        for level in sorted(genuine)
        if np.size(genuine[level]) and np.size(impostor.get(level, []))
    ]
    figure, axes = plt.subplots(
        1, 1 + len(shown), figsize=(4 + 3.4 * len(shown), 3.6), squeeze=False
    )
    roc_axis, hist_axes = axes[0][0], axes[0][1:]
    for level in shown:
        far, tar = roc_curve(genuine[level], impostor[level])
        keep = far > 0
        (line,) = roc_axis.plot(far[keep], tar[keep], label=f"level {level}")
        entry = calibration["levels"].get(str(level)) or {}
        for key in entry.get("thresholds", {}):
            roc_axis.plot(
                entry["far"][key] or float(key),
                entry["tar"][key],
                "o",
                color=line.get_color(),
                markersize=3,
            )
    roc_axis.set_xscale("log")
    roc_axis.set_xlabel("false accept rate")
    roc_axis.set_ylabel("true accept rate")
    roc_axis.set_title("ROC per query level", fontsize=10)
    roc_axis.legend(fontsize=9)
    styles = ("--", ":", "-.")
    for axis, level in zip(hist_axes, shown, strict=True):
        bins = np.histogram_bin_edges(np.concatenate([genuine[level], impostor[level]]), 40)
        axis.hist(impostor[level], bins=bins, alpha=0.6, density=True, label="impostor")
        axis.hist(genuine[level], bins=bins, alpha=0.6, density=True, label="genuine")
        entry = calibration["levels"].get(str(level)) or {}
        thresholds = entry.get("thresholds", {})
        for style, (key, value) in zip(styles, thresholds.items(), strict=False):
            axis.axvline(
                value, color="k", linewidth=0.8, linestyle=style, label=f"FAR {float(key):g}"
            )
        refused = entry.get("refused_thresholds", {})
        for style, (key, value) in zip(styles, refused.items(), strict=False):
            axis.axvline(
                value,
                color="0.6",
                linewidth=0.8,
                linestyle=style,
                label=f"FAR {float(key):g} (refused)",
            )
        axis.set_title(
            histogram_title(calibration, str(level)),
            fontsize=8,
            color="black" if thresholds else "tab:red",
        )
        axis.set_xlabel("distance")
        axis.legend(fontsize=9)
    figure.tight_layout()
    out = Path(out_path)
    try:
        atomic_write(out, lambda handle: figure.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(figure)
    return out
