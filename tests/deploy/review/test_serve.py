"""``rareid serve`` over HTTP (in this process, on a free loopback port): the answer of
``/api/search`` against ``rareid search`` for the same crop, the hostile uploads, concurrent
requests, the index reloaded when ``rareid index --add`` changes it, and the OpenAPI
description against what is served."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from rareid.commands.search_run import DEFAULT_SEARCH_FAR
from tests.deploy.conftest import index_args, run_cli, write_rgb
from tests.deploy.review.conftest import TOP_K, search_html
from tests.deploy.test_hostile_files import write_bomb
from tests.helpers import one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@contextmanager
def serving(index: Path, checkpoint: Path, max_upload: int = 1 << 20) -> Iterator[str]:
    """A review server of ``index`` on a free loopback port; its base URL."""
    from rareid.deploy.model.backend_torch import TorchBackend
    from rareid.deploy.model.inference import load_model
    from rareid.deploy.serve.engine import Matcher
    from rareid.deploy.serve.server import ReviewServer

    matcher = Matcher(index, TorchBackend(load_model(checkpoint)[0]), None, DEFAULT_SEARCH_FAR)
    server = ReviewServer(("127.0.0.1", 0), matcher, "t", "c", TOP_K, max_upload)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def post(base: str, body: bytes, path: str = "/api/search?name=q.png") -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=body, method="POST")
    request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(base: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_api_answers_as_rareid_search_does(tmp_path, review) -> None:
    out = tmp_path / "matches"
    assert search_html(review, out, "--no-sheets") == 0
    rows = json.loads((out / "results.json").read_text())["matches"]
    with serving(review.index, review.checkpoint) as base:
        for crop in sorted(review.queries.iterdir()):
            status, answer = post(base, crop.read_bytes(), f"/api/search?name={crop.name}")
            assert status == 200, answer
            own = [row for row in rows if Path(row["query"]).name == crop.name]
            assert answer["query"]["level"] == own[0]["level"]
            assert answer["query"]["name"] == crop.name
            assert [match["gallery"] for match in answer["matches"]] == [r["gallery"] for r in own]
            for match, row in zip(answer["matches"], own, strict=True):
                assert match["distance"] == pytest.approx(row["distance"], abs=1e-5)
                assert match["verdict"] == row["verdict"]
        status, image = get(base, answer["matches"][0]["thumb"])
        assert status == 200 and image[:2] == b"\xff\xd8"
        status, image = get(base, answer["matches"][0]["full"])
        assert image == (review.gallery / answer["matches"][0]["gallery"]).read_bytes()
        status, page = get(base, "/")
        assert status == 200 and b'"mode":"serve"' in page and b'id="drop"' in page


def test_hostile_requests_get_one_clear_json_error(tmp_path, review) -> None:
    bomb = write_bomb(tmp_path / "bomb.png").read_bytes()
    truncated = (review.queries / "q0.png").read_bytes()[:-40]
    with serving(review.index, review.checkpoint, max_upload=1 << 20) as base:
        cases = {
            b"": (400, "empty body"),
            b"just some text, not a picture" * 50: (415, "not a usable image"),
            truncated: (415, "truncated PNG"),
            bomb: (413, "too large to decode (20000x20000 pixels"),
        }
        for body, (code, words) in cases.items():
            status, answer = post(base, body)
            assert status == code and list(answer) == ["error"] and words in answer["error"]
        status, answer = post(base, bomb, "/api/search?top_k=0")
        assert status == 400 and "top_k" in answer["error"]
        # a body over the limit is refused from its Content-Length, before it is sent
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.putrequest("POST", "/api/search")
        connection.putheader("Content-Length", str(50 << 20))
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 413 and "byte limit" in json.loads(answer.read())["error"]
        connection.close()
        for path in ("/api/gallery?name=../../etc/passwd", "/nothing", "/api/gallery"):
            status, body = get(base, path)
            assert status == 404 and "error" in json.loads(body)


def test_concurrent_requests_do_not_mix_results(review) -> None:
    crops = sorted(review.queries.iterdir()) * 3
    with serving(review.index, review.checkpoint) as base:
        alone = {crop.name: post(base, crop.read_bytes())[1]["matches"] for crop in crops[:6]}
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda crop: post(base, crop.read_bytes())[1], crops))
    for crop, answer in zip(crops, answers, strict=True):
        assert answer["matches"] == alone[crop.name]  # its own ranking, not a neighbour's
    assert len({json.dumps(answer["matches"]) for answer in answers}) == 6


def test_index_is_reloaded_when_index_add_changes_it(tmp_path, review, world, people, capsys):
    from rareid.deploy.gallery.index import GalleryIndex

    gallery = tmp_path / "gallery"
    shutil.copytree(review.gallery, gallery)
    index = tmp_path / "gallery.npz"
    assert run_cli(index_args(review.checkpoint, gallery, index)) == 0
    crop = (review.queries / "q2.png").read_bytes()
    with serving(index, review.checkpoint) as base:
        before = index.stat().st_mtime_ns
        first = post(base, crop)[1]
        assert first["index"]["version"] == 1 and index.stat().st_mtime_ns == before  # read-only
        write_rgb(gallery / "new/person 2 again.png", world.render(people[2], 1, 78))
        assert run_cli([*index_args(review.checkpoint, gallery, index), "--add"]) == 0
        second = post(base, crop)[1]
        assert second["index"] == {"path": str(index), "images": 25, "version": 2}
        assert "new/person 2 again.png" in [match["gallery"] for match in second["matches"]]
        other = GalleryIndex.load(index)
        other.checkpoint_sha256 = "0" * 64
        other.save(index)  # another model's embeddings: the last good index serves
        assert post(base, crop)[1]["index"]["version"] == 2
        assert "embedded by another checkpoint" in capsys.readouterr().err
        index.write_bytes(b"not an index any more")  # a broken file: likewise
        third = post(base, crop)[1]
        assert third["index"]["version"] == 2 and third["matches"] == second["matches"]
    assert "kept the previous index" in capsys.readouterr().err


def required_missing(value, schema: dict, schemas: dict, where: str = "") -> list[str]:
    """The required properties of ``schema`` missing anywhere in ``value``."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    missing = [f"{where}.{key}" for key in schema.get("required", []) if key not in value]
    for key, inner in schema.get("properties", {}).items():
        if key in value and isinstance(value[key], dict):
            missing += required_missing(value[key], inner, schemas, f"{where}.{key}")
        if key in value and isinstance(value[key], list) and "items" in inner:
            for item in value[key]:
                missing += required_missing(item, inner["items"], schemas, f"{where}.{key}[]")
    return missing


