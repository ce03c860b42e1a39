"""The OpenVINO runtime: an IR written by ``rareid export --format openvino`` (``model.xml`` and
its ``model.bin``), compiled for the CPU. NumPy in, NumPy out: no torch. Needs the ``openvino``
extra (``pip install 'rareid[openvino]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rareid.deploy.model.backends import FileBackend

#: The rt_info section of the IR that holds rareid's metadata (the ONNX file's, copied).
RT_INFO_SECTION = "rareid"


def require_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise ImportError(
            "the OpenVINO runtime needs openvino: pip install 'rareid[openvino]'"
        ) from None
    return openvino


class OpenVinoBackend(FileBackend):
    """An OpenVINO IR compiled for the CPU (``threads``: its inference threads)."""

    def __init__(
        self, path: str | Path, expected_sha256: str | None = None, threads: int | None = None
    ) -> None:
        openvino = require_openvino()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"OpenVINO model {str(path)!r} does not exist; write it with "
                "`rareid export --format openvino`"
            )
        core = openvino.Core()
        try:
            model = core.read_model(str(path))
        except Exception:  # OpenVINO raises RuntimeError subclasses of its own
            raise ValueError(
                f"OpenVINO model {str(path)!r} (or its .bin) is damaged or truncated; export it "
                "again with `rareid export --format openvino`"
            ) from None
        metadata = {}
        if model.has_rt_info(RT_INFO_SECTION):
            section = model.get_rt_info()[RT_INFO_SECTION]
            metadata = {str(key): str(value.astype(str)) for key, value in section.items()}
        # f32: on a CPU with bf16 units OpenVINO would otherwise compute the float layers in
        # bf16 (an int8 IR still runs its quantised layers in int8)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.input_names = [item.get_any_name() for item in self.compiled.inputs]
        super().__init__(metadata, path, expected_sha256)

    def run(self, images: np.ndarray, levels: np.ndarray) -> np.ndarray:
        feed = {"images": images}
        if "levels" in self.input_names:
            feed["levels"] = levels
        return self.compiled(feed)[0]
