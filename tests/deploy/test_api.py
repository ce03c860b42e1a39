"""The names ``rareid.deploy`` exposes: imported on first use, each documented with an example,
and the examples written as doctests run as written."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

import rareid.deploy as deploy


def test_import_rareid_deploy_imports_nothing_heavy() -> None:
    code = "import sys, rareid.deploy; print(sorted({'torch', 'cv2'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", deploy.__all__)
def test_every_name_has_an_example_that_runs(name: str) -> None:
    target = getattr(deploy, name)
    assert "Examples::" in (target.__doc__ or ""), name
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(target, name, globs={name: target}):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        deploy.no_such_name  # noqa: B018