def test_openapi_describes_what_is_served(review) -> None:
    with serving(review.index, review.checkpoint) as base:
        document = json.loads(get(base, "/openapi.json")[1])
        schemas = document["components"]["schemas"]
        answer = post(base, (review.queries / "q0.png").read_bytes())[1]
        operation = document["paths"]["/api/search"]["post"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer["matches"] and required_missing(answer, ok, schemas) == []
        assert set(answer) == set(schemas["SearchResult"]["properties"])
        assert set(answer["matches"][0]) == set(schemas["Match"]["properties"])
        health = json.loads(get(base, "/api/health")[1])
        assert set(health) == set(schemas["IndexInfo"]["properties"])
        for path, methods in document["paths"].items():
            for method in methods:
                if method == "get" and path != "/api/gallery":
                    assert get(base, path)[0] == 200, path
        assert document["openapi"].startswith("3.")


def test_serve_usage_errors_are_one_line(tmp_path, review, capsys) -> None:
    from rareid.commands.serve import build_parser

    assert build_parser().parse_args(["--index", "x"]).host == "127.0.0.1"  # loopback default
    cases = [
        (["--ckpt", "a.ckpt", "--onnx", "b.onnx"], "--ckpt and --onnx both given"),
        (["--port", "70000"], "--port: expected 0..65535"),
        (["--max-upload-mb", "0"], "--max-upload-mb"),
    ]
    for extra, words in cases:
        assert run_cli(["serve", "--index", str(review.index), *extra]) == 2
        assert words in one_error_line(capsys.readouterr().err, "serve")
    assert run_cli(["serve", "--index", str(tmp_path / "missing.npz")]) == 2
    assert "--index" in one_error_line(capsys.readouterr().err, "serve")
    with serving(review.index, review.checkpoint) as base:
        port = base.rsplit(":", 1)[1]
        assert run_cli(["serve", "--index", str(review.index), "--port", port]) == 2
        assert "cannot listen on 127.0.0.1:" in one_error_line(capsys.readouterr().err, "serve")


@pytest.mark.e2e  # exports the model to ONNX
def test_serve_with_onnx_ranks_as_the_checkpoint_does(tmp_path, review) -> None:
    pytest.importorskip("onnxruntime")
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.backend_onnx import OnnxBackend
    from rareid.deploy.serve.engine import Matcher
    from rareid.deploy.serve.server import decode_upload

    onnx = tmp_path / "model.onnx"
    assert run_cli(["export", "--ckpt", str(review.checkpoint), "--out", str(onnx)]) == 0
    sha = GalleryIndex.load(review.index).checkpoint_sha256
    matcher = Matcher(review.index, OnnxBackend(onnx, sha), None, DEFAULT_SEARCH_FAR)
    crop = review.queries / "q1.png"
    with serving(review.index, review.checkpoint) as base:
        expected = post(base, crop.read_bytes(), "/api/search?name=q1.png")[1]
    answer = matcher.search(decode_upload(crop.read_bytes()), "q1.png", TOP_K)
    assert [m["gallery"] for m in answer["matches"]] == [m["gallery"] for m in expected["matches"]]
    for mine, theirs in zip(answer["matches"], expected["matches"], strict=True):
        assert mine["distance"] == pytest.approx(theirs["distance"], abs=1e-3)
