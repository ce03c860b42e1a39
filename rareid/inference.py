"""Moved to :mod:`rareid.deploy.inference`: this module keeps ``rareid.inference`` imports working, with a
:class:`DeprecationWarning`."""

from rareid._moved import moved

__getattr__, __dir__ = moved(__name__, "rareid.deploy.inference")
