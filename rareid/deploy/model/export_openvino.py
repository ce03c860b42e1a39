"""OpenVINO IR of an exported ONNX model (float32, or the int8 QDQ one: OpenVINO runs its
quantize/dequantize pairs as int8 kernels), with rareid's metadata in the IR's rt_info so that
:class:`~rareid.deploy.model.backend_openvino.OpenVinoBackend` serves it alone."""

from __future__ import annotations

from pathlib import Path

from rareid.deploy.model.backend_openvino import RT_INFO_SECTION, require_openvino


def export_openvino(onnx_path: str | Path, out: str | Path, metadata: dict[str, str]) -> Path:
    """Write ``out`` (``.xml``, its weights in the ``.bin`` beside it) from ``onnx_path``."""
    openvino = require_openvino()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = openvino.convert_model(str(onnx_path))
    for key, value in metadata.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    openvino.save_model(model, str(out), compress_to_fp16=False)
    return out
