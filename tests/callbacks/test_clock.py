"""``FitClock``: training time beside each validation figure, validation itself excluded."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rareid.callbacks import clock
from rareid.callbacks.clock import FitClock


class FakeTime:
    """A clock the test advances by hand (wall and CPU time alike)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Module:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log(self, name: str, value: float, **_: object) -> None:
        self.logged[name] = value


def test_validation_time_is_not_counted_and_steps_are_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeTime()
    monkeypatch.setattr(clock.time, "perf_counter", fake)
    monkeypatch.setattr(clock.time, "process_time", fake)
    trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"), sanity_checking=False, global_step=0)
    module = Module()
    callback = FitClock()
    for epoch in range(2):
        callback.on_train_epoch_start(trainer, module)
        fake.now += 10.0  # training
        trainer.global_step += 5
        callback.on_validation_start(trainer, module)
        fake.now += 100.0  # validation: must not count
        callback.on_validation_epoch_end(trainer, module)
        callback.on_validation_end(trainer, module)
        fake.now += 1.0  # end of the epoch after validation
        callback.on_train_epoch_end(trainer, module)
        assert module.logged["time/train_s"] == pytest.approx(10.0 + 11.0 * epoch)
    assert module.logged == {"time/train_s": 21.0, "time/cpu_s": 21.0, "time/steps": 10.0}

    resumed = FitClock()
    resumed.load_state_dict(callback.state_dict())
    assert (resumed.wall, resumed.cpu) == (22.0, 22.0)


def test_nothing_is_logged_outside_a_fit() -> None:
    trainer = SimpleNamespace(state=SimpleNamespace(fn="validate"), sanity_checking=False)
    module = Module()
    FitClock().on_validation_epoch_end(trainer, module)
    assert module.logged == {}
