"""The helper subcommands' command lines: every option documented with its default, every usage
error one line (``rareid SUB: error: ... (see rareid SUB --help)``, exit status 2), and a CUDA
``--device`` on a machine without that GPU refused up front."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest
import torch

from rareid.cli import HELPER_COMMANDS, main
from rareid.deploy.model.checks import device_problem

DEPLOY_HELPERS = ("index", "search", "calibrate", "export")


def helper_parser(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser helper ``name`` builds, caught as it starts parsing (nothing runs after)."""
    caught: list[argparse.ArgumentParser] = []

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        caught.append(self)
        raise SystemExit(0)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", catch)
        assert main([name]) == 0
    assert len(caught) == 1, name
    return caught[0]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]


@pytest.mark.parametrize("name", list(HELPER_COMMANDS))
def test_every_option_has_help(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = helper_parser(name, monkeypatch)
    options = _options(parser)
    assert options, name
    undocumented = [
        action.option_strings[0] if action.option_strings else action.dest
        for action in options
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert not undocumented, f"rareid {name}: options without help: {undocumented}"


@pytest.mark.parametrize("name", list(HELPER_COMMANDS))
def test_help_shows_every_default(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A default other than None/False is shown, by the formatter or in the option's text."""
    parser = helper_parser(name, monkeypatch)
    shows_defaults = issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    hidden = [
        action.option_strings[0]
        for action in _options(parser)
        if action.default not in (None, False, [], argparse.SUPPRESS)
        and not shows_defaults
        and "default" not in (action.help or "")
    ]
    assert not hidden, f"rareid {name}: defaults not shown in --help: {hidden}"
    if shows_defaults:
        assert "(default: " in parser.format_help()


#: Usage errors of the deploy helpers: argparse's own (missing, unknown, bad type or choice) and
#: their checks run before anything is loaded; ``{tmp}`` is a fresh temporary folder.
USAGE_ERRORS = [
    (["index"], "--gallery"),
    (["index", "--gallery", "g", "--out", "o.npz", "--bogus"], "--bogus"),
    (["index", "--gallery", "g", "--out", "o.npz", "--batch-size", "x"], "--batch-size"),
    (["index", "--gallery", "g", "--out", "o.npz", "--backend", "tf"], "--backend"),
    (["index", "--gallery", "g", "--out", "o.npz"], "--ckpt"),
    (["index", "--gallery", "g", "--out", "o.npz", "--ckpt", "{tmp}/none.ckpt"], "none.ckpt"),
    (["search"], "--index"),
    (["search", "--index", "i.npz", "--query", "q", "--top-k", "0"], "--top-k"),
    (["search", "--index", "i.npz", "--query", "q", "--far", "abc"], "--far"),
    (["search", "--index", "i.npz", "--query", "q", "--rate", "2", "--level", "1"], "--rate"),
    (["search", "--index", "{tmp}/none.npz", "--query", "{tmp}"], "none.npz"),
    (["calibrate"], "--labels"),
    (["calibrate", "--index", "i.npz", "--labels", "l.csv", "--far", "2"], "--far"),
    (["calibrate", "--labels", "l.csv"], "--labels needs --index"),
    (["calibrate", "--config", "c.yaml"], "--config needs --ckpt"),
    (["export"], "--ckpt"),
    (["export", "--ckpt", "{tmp}/none.ckpt"], "none.ckpt"),
    (["export", "--ckpt", "m.ckpt", "--format", "tflite"], "--format"),
]


@pytest.mark.parametrize(("argv", "named"), USAGE_ERRORS, ids=" ".join)
def test_usage_errors_are_one_line(
    argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [part.replace("{tmp}", str(tmp_path)) for part in argv]
    name = args[0]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"rareid {name}: error: "), lines[0]
    assert lines[0].endswith(f"(see rareid {name} --help)"), lines[0]
    assert named.replace("{tmp}", str(tmp_path)) in lines[0]


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_problem_names_the_option_and_the_way_out(no_gpu: None) -> None:
    message = device_problem("cuda")
    assert message is not None
    assert message.startswith("--device cuda: ") and "--device cpu" in message
    assert "--device auto" in message
    assert device_problem("cuda:1", "--devices") is not None
    assert device_problem("cuda:1", "--devices").startswith("--devices cuda:1")
    for usable in ("cpu", "auto"):
        assert device_problem(usable) is None
    assert "not a torch device" in device_problem("gpu")


def test_device_problem_names_the_gpus_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_problem("cuda") is None and device_problem("cuda:0") is None
    message = device_problem("cuda:3")
    assert message is not None and "1 CUDA GPU(s) (cuda:0..cuda:0)" in message


def _device_argv(name: str, tmp_path: Path) -> list[str]:
    """Options of ``name`` that pass every check before the device's."""
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not read before the device is checked")
    if name == "index":
        return ["--ckpt", str(ckpt), "--gallery", str(tmp_path), "--out", str(tmp_path / "i.npz")]
    if name == "search":
        return ["--index", str(tmp_path / "i.npz"), "--query", str(tmp_path)]
    return ["--index", str(tmp_path / "i.npz"), "--labels", str(tmp_path / "l.csv")]


@pytest.mark.parametrize("name", ["index", "search", "calibrate"])
def test_cuda_device_without_a_gpu_is_one_line(
    name: str, no_gpu: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([name, *_device_argv(name, tmp_path), "--device", "cuda"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rareid {name}: error: --device cuda: no CUDA GPU")
    assert "--device cpu" in lines[0]
    assert not (tmp_path / "i.npz").exists()


@pytest.mark.parametrize("name", list(HELPER_COMMANDS))
def test_every_helper_is_a_module_with_build_parser_and_main(name: str) -> None:
    module_name, summary = HELPER_COMMANDS[name]
    module = importlib.import_module(module_name)
    assert module_name == f"rareid.commands.{name}" and summary.strip()
    assert module.build_parser().prog == f"rareid {name}"
    assert callable(module.main)
