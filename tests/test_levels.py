"""Rates and levels of real crops: the rate estimated from a crop's size, the level it gets
under each policy (paper Table VI), and the prefix length of each level."""

from __future__ import annotations

import math

import pytest

from rareid.levels import assign_level, estimate_rate, prefix_lengths, query_level


def test_estimate_rate():
    assert estimate_rate(64, 128) == 2.0
    assert estimate_rate(128, 128) == 1.0
    assert math.isclose(estimate_rate(43, 128), 128 / 43)
    with pytest.raises(ValueError, match="height"):
        estimate_rate(0, 128)
    with pytest.raises(ValueError, match="reference_height"):
        estimate_rate(10, -1)


@pytest.mark.parametrize("policy", ["nearest", "lower", "higher"])
def test_known_rates_get_their_level(policy):
    rates = [1, 2, 3, 4]
    assert [assign_level(r, rates, policy) for r in (1, 2, 3, 4)] == [4, 3, 2, 1]
    # unsorted input and float noise from an estimate
    assert assign_level(128 / 64.00000000001, [4, 1, 3, 2], policy) == 3


def test_nearest_is_log_scale():
    rates = [1, 2, 3, 4]
    # 2.4: |log 2.4 - log 2| = 0.18 < |log 3 - log 2.4| = 0.22 (linear distance would pick 2 too)
    assert assign_level(2.4, rates) == 3
    # 2.47: linear nearest is 2 (0.47 < 0.53), log nearest is 3 (0.194 < 0.211)
    assert assign_level(2.47, rates) == 2


def test_nearest_tie_goes_to_lower_resolution():
    assert assign_level(math.sqrt(8), [2, 4]) == 1  # exact log-midpoint of 2 and 4 -> rate 4
    assert assign_level(math.sqrt(2), [1, 2]) == 1  # -> rate 2 (level 1 of 2)
    assert assign_level(math.sqrt(2) * 0.999, [1, 2]) == 2  # just below the tie -> rate 1


def test_unseen_rates_paper_table_vi():
    rates = [1, 2, 4, 6, 8]  # levels: 1->5, 2->4, 4->3, 6->2, 8->1
    assert assign_level(3, rates, "nearest") == 3  # log-nearest of 3 is 4
    assert assign_level(3, rates, "lower") == 3  # next lower resolution: 4
    assert assign_level(3, rates, "higher") == 4  # next higher resolution: 2
    assert assign_level(5, rates, "nearest") == 2  # 6
    assert assign_level(5, rates, "lower") == 2  # 6
    assert assign_level(5, rates, "higher") == 3  # 4
    # outside the known range: clipped
    for policy in ("nearest", "lower", "higher"):
        assert assign_level(10, rates, policy) == 1
        assert assign_level(0.5, rates, policy) == 5
    # rates {2, 4, 8} of the paper: 3 -> 4 and 6 -> 8 by log distance
    assert assign_level(3, [2, 4, 8]) == 2
    assert assign_level(6, [2, 4, 8]) == 1


def test_assign_level_errors():
    with pytest.raises(ValueError, match="level_policy"):
        assign_level(2, [1, 2], "closest")
    with pytest.raises(ValueError, match="rate"):
        assign_level(0, [1, 2])
    with pytest.raises(ValueError, match="rates"):
        assign_level(2, [])


def test_query_level_from_height_and_overrides() -> None:
    rates = [1, 2, 3, 4]
    assert query_level(64, rates, 128) == (2.0, 3)  # half the reference height: rate 2
    assert query_level(29, rates, 128)[1] == 1  # rate 4.4: nearest known rate 4
    assert query_level(200, rates, 128)[1] == 4  # taller than the reference: HR
    assert query_level(29, rates, 128, rate=1.0) == (1.0, 4)


def test_prefix_lengths_are_running_sums() -> None:
    assert prefix_lengths([3, 5, 2, 6]) == [3, 8, 10, 16]
    assert prefix_lengths([]) == []


def test_levels_import_no_image_library() -> None:
    import subprocess
    import sys

    code = "import sys, rareid.levels; print(sorted({'cv2', 'torch'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
