"""The helper subcommands of ``rareid``, one module each (``synth``, ``splits``, ``aggregate``,
``experiment``, ``index``, ``search``, ``calibrate``, ``export``): every module has
``build_parser()`` and ``main(argv) -> int``, and imports its heavy modules only once the
arguments are read, so that ``--help`` and usage errors answer at once. What a command prints
(tables, CSV / JSON, rank sheets) lives beside it."""
