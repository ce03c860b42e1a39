"""From a match distance to a verdict a user can act on.

A verdict is ``same`` or ``different`` only where the calibration of the query's level holds a
usable threshold at the requested false-accept rate (FAR). A level the calibration never saw, a
FAR it was not asked for, or a threshold it marked unresolvable (fewer impostor pairs than
``1 / FAR``: the threshold is then set by a handful of pairs and the FAR it promises is not
measured), a level whose distances do not separate people (ROC AUC not clearly above 0.5) or a
FAR whose true-accept rate is below the calibration's floor gives ``uncalibrated``, with the
reason.
"""

from __future__ import annotations

import math
from typing import Any, Literal

Verdict = Literal["same", "different", "uncalibrated"]


def _far_key(entry: dict[str, Any], far: float) -> str | None:
    """The key of ``far`` in a level entry's per-FAR tables (keys are ``repr(float)``)."""
    for table in ("thresholds", "resolvable", "unresolved"):
        for key in entry.get(table) or {}:
            if math.isclose(float(key), far, rel_tol=1e-9):
                return key
    return None


def level_threshold(
    calibration: dict[str, Any] | None, level: int, far: float
) -> tuple[float | None, str]:
    """(threshold, "") where ``level`` has a usable threshold at ``far``, else (None, reason).

    Examples::

        >>> level_threshold(None, 1, 0.01)
        (None, 'no calibration')
    """
    if not calibration:
        return None, "no calibration"
    entry = (calibration.get("levels") or {}).get(str(level))
    if entry is None:
        return None, f"not calibrated: the calibration holds no pair at level {level}"
    if entry.get("usable") is False:
        return None, str(entry.get("unusable") or "the level's distances do not separate people")
    key = _far_key(entry, far)
    if key is None:
        known = ", ".join(f"{float(value):g}" for value in calibration.get("fars") or [])
        return None, f"not calibrated at FAR {far:g} (calibrated FARs: {known or 'none'})"
    reason = (entry.get("unresolved") or {}).get(key)
    if reason:
        return None, str(reason)
    if (entry.get("resolvable") or {}).get(key) is False or key not in entry.get("thresholds", {}):
        pairs = int(entry.get("impostor_pairs", 0))
        return None, (
            f"too few impostor pairs ({pairs}) for FAR {far:g}: needs at least "
            f"{math.ceil(1 / far - 1e-9)}"
        )
    return float(entry["thresholds"][key]), ""


def threshold_for(calibration: dict[str, Any] | None, level: int, far: float) -> float | None:
    """The usable threshold of ``level`` at ``far``, or None (see :func:`level_threshold`)."""
    return level_threshold(calibration, level, far)[0]


def usable_fars(calibration: dict[str, Any] | None, level: int) -> list[float]:
    """The FARs at which ``level`` has a usable threshold."""
    fars = [float(value) for value in (calibration or {}).get("fars") or []]
    return [far for far in fars if level_threshold(calibration, level, far)[0] is not None]


def verdict(distance: float, threshold: float | None) -> Verdict:
    """``same`` within the threshold, ``different`` beyond it, ``uncalibrated`` without one.

    Examples::

        >>> verdict(0.3, 0.5), verdict(0.7, 0.5), verdict(0.3, None)
        ('same', 'different', 'uncalibrated')
    """
    if threshold is None:
        return "uncalibrated"
    return "same" if distance <= threshold else "different"
