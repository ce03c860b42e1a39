"""Tracklets: re-identification of people across cameras from video, not single crops.

A tracker cuts each camera's footage into tracklets (one person, consecutive frames); a person
walking towards or away from a camera changes resolution from frame to frame. Each frame gets
its own level from its crop's size (the estimator of ``rareid search``), and a tracklet keeps
one pooled prefix embedding per level, built from the frames that support that level.

Modules: ``tracklet`` (records, cutting crops from frames), ``readers`` (crop folders, MOT
files with a video or frames, arrays), ``pooling``, ``index`` (:class:`TrackIndex`, one file),
``match`` (tracklet distances), ``link`` (global identities across cameras), ``protocol`` (the
``mlr-video`` evaluation). The ``rareid tracks`` subcommands (:mod:`rareid.commands.tracks`)
wrap them.
"""
