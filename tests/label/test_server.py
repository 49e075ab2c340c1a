"""The labelling server over real HTTP: the token, storage, resume, concurrent raters, refusal of
bad values, and that no request reads a file outside the set. Answers are scripted."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advaug.label import LabelInputError, LabelServer, LabelStore
from advaug.label.server import MAX_BODY, is_loopback

SECRET = "TOP-SECRET-FILE-CONTENT"


class Client:
    def __init__(self, server: LabelServer, token: str | None = None) -> None:
        self.port = server.port
        self.token = server.token if token is None else token

    def raw(self, method: str, path: str, body: bytes | None = None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def q(self, path: str, **params: str) -> str:
        parts = [f"token={quote(self.token)}"] + [f"{k}={quote(v)}" for k, v in params.items()]
        return f"{path}?{'&'.join(parts)}"

    def get(self, path: str, **params: str):
        return self.raw("GET", self.q(path, **params))

    def post(self, path: str, data) -> tuple[int, dict]:
        body = json.dumps(data).encode()
        status, _, raw = self.raw("POST", self.q(path), body, {"Content-Type": "application/json"})
        return status, json.loads(raw)

    def state(self, rater: str) -> dict:
        status, _, raw = self.get("/api/state", rater=rater)
        assert status == 200, raw
        return json.loads(raw)


@pytest.fixture
def served(store: LabelStore):
    with LabelServer(store, port=0) as server:
        yield server, Client(server)


def test_requests_without_the_right_token_are_refused(served):
    server, c = served
    bad = Client(server, token="wrong")
    nothing = Client(server, token="")
    for path in ["/", "/page.js", "/page.css", "/img/0", "/api/state", "/nope"]:
        assert c.raw("GET", path)[0] == 403  # no token at all
        assert bad.get(path, rater="alice")[0] == 403
        assert nothing.get(path, rater="alice")[0] == 403
    status, _, body = bad.raw("POST", bad.q("/api/answer"), b'{"rater":"a","item":0,"choice":0}')
    assert status == 403 and b"token" in body
    assert server.httpd.store.answers() == []
    assert c.get("/")[0] == 200 and c.get("/img/0")[0] == 200


def test_page_assets_and_headers(served):
    server, c = served
    status, headers, page = c.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    text = page.decode()
    assert f'src="page.js?token={server.token}"' in text and "http" not in text.lower()
    assert "__TOKEN__" not in text and "owl" not in text  # class names only via JSON/textContent
    _, _, js = c.get("/page.js")
    assert b"innerHTML" not in js and b"http" not in js
    _, _, css = c.get("/page.css")
    assert b"image-rendering:pixelated" in css
    status, headers, png = c.get("/img/3")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert png == server.httpd.store.image(3)


def test_answers_are_stored_and_a_new_server_resumes(store: LabelStore):
    order = store.order("alice")
    with LabelServer(store, port=0) as server:
        c = Client(server)
        s0 = c.state("alice")
        assert (s0["done"], s0["total"], s0["item"], s0["classes"][2]) == (
            0,
            18,
            order[0],
            "<b>owl</b>",
        )
        status, s1 = c.post("/api/answer", {"rater": "alice", "item": order[0], "choice": 1})
        assert status == 200 and (s1["done"], s1["item"], s1["can_undo"]) == (1, order[1], True)
        status, s2 = c.post("/api/answer", {"rater": "alice", "item": order[1], "choice": -1})
        assert c.post("/api/answer", {"rater": "alice", "item": order[1], "choice": 2})[0] == 409
        status, s3 = c.post("/api/undo", {"rater": "alice"})
        assert status == 200 and s3["undone"] == order[1] and s3["item"] == order[1]
        c.post("/api/answer", {"rater": "alice", "item": order[1], "choice": 0})
    stored = [(a.item, a.choice) for a in LabelStore(store.path).answers("alice")]
    assert stored == [(order[0], 1), (order[1], 0)]
    with LabelServer(LabelStore(store.path), port=0) as again:  # a new token, the same progress
        c2 = Client(again)
        assert again.token != server.token
        s = c2.state("alice")
        assert (s["done"], s["item"]) == (2, order[2])
        assert c2.state("bob")["done"] == 0


def test_concurrent_raters_over_http(served):
    server, c = served
    errors: list[str] = []

    def rate(name: str) -> None:
        while True:
            s = c.state(name)
            if s["item"] is None:
                return
            status, _ = c.post("/api/answer", {"rater": name, "item": s["item"], "choice": 0})
            if status != 200:
                errors.append(f"{name}: {status}")

    threads = [threading.Thread(target=rate, args=(f"r{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    answers = server.httpd.store.answers()
    assert len(answers) == 5 * 18 and len({(a.rater, a.item) for a in answers}) == 5 * 18


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"rater": "alice", "item": 0, "choice": 3}, 400),  # 3 classes: 0..2 and -1
        ({"rater": "alice", "item": 0, "choice": -2}, 400),
        ({"rater": "alice", "item": 18, "choice": 0}, 400),  # 18 items: 0..17
        ({"rater": "alice", "item": -1, "choice": 0}, 400),
        ({"rater": "alice", "item": "0", "choice": 0}, 400),
        ({"rater": "alice", "item": 0, "choice": 1.5}, 400),
        ({"rater": "alice", "item": 0, "choice": True}, 400),
        ({"rater": "alice", "item": 0}, 400),
        ({"rater": "a" * 41, "item": 0, "choice": 0}, 400),
        ({"rater": "", "item": 0, "choice": 0}, 400),
        ({"rater": "<script>", "item": 0, "choice": 0}, 400),
        ({"rater": "al ice", "item": 0, "choice": 0}, 400),
        ({"rater": ["alice"], "item": 0, "choice": 0}, 400),
        ([1, 2, 3], 400),
    ],
)
def test_out_of_range_values_are_refused(served, body, code):
    server, c = served
    status, reply = c.post("/api/answer", body)
    assert status == code and "error" in reply
    assert server.httpd.store.answers() == []


def test_malformed_and_oversized_bodies(served):
    server, c = served
    assert c.raw("POST", c.q("/api/answer"), b"{not json")[0] == 400
    assert c.raw("POST", c.q("/api/answer"), b"\xff\xfe")[0] == 400
    assert c.raw("POST", c.q("/api/answer"), b"x" * (MAX_BODY + 1))[0] == 413
    assert c.raw("POST", c.q("/api/nothing"), b"{}")[0] == 404
    assert c.get("/api/state", rater="no way")[0] == 400
    assert c.get("/api/state")[0] == 400
    assert server.httpd.store.answers() == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(["rater", "item", "choice", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.floats(), st.text(max_size=8)),
    )
)
def test_fuzzed_answers_never_fail_the_server(served, body):
    server, c = served
    status, reply = c.post("/api/answer", body)
    valid = (
        isinstance(body.get("rater"), str)
        and body["rater"].isascii()
        and body["rater"].isalnum()
        and type(body.get("item")) is int
        and 0 <= body["item"] < 18
        and type(body.get("choice")) is int
        and -1 <= body["choice"] < 3
    )
    if valid:
        assert status in (200, 409)  # 409: hypothesis sent the same answer twice
    else:
        assert status == 400 and set(reply) == {"error"}


@pytest.mark.parametrize(
    "path",
    [
        "/img/../../../../etc/passwd",
        "/img/..%2f..%2f..%2fsecret.txt",
        "/img/%2e%2e/%2e%2e/secret.txt",
        "/img/0/../../secret.txt",
        "/img/secret.txt",
        "/img/-1",
        "/img/0x1",
        "/img/1e3",
        "/img/99999999999",
        "/img/%201",
        "/img/1%00",
        "/img/..\\..\\secret.txt",
        "http://127.0.0.1/../secret.txt",
        "/../secret.txt",
        "//secret.txt",
        "/secret.txt",
        "/page.js/../secret.txt",
        "/labels/uae.sqlite",
        "/uae.sqlite",
        "/static/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/api/../secret.txt",
        "/page.html",
        "/server.py",
    ],
)
def test_no_request_reads_a_file_outside_the_set(served, tmp_path: Path, path: str):
    server, c = served
    (tmp_path / "secret.txt").write_text(SECRET)
    sep = "&" if "?" in path else "?"
    status, _, body = c.raw("GET", f"{path}{sep}token={server.token}")
    assert status in (400, 404)
    assert SECRET.encode() not in body and b"SQLite" not in body and b"import" not in body


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert not is_loopback("example.org")


def test_a_busy_port_is_one_line_with_the_fix(served, store: LabelStore):
    server, _ = served
    with pytest.raises(LabelInputError, match=f"cannot listen on 127.0.0.1:{server.port}.*--port"):
        LabelServer(store, port=server.port)
