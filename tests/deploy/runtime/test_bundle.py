"""The model bundle: export -> load (checkpoint-free, unpickling nothing) -> the same
embeddings; a changed or truncated file refused in one line; ``hf-hub:`` ids resolved from a
local folder or a hub-client cache, and one line naming the id, the cache and ``--weights``
when neither has it and the hub cannot be reached."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.model.arrays import file_sha256
from rareid.deploy.model.bundle import BundleError, resolve_bundle
from rareid.deploy.model.embedder import OnnxEmbedder
from rareid.deploy.model.inference import load_model
from tests.deploy.conftest import index_args, run_cli
from tests.helpers import one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


def test_a_bundle_round_trips_to_the_checkpoints_embeddings(
    bundle, trained_checkpoint, gallery_dir, tmp_path, monkeypatch
) -> None:
    names = sorted(path.name for path in bundle.iterdir())
    assert names == ["README.md", "SHA256SUMS", "config.json", "model.onnx", "model.safetensors"]
    config = json.loads((bundle / "config.json").read_text())
    assert config["rates"] == [1.0, 2.0, 3.0, 4.0] and config["img_size"] == [64, 32]
    assert config["training_data"]["identities"] == 6 and config["levels"]["1"] == 4.0
    card = (bundle / "README.md").read_text()
    assert "training data licence: unknown: check the training data" in card  # unnamed
    levels = [
        line.split()[1] for line in card.splitlines() if line.startswith("| ") and "(r=" in line
    ]
    assert levels == ["1", "2", "3", "4"]  # the per-level table of the held-out crops

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a bundle must load without unpickling")

    expected_model, _ = load_model(trained_checkpoint)
    with monkeypatch.context() as patch:
        patch.setattr(pickle, "load", no_unpickling)
        patch.setattr(torch, "load", no_unpickling)
        model, preprocess = load_model(bundle)
    images, levels = torch.rand(5, 3, 64, 32), torch.tensor([1, 2, 3, 4, 4])
    torch.testing.assert_close(model.embed(images, levels), expected_model.embed(images, levels))
    vectors, _ = OnnxEmbedder(bundle).embed(
        [np.full((40, 20, 3), 90, np.uint8)], levels=[2]
    )  # the ONNX runtime loads the same folder
    reference = expected_model.embed(preprocess(np.full((40, 20, 3), 90, np.uint8)), [2])
    np.testing.assert_allclose(vectors, reference.detach().numpy(), atol=1e-4)
    # an index built from the bundle is the checkpoint's (same hash, same vectors)
    assert run_cli(index_args(bundle, gallery_dir, tmp_path / "b.npz")) == 0
    assert run_cli(index_args(trained_checkpoint, gallery_dir, tmp_path / "c.npz")) == 0
    from_bundle, from_checkpoint = (GalleryIndex.load(tmp_path / n) for n in ("b.npz", "c.npz"))
    assert from_bundle.checkpoint_sha256 == from_checkpoint.checkpoint_sha256
    torch.testing.assert_close(from_bundle.embeddings, from_checkpoint.embeddings)


@pytest.mark.parametrize(
    ("name", "damage"),
    [("model.safetensors", "truncate"), ("config.json", "edit"), ("model.onnx", "truncate")],
)
def test_a_damaged_bundle_is_refused_in_one_line(
    bundle, gallery_dir, tmp_path, capsys, name: str, damage: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    target = copy / name
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] if damage == "truncate" else data.replace(b"4", b"5"))
    backend = ["--backend", "onnx", "--onnx", str(copy)] if name == "model.onnx" else []
    argv = index_args(copy, gallery_dir, tmp_path / "g.npz", *backend)
    assert run_cli(argv) == 2
    line = one_error_line(capsys.readouterr().err, "index")
    assert f"{name} does not match its SHA-256" in line and str(copy) in line
    assert not (tmp_path / "g.npz").exists()


def test_hub_ids_resolve_from_a_folder_then_the_cache_else_one_line(
    bundle, tmp_path, monkeypatch
) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-reid"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in bundle.iterdir():  # the hub client's layout: blobs by hash, snapshots link them
        blob = repo / "blobs" / file_sha256(file)
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    hub = pytest.importorskip("huggingface_hub")  # the client itself finds the files there
    found = hub.try_to_load_from_cache("acme/tiny-reid", "config.json", cache_dir=cache)
    assert Path(found) == snapshot / "config.json"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert resolve_bundle("hf-hub:acme/tiny-reid") == snapshot
    assert OnnxEmbedder("hf-hub:acme/tiny-reid").rates == [1.0, 2.0, 3.0, 4.0]
    shutil.copytree(bundle, tmp_path / "acme" / "tiny-reid")  # a local folder comes first
    assert resolve_bundle("hf-hub:acme/tiny-reid") == Path("acme/tiny-reid")
    with pytest.raises(BundleError) as refused:
        resolve_bundle("hf-hub:acme/absent")
    message = str(refused.value)
    assert "hf-hub:acme/absent" in message and str(cache) in message and "--weights PATH" in message
    assert "\n" not in message
    assert resolve_bundle("hf-hub:acme/absent", weights=bundle) == bundle
