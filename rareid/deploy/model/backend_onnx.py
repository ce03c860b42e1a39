"""The onnxruntime runtime: a file written by ``rareid export`` (or a bundle's ``model.onnx``)
run on the CPU, or CUDA when available. NumPy in, NumPy out: no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rareid.deploy.model.backends import FileBackend, require_onnxruntime


class OnnxBackend(FileBackend):
    """An exported ONNX file, or a bundle folder (its hashes checked first).

    Examples::

        backend = OnnxBackend("model.onnx")  # written by `rareid export`
        index = GalleryIndex.from_onnx(backend, "gallery/")
    """

    def __init__(
        self, path: str | Path, expected_sha256: str | None = None, threads: int | None = None
    ) -> None:
        from rareid.deploy.model.bundle import ONNX_FILE, is_bundle, verify_bundle
        from rareid.deploy.model.onnx_integrity import check_weights, open_session

        onnxruntime = require_onnxruntime()
        path = Path(path)
        bundled = is_bundle(path)
        if bundled:
            verify_bundle(path)  # every file's SHA-256, the weights included
            path = path / ONNX_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"ONNX model {str(path)!r} does not exist; write it with `rareid export`"
            )
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in onnxruntime.get_available_providers()
        ]
        self.session = open_session(path, providers, threads)
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if not bundled:
            check_weights(path, metadata)
        super().__init__(metadata, path, expected_sha256)
        self.input_names = [item.name for item in self.session.get_inputs()]

    def run(self, images: np.ndarray, levels: np.ndarray) -> np.ndarray:
        feed = {"images": images}
        if "levels" in self.input_names:
            feed["levels"] = levels
        return self.session.run(None, feed)[0]
