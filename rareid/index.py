"""Moved to :mod:`rareid.deploy.index`: this module keeps ``rareid.index`` imports working, with a
:class:`DeprecationWarning`."""

from rareid._moved import moved

__getattr__, __dir__ = moved(__name__, "rareid.deploy.index")
