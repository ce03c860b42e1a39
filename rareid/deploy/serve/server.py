"""The HTTP side of ``rareid serve``, on the standard library's ``ThreadingHTTPServer``: the
review page with its upload drop zone at ``/``, ``POST /api/search`` (the image bytes as the
body), ``GET /api/gallery`` (an indexed image or its thumbnail), ``GET /api/health`` and the
OpenAPI description at ``/openapi.json`` (``openapi.json`` beside this module).

Every refusal is one JSON object ``{"error": "..."}`` with a 4xx status: an empty body, a body
over the size limit (refused from its Content-Length, never read), a file that is not an image,
a truncated image, an image too large to decode (a decompression bomb is named from its header).
"""

from __future__ import annotations

import json
import mimetypes
import tempfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from rareid.deploy.report.page import render_page, thumbnail_jpeg
from rareid.deploy.serve.engine import Matcher

#: Largest upload (bytes) unless ``rareid serve --max-upload-mb`` says otherwise.
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
#: Most matches one request may ask for.
MAX_TOP_K = 1000


class UploadError(ValueError):
    """A refused request: the HTTP status and the one line the client reads."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the routes (hand-written, shipped beside this module)."""
    text = resources.files("rareid.deploy.serve").joinpath("openapi.json").read_text("utf-8")
    return json.loads(text)


def decode_upload(body: bytes) -> np.ndarray:
    """The RGB image of an uploaded body, or :class:`UploadError` saying why not. The checks are
    :func:`~rareid.data.readers.base.header_problem`'s (the same as for a query file), on a
    temporary copy: the size comes from the header before any pixel is decoded."""
    import cv2

    from rareid.data.readers.base import header_problem

    if not body:
        raise UploadError(
            HTTPStatus.BAD_REQUEST, "empty body: send the image file's bytes as the request body"
        )
    with tempfile.NamedTemporaryFile(prefix="rareid-upload-") as handle:
        handle.write(body)
        handle.flush()
        problem = header_problem(handle.name)
    if problem is not None and problem.startswith("too large"):
        raise UploadError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"image {problem}")
    image = None
    if problem is None:
        image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        why = problem or "cannot be decoded"
        raise UploadError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"not a usable image ({why}): upload a jpg, png, bmp or webp crop",
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ReviewServer(ThreadingHTTPServer):
    """A threading server that holds what its handlers answer with."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        matcher: Matcher,
        title: str,
        caption: str,
        top_k: int,
        max_upload: int = DEFAULT_MAX_UPLOAD,
    ) -> None:
        super().__init__(address, Handler)
        self.matcher = matcher
        self.top_k = top_k
        self.max_upload = max_upload
        self.title = title
        self.caption = caption
        self._thumbs: dict[tuple[int, str], bytes] = {}

    def page(self) -> str:
        data = {
            "mode": "serve",
            "api": "/api/search",
            "title": self.title,
            "caption": self.caption,
            "key": f"serve|{self.matcher.path.resolve()}",
            "rerank": False,
            "labels": True,
            "gallery": [],
            "queries": [],
        }
        return render_page(data)

    def thumbnail(self, version: int, path: str) -> bytes | None:
        """A cached JPEG thumbnail of an indexed file (per index version), or None."""
        import cv2

        key = (version, path)
        data = self._thumbs.get(key)  # one lookup: another thread may clear the cache
        if data is None:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                return None
            data = thumbnail_jpeg(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if len(self._thumbs) > 4096:
                self._thumbs.clear()
            self._thumbs[key] = data
        return data


class Handler(BaseHTTPRequestHandler):
    """One request; answers are JSON except the page and the images."""

    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one reviewer's requests are no news."""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page().encode(), "text/html; charset=utf-8")
        elif url.path == "/openapi.json":
            self._json(HTTPStatus.OK, openapi())
        elif url.path == "/api/health":
            snapshot = self.server.matcher.current()
            self._json(
                HTTPStatus.OK,
                {
                    "path": str(self.server.matcher.path),
                    "images": len(snapshot.index),
                    "version": snapshot.version,
                },
            )
        elif url.path == "/api/gallery":
            self._gallery(query.get("name", [""])[0], query.get("size", ["full"])[0])
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path} (see /openapi.json)")

    def _gallery(self, name: str, size: str) -> None:
        """An image of the index by its indexed name: nothing outside the index is served."""
        snapshot = self.server.matcher.current()
        position = snapshot.position_of.get(name)
        if position is None:
            self._error(HTTPStatus.NOT_FOUND, f"{name!r} is not in the index")
            return
        path = str(snapshot.index.absolute_path(position))
        if size == "thumb":
            data = self.server.thumbnail(snapshot.version, path)
            kind = "image/jpeg"
        else:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                data = None
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if data is None:
            self._error(HTTPStatus.NOT_FOUND, f"{name!r} is in the index but cannot be read")
            return
        self._send(HTTPStatus.OK, data, kind)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/search":
            self._drain_or_close()
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {url.path}")
            return
        try:
            top_k, name = self._search_options(parse_qs(url.query))
            image = decode_upload(self._body())
        except UploadError as error:
            self._error(error.status, str(error))
            return
        try:
            answer = self.server.matcher.search(image, name, top_k)
        except ValueError as error:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(error))
            return
        self._json(HTTPStatus.OK, answer)

    def _search_options(self, query: dict[str, list[str]]) -> tuple[int, str]:
        text = query.get("top_k", [str(self.server.top_k)])[0]
        if not text.isdigit() or not 1 <= int(text) <= MAX_TOP_K:
            self._drain_or_close()
            raise UploadError(
                HTTPStatus.BAD_REQUEST, f"top_k: expected an integer 1..{MAX_TOP_K}, got {text!r}"
            )
        return int(text), query.get("name", ["upload"])[0] or "upload"

    def _length(self) -> int | None:
        text = self.headers.get("Content-Length")
        return int(text) if text is not None and text.strip().isdigit() else None

    def _drain_or_close(self) -> None:
        """Read a small unread body (the connection stays usable), else close after answering."""
        length = self._length()
        if length and length <= self.server.max_upload:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _body(self) -> bytes:
        """The request body, refused before reading when it is larger than the limit."""
        length = self._length()
        if length is None:
            self.close_connection = True
            raise UploadError(
                HTTPStatus.LENGTH_REQUIRED, "Content-Length required: send the image as the body"
            )
        if length > self.server.max_upload:
            self.close_connection = True  # the body is never read
            raise UploadError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes is over the {self.server.max_upload} byte limit "
                "(rareid serve --max-upload-mb)",
            )
        return self.rfile.read(length)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._drain_or_close()
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served here")

    do_PUT = do_DELETE = do_PATCH = _not_allowed


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
