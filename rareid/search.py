"""Moved to :mod:`rareid.deploy.search`: this module keeps ``rareid.search`` imports working, with a
:class:`DeprecationWarning`."""

from rareid._moved import moved

__getattr__, __dir__ = moved(__name__, "rareid.deploy.search")
