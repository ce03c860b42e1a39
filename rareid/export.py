"""Moved to :mod:`rareid.deploy.export`: this module keeps ``rareid.export`` imports working, with a
:class:`DeprecationWarning`."""

from rareid._moved import moved

__getattr__, __dir__ = moved(__name__, "rareid.deploy.export")
