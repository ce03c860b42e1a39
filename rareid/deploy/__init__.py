"""Serving a trained model: load and preprocess (``inference``), embedding runtimes
(``backends``: torch, onnx), the gallery index (``index``), exact and approximate search
(``search``), re-ranked search (``rerank``), verification thresholds (``calibrate``) and
export (``export``). The ``rareid index|search|calibrate|export`` subcommands wrap these."""
