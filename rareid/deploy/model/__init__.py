"""The trained model at serving time: load a checkpoint and preprocess images (``inference``),
run it through an embedding backend (``backends``: torch, onnx), export it (``export``,
``onnx_half``) and refuse non-finite numbers (``checks``). Knows no gallery index."""
