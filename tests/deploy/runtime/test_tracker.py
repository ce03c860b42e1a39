"""The tracker hook: ``TrackerEmbedder(frame, xyxy)`` gives one float32 row per box at the level
its height supports, and a ``--single-input --level K`` export fed only its first input (as
tracker re-ID backends feed an ONNX model) gives the level-K embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rareid.deploy import TrackerEmbedder, load_model
from tests.deploy.conftest import run_cli
from tests.helpers import one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


def test_boxes_are_embedded_at_the_level_their_height_supports(
    exported_onnx, trained_checkpoint, world, people
) -> None:
    frame = np.zeros((200, 300, 3), dtype=np.uint8)
    person = world.render(people[0], 0, 3)  # RGB, 128 x 64
    frame[10:138, 20:84] = person[..., ::-1]  # the frame is BGR, as OpenCV decodes video
    boxes = np.array(
        [[20, 10, 84, 138], [150, 150, 166, 182], [120, 60, 135.5, 76.4], [400, 10, 420, 50]]
    )
    emb = TrackerEmbedder(exported_onnx)
    features, levels = emb.embed(frame, boxes)
    assert features.dtype == np.float32 and features.shape == (4, emb.dim)
    # heights 128, 32, 17 px against the 64 px input: rates 0.5, 2, 3.8 -> levels 4, 3, 1
    assert levels.tolist() == [4, 3, 1, 0]
    assert not features[3].any()  # outside the frame: zeros, level 0
    np.testing.assert_array_equal(emb(frame, boxes), features)

    model, preprocess = load_model(trained_checkpoint)
    expected = model.embed(preprocess(person), [4]).detach().numpy()
    np.testing.assert_allclose(features[0], expected[0], atol=1e-4)
    assert TrackerEmbedder(exported_onnx)(frame, np.empty((0, 4))).shape == (0, emb.dim)


def test_a_single_input_export_fed_its_first_input_gives_level_k(
    tmp_path, exported_onnx, trained_checkpoint, capsys
) -> None:
    import onnxruntime

    out = tmp_path / "level2.onnx"
    argv = ["export", "--ckpt", str(trained_checkpoint), "--single-input", "--level", "2"]
    assert run_cli([*argv, "--out", str(out)]) == 0
    assert "inputs: images only, level 2" in capsys.readouterr().out
    # fed as a tracker's ONNX backend feeds a re-ID model: the first input's name, one batch
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [item.name for item in session.get_inputs()] == ["images"]
    crops = np.random.default_rng(0).standard_normal((3, 3, 64, 32)).astype(np.float32)
    got = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: crops})[0]
    model, _ = load_model(trained_checkpoint)
    expected = model.embed(torch.from_numpy(crops), [2, 2, 2]).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert not got[:, 16:].any()  # the level-2 prefix (16 of 32 dims) only

    from rareid.deploy.model.backend_onnx import OnnxBackend

    with pytest.raises(ValueError, match="embeds at level 2 only"):  # not for other levels
        OnnxBackend(out).embed_arrays(crops, [2, 3, 2])
    assert run_cli([*argv[:-2], "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--single-input and --level K go together" in one_error_line(
        capsys.readouterr().err, "export"
    )
