"""Build of the optional C extension; everything else is declared in pyproject.toml.

``rareid._rankcount`` speeds up the rank evaluation on CPU (rareid/metrics.py). It is optional:
without a C compiler the install goes on and rareid uses its pure-torch path, which gives the
same numbers more slowly (``rareid.metrics.native_counting_available()`` tells which is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rareid._rankcount",
            sources=["rareid/_rankcount.c"],
            # -ffp-contract=off: every bin must come from the same separately rounded operations.
            extra_compile_args=["-O3", "-ffp-contract=off", "-pthread"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ]
)
