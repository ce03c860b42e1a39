"""Moved to :mod:`rareid.deploy.calibrate`: this module keeps ``rareid.calibrate`` imports working, with a
:class:`DeprecationWarning`."""

from rareid._moved import moved

__getattr__, __dir__ = moved(__name__, "rareid.deploy.calibrate")
