"""Moved: the re-ranking of a distance matrix to :mod:`rareid.evaluation.rerank`, the re-ranked
search of a gallery index to :mod:`rareid.deploy.rerank`. This module keeps ``rareid.rerank``
imports working, with a :class:`DeprecationWarning`."""

from rareid._moved import moved

__getattr__, __dir__ = moved(__name__, "rareid.evaluation.rerank", "rareid.deploy.rerank")
