"""The formats of ``rareid export``, one function each, chosen from :data:`EXPORTERS`: every one
takes the loaded model and the :class:`ExportRequest` and returns the lines to print (or raises
:class:`DriftRefused` after printing its drift table, having written nothing)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rareid.deploy.model.inference import Preprocess
    from rareid.models.embedding import EmbeddingModel


@dataclass
class ExportRequest:
    """What the command line asked for (paths already checked)."""

    checkpoint: Path
    out: Path
    metadata: dict[str, str]
    level: int | None = None
    quantize: str | None = None
    calibration: Path | None = None
    samples: int = 512
    heldout: Path | None = None
    max_drop: float = 1.0
    #: Calibrated thresholds the bundle carries (an index's ``calibration``).
    calibration_thresholds: dict[str, Any] | None = None


class DriftRefused(Exception):
    """The exported runtime loses more than ``--max-drop`` points at some level."""


def export_plain_onnx(
    model: EmbeddingModel, preprocess: Preprocess, request: ExportRequest
) -> list[str]:
    """float32 ONNX (``level``: one input), checked against PyTorch on every level."""
    from rareid.deploy.model.export import ONNX_TOLERANCE, check_onnx, export_onnx

    export_onnx(model, request.out, request.metadata, level=request.level)
    differences = check_onnx(model, request.out, only_level=request.level)
    cells = ", ".join(f"level {level}: {value:.2e}" for level, value in differences.items())
    worst = max(differences.values())
    if worst > ONNX_TOLERANCE:
        raise DriftRefused(
            f"onnxruntime differs from PyTorch by {worst:.2e} (> {ONNX_TOLERANCE:g}); "
            f"{request.out} was written for inspection"
        )
    inputs = "images only, level " + str(request.level) if request.level else "images, levels"
    return [
        f"wrote {request.out} (inputs: {inputs}); onnxruntime vs PyTorch max abs difference "
        f"{cells}",
        f"check passed (tolerance {ONNX_TOLERANCE:g} in float32)",
    ]


def export_torch_program(
    model: EmbeddingModel, preprocess: Preprocess, request: ExportRequest
) -> list[str]:
    from rareid.deploy.model.export import export_torch

    export_torch(model, request.out)
    return [f"wrote {request.out} (torch.export.load(path).module()(images, levels))"]


def _heldout_table(
    model: EmbeddingModel, preprocess: Preprocess, request: ExportRequest
) -> list[str] | None:
    if request.heldout is None:
        return None
    from rareid.deploy.model.backend_torch import TorchBackend
    from rareid.deploy.model.drift import ranking_table, read_heldout

    return ranking_table(
        TorchBackend(model),
        preprocess,
        [float(r) for r in model.rates],
        [int(s) for s in model.distance_split_sizes],
        read_heldout(request.heldout),
        str(model.hparams.distance),
    )


def export_bundle(
    model: EmbeddingModel, preprocess: Preprocess, request: ExportRequest
) -> list[str]:
    """A bundle folder (:mod:`~rareid.deploy.model.export_bundle`)."""
    from rareid.deploy.model.export_bundle import write_bundle

    calibration = request.calibration_thresholds
    table = _heldout_table(model, preprocess, request)
    write_bundle(model, preprocess, request.checkpoint, request.out, calibration, table)
    return [
        f"wrote the bundle {request.out}/ (config.json, model.safetensors, model.onnx, README.md, "
        "SHA256SUMS)",
        *(table or []),
    ]


def export_with_drift(
    model: EmbeddingModel, preprocess: Preprocess, request: ExportRequest, openvino: bool
) -> list[str]:
    """int8 ONNX or OpenVINO (float32 or int8): built in a scratch folder, compared with the
    float32 ONNX model per level, written only when no level loses more than ``max_drop``."""
    from rareid.deploy.model.backend_onnx import OnnxBackend
    from rareid.deploy.model.drift import drift_table, measure_drift, read_heldout
    from rareid.deploy.model.export import export_onnx, write_stamped

    if request.heldout is None:
        raise ValueError("--heldout LABELS.csv is needed to measure the drift per level")
    heldout = read_heldout(request.heldout)
    rates = [float(r) for r in model.rates]
    sizes = [int(s) for s in model.distance_split_sizes]
    lines = []
    with tempfile.TemporaryDirectory(dir=request.out.parent) as scratch:
        fp32 = export_onnx(model, Path(scratch) / "fp32.onnx", request.metadata)
        candidate = fp32
        if request.quantize == "int8":
            from rareid.deploy.model.quantize import calibration_batches, quantize_int8

            if request.calibration is None:
                raise ValueError("--quantize int8 needs --calibration DIR")
            batches, unreadable = calibration_batches(
                request.calibration, request.samples, preprocess, rates
            )
            raw = quantize_int8(fp32, Path(scratch) / "raw_int8.onnx", batches)
            candidate = write_stamped(raw, Path(scratch) / "int8.onnx", request.metadata)
            count = sum(len(batch["levels"]) for batch in batches)
            lines.append(
                f"int8 (QDQ, per-channel) calibrated on {count} crops of {request.calibration} at "
                f"levels 1..{len(rates)} in turn ({unreadable} unreadable skipped)"
            )
        name = "int8" if request.quantize == "int8" else "fp32"
        if openvino:
            from rareid.deploy.model.backend_openvino import OpenVinoBackend
            from rareid.deploy.model.export_openvino import export_openvino

            xml = export_openvino(candidate, Path(scratch) / "model.xml", request.metadata)
            runtime = OpenVinoBackend(xml)
            name = f"OpenVINO {name}"
        else:
            runtime = OnnxBackend(candidate)
        rows = measure_drift(
            OnnxBackend(fp32),
            runtime,
            preprocess,
            rates,
            sizes,
            heldout,
            str(model.hparams.distance),
        )
        lines += [
            f"drift from the float32 model on {len(heldout.images)} held-out crops of "
            f"{len(set(heldout.pids.tolist()))} people ({request.heldout}; {heldout.unreadable} "
            "unreadable skipped):",
            *drift_table(rows, name),
        ]
        worst = max(rows, key=lambda row: row.drop)
        if worst.drop > request.max_drop:
            print("\n".join(lines))
            raise DriftRefused(
                f"{name} loses {worst.drop:.1f} points at level {worst.level} (more than "
                f"--max-drop {request.max_drop:g}); nothing written: calibrate on more or more "
                "typical crops (--calibration, --samples), or accept it with a larger --max-drop"
            )
        if openvino:
            for suffix in (".xml", ".bin"):
                shutil.move(str(Path(scratch) / f"model{suffix}"), request.out.with_suffix(suffix))
        else:
            shutil.move(str(candidate), request.out)
    lines.append(f"wrote {request.out}" + (" (and its .bin)" if openvino else ""))
    return lines


def export_onnx_format(
    model: EmbeddingModel, preprocess: Preprocess, request: ExportRequest
) -> list[str]:
    if request.quantize:
        return export_with_drift(model, preprocess, request, openvino=False)
    return export_plain_onnx(model, preprocess, request)


def export_openvino_format(
    model: EmbeddingModel, preprocess: Preprocess, request: ExportRequest
) -> list[str]:
    return export_with_drift(model, preprocess, request, openvino=True)


#: ``--format`` -> (the exporter, the output's suffix: a file's, or "" for a folder).
EXPORTERS: dict[
    str, tuple[Callable[[EmbeddingModel, Preprocess, ExportRequest], list[str]], str]
] = {
    "onnx": (export_onnx_format, ".onnx"),
    "torch-export": (export_torch_program, ".pt2"),
    "bundle": (export_bundle, ""),
    "openvino": (export_openvino_format, ".xml"),
}
