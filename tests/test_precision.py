"""``trainer.precision: auto``: bf16 only where the CPU (or GPU) computes it natively."""

from __future__ import annotations

import pytest

from rareid import runtime
from rareid.runtime import cpu_bf16_flags, resolve_precision
from rareid.trainer import RAReIDTrainer

AMX_CPU = "processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX2_CPU = "processor : 0\nflags : fpu sse2 avx2 fma\n"


def test_cpu_flags_are_read_as_whole_words() -> None:
    assert cpu_bf16_flags(AMX_CPU) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags(AVX2_CPU) == []
    assert cpu_bf16_flags("flags : not_avx512_bf16x") == []


@pytest.mark.parametrize(("cpuinfo", "expected"), [(AMX_CPU, "bf16-mixed"), (AVX2_CPU, "32-true")])
def test_cpu_choice_follows_the_bf16_flags(cpuinfo: str, expected: str) -> None:
    precision, reason = resolve_precision("cpu", cpuinfo=cpuinfo)
    assert precision == expected
    assert ("avx512_bf16" in reason) == (expected == "bf16-mixed")


def test_gpu_choice_follows_its_bf16_support() -> None:
    assert resolve_precision("gpu", cuda_bf16=True)[0] == "bf16-mixed"
    assert resolve_precision("cuda", cuda_bf16=False, cpuinfo=AMX_CPU)[0] == "32-true"
    assert resolve_precision("auto", cuda_bf16=True, cpuinfo=AVX2_CPU)[0] == "bf16-mixed"


@pytest.mark.parametrize(("cpuinfo", "expected"), [(AMX_CPU, "bf16-mixed"), (AVX2_CPU, "32-true")])
def test_trainer_resolves_auto_once_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cpuinfo: str, expected: str
) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_flags", lambda _=None: cpu_bf16_flags(cpuinfo))
    trainer = RAReIDTrainer(
        accelerator="cpu", precision="auto", logger=False, enable_checkpointing=False
    )
    assert trainer.precision == expected
    said = [line for line in capsys.readouterr().out.splitlines() if "precision auto" in line]
    assert said == [f"precision auto: {expected} ({resolve_precision('cpu', cpuinfo=cpuinfo)[1]})"]


def test_explicit_precision_is_left_alone() -> None:
    trainer = RAReIDTrainer(
        accelerator="cpu", precision="32-true", logger=False, enable_checkpointing=False
    )
    assert trainer.precision == "32-true"
