"""The labelling page: a small HTTP server on the standard library (``ThreadingHTTPServer``).

Routes (every one needs ``?token=T``, the per-server secret in the printed URL; without it 403):

    GET  /                      the page (page.html, page.js, page.css: package data, no CDN)
    GET  /page.js, /page.css
    GET  /img/<id>              item <id>'s PNG, read from the set by its integer id
    GET  /api/state?rater=R     classes, progress and R's next item
    POST /api/answer            {"rater": R, "item": id, "choice": c}   (c = class or -1)
    POST /api/undo              {"rater": R}

Nothing is read from the filesystem per request: the page files are loaded at start, images come
from the SQLite set by integer id, and any other path is a 404, so no request can name a file.
Answers are validated (rater name, item range, class range) and stored before the reply.
"""

from __future__ import annotations

import html
import ipaddress
import json
import re
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from advaug.label.store import AlreadyAnswered, LabelInputError, LabelStore, check_rater
from advaug.log import get_logger

log = get_logger(__name__)

MAX_BODY = 4096
IMG_PATH = re.compile(r"/img/([0-9]{1,9})")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _static(name: str) -> str:
    return resources.files("advaug.label").joinpath(name).read_text(encoding="utf-8")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BodyTooLarge(LabelInputError):
    """A request body over ``MAX_BODY`` bytes."""


class _Handler(BaseHTTPRequestHandler):
    server: LabelHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "advaug-label"
    sys_version = ""

    # -- plumbing -----------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("label server: %s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        if status >= 400:  # a refused request's body may be unread: do not reuse the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _authorised(self, query: dict[str, list[str]]) -> bool:
        given = query.get("token", [""])[0]
        return secrets.compare_digest(given.encode(), self.server.token.encode())

    def _route(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            query = parse_qs(url.query, max_num_fields=8)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "malformed request")
            return
        if not self._authorised(query):
            self._error(HTTPStatus.FORBIDDEN, "missing or wrong token: open the URL printed by "
                        "`advaug label`")  # fmt: skip
            return
        try:
            if method == "POST":
                self._post(url.path)
            else:
                self._get(url.path, query)
        except BodyTooLarge as e:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(e))
        except AlreadyAnswered as e:
            self._error(HTTPStatus.CONFLICT, str(e))
        except LabelInputError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
        except Exception:  # never a traceback to the browser
            log.exception("label server: %s %s failed", method, url.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    # -- routes -------------------------------------------------------------------------------

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        srv = self.server
        if path == "/":
            self._send(HTTPStatus.OK, srv.page, "text/html; charset=utf-8")
        elif path == "/page.js":
            self._send(HTTPStatus.OK, srv.script, "text/javascript; charset=utf-8")
        elif path == "/page.css":
            self._send(HTTPStatus.OK, srv.style, "text/css; charset=utf-8")
        elif path == "/api/state":
            rater = check_rater(query.get("rater", [""])[0])
            self._json(HTTPStatus.OK, {**srv.store.state(rater).to_json(), **srv.info})
        elif m := IMG_PATH.fullmatch(path):
            png = srv.store.image(int(m.group(1)))
            if png is None:
                self._error(HTTPStatus.NOT_FOUND, "no such item")
            else:
                self._send(HTTPStatus.OK, png, "image/png")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise LabelInputError("a POST needs a Content-Length")
        if int(length) > MAX_BODY:
            raise BodyTooLarge(f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(int(length))
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise LabelInputError("the body must be a JSON object") from e
        if not isinstance(data, dict):
            raise LabelInputError("the body must be a JSON object")
        return data

    def _post(self, path: str) -> None:
        store = self.server.store
        if path not in ("/api/answer", "/api/undo"):
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        data = self._body()
        if path == "/api/answer":
            state = store.answer(data.get("rater"), data.get("item"), data.get("choice"))
            self._json(HTTPStatus.OK, {**state.to_json(), **self.server.info})
        else:
            undone, state = store.undo(data.get("rater"))
            self._json(HTTPStatus.OK, {**state.to_json(), **self.server.info, "undone": undone})


class LabelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, store: LabelStore, host: str, port: int, token: str) -> None:
        super().__init__((host, port), _Handler)
        self.store = store
        self.token = token
        self.info = {"classes": store.classes, "none": -1}
        self.page = _static("page.html").replace("__TOKEN__", html.escape(quote(token))).encode()
        self.script = _static("page.js").encode()
        self.style = _static("page.css").encode()


class LabelServer:
    """``LabelServer(store).start()`` serves in a thread; ``serve_forever()`` in this one.

    ``port=0`` picks a free port; ``url(rater)`` is the address to open (it carries the token).
    """

    def __init__(
        self,
        store: LabelStore,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        try:
            self.httpd = LabelHTTPServer(store, host, port, self.token)
        except OSError as e:
            raise LabelInputError(
                f"cannot listen on {host}:{port} ({e.strerror}); pick another --port"
            ) from e
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def exposed(self) -> bool:
        """Whether the server listens beyond this machine (``--host`` not loopback)."""
        return not is_loopback(self.host)

    def url(self, rater: str | None = None) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        extra = f"&rater={quote(check_rater(rater))}" if rater else ""
        return f"http://{host}:{self.port}/?token={quote(self.token)}{extra}"

    def serve_forever(self) -> None:
        log.info("labelling %s on %s:%d", self.httpd.store.path, self.host, self.port)
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> LabelServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LabelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
