"""`download_iam` against a local server that mimics the IAM site (login form or basic auth)."""

from __future__ import annotations

import base64
import io
import json
import logging
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from htr_tf.data.iam_download import (PARTS, Credentials, Part, download_iam, load_credentials,
                                      safe_extract)
from htr_tf.errors import DataError
from iam_fixture import make_iam_fixture

USER, PASSWORD = "writer@example.org", "s3cret-Pa55word"
LOGIN_PAGE = b"""<!DOCTYPE html><html><body><h1>IAM Login</h1>
<form method="post" action="/login">
  <input type="hidden" name="csrf_token" value="tok-42">
  <input type="email" name="email"> <input type="password" name="password">
  <button type="submit">Login</button>
</form></body></html>"""


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in sorted(files.items()):
            z.writestr(name, data)
    return buf.getvalue()


def iam_archives(iam: Path, auth: str = "form") -> dict[str, bytes]:
    """URL path -> archive, packed as IAM packs them (forms split by first letter; the split
    files in the task's zip)."""
    def rel(sub: str, pattern: str = "**/*") -> dict[str, bytes]:
        d = iam / sub
        return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.glob(pattern) if p.is_file()}

    forms = rel("forms")
    content = {
        "formsA-D": _tgz({k: v for k, v in forms.items() if k[0] in "abcd"}),
        "formsE-H": _tgz({k: v for k, v in forms.items() if k[0] in "efgh"}),
        "formsI-Z": _tgz({k: v for k, v in forms.items() if k[0] not in "abcdefgh"}),
        "xml": _tgz(rel("xml")), "lines": _tgz(rel("lines")), "words": _tgz(rel("words")),
        "ascii": _tgz(rel("ascii")), "splits": _zip(rel("splits")),
    }
    return {"/" + (p.path if auth == "form" else p.basic_path): content[p.name] for p in PARTS}


class FakeIAM:
    """The IAM site in miniature: a login form (or basic auth), archives, Range, cut transfers."""

    def __init__(self, files: dict[str, bytes], auth: str = "form"):
        self.files, self.auth = files, auth
        self.cut: dict[str, int] = {}          # path -> bytes to send before hanging up (once)
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self.sessions: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, body: bytes, ctype: str = "text/html", headers=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                fake.requests.append(("POST", self.path, ""))
                n = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                ok = (form.get("email") == [USER] and form.get("password") == [PASSWORD]
                      and form.get("csrf_token") == ["tok-42"])
                if self.path != "/login" or not ok:
                    return self._send(200, LOGIN_PAGE.replace(b"<form", b"<p>Invalid login</p><form"))
                sid = f"sid{len(fake.sessions)}"
                fake.sessions.add(sid)
                self._send(302, b"", headers={"Location": "/", "Set-Cookie": f"session={sid}; Path=/"})

            def do_GET(self):
                rng = self.headers.get("Range", "")
                fake.requests.append(("GET", self.path, rng))
                if self.path == "/login":
                    return self._send(200, LOGIN_PAGE)
                if self.path == "/":
                    return self._send(200, b"<html><body>Welcome <a href='/logout'>logout</a></body></html>")
                if self.path not in fake.files:
                    return self._send(404, b"not found")
                if fake.auth == "form":
                    cookie = self.headers.get("Cookie", "")
                    if not any(f"session={s}" in cookie for s in fake.sessions):
                        return self._send(302, b"", headers={"Location": "/login"})
                else:
                    want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        return self._send(401, b"unauthorized", headers={"WWW-Authenticate": 'Basic realm="IAM"'})
                data = fake.files[self.path]
                start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0
                if start >= len(data) and start:
                    return self._send(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/x-gzip")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = fake.cut.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def file_gets(self, path: str) -> list[str]:
        return [r for m, p, r in self.requests if m == "GET" and p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def iam_src(tmp_path_factory) -> Path:
    return make_iam_fixture(tmp_path_factory.mktemp("iam-src") / "iam").root


@pytest.fixture
def server(iam_src):
    s = FakeIAM(iam_archives(iam_src))
    yield s
    s.close()


@pytest.fixture
def creds_file(tmp_path) -> Path:
    p = tmp_path / "credentials.json"
    p.write_text(json.dumps({"username": USER, "password": PASSWORD}))
    return p


def _tree(root: Path, exclude: str = ".iam-download") -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and exclude not in p.parts}


def test_download_end_to_end_then_prepare(server, iam_src, creds_file, tmp_path):
    from htr_tf.data.iam import prepare_iam

    out = tmp_path / "iam"
    result = download_iam(out, credentials=creds_file, base_url=server.url, progress=False)
    assert result == {p.name: "downloaded" for p in PARTS}
    assert _tree(out) == _tree(iam_src)  # forms of all three archives together, splits flattened
    assert sorted(p.name for p in (out / "splits").iterdir()) == [
        "testset.txt", "trainset.txt", "validationset1.txt", "validationset2.txt"]
    assert not list((out / ".iam-download").glob("*.tgz"))  # archives removed once extracted
    m = prepare_iam(out, tmp_path / "rec", progress=False)
    assert {s: e["count"] for s, e in m["lines"].items()} == {
        "train": 2, "validation1": 2, "validation2": 2, "test": 1}
    # A second run has nothing to do and does not even log in.
    n = len(server.requests)
    assert set(download_iam(out, credentials=creds_file, base_url=server.url, progress=False).values()) == {"done"}
    assert len(server.requests) == n


def test_original_basic_auth_mode(iam_src, creds_file, tmp_path):
    s = FakeIAM(iam_archives(iam_src, auth="basic"), auth="basic")
    try:
        out = tmp_path / "iam"
        download_iam(out, credentials=creds_file, base_url=s.url, parts=["xml", "splits"],
                     auth="basic", progress=False)
        assert sorted(p.name for p in (out / "xml").iterdir()) == sorted(p.name for p in (iam_src / "xml").iterdir())
        assert all(p.startswith("/DBs/iamDB/") for m, p, _ in s.requests)  # no login form used
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"username": USER, "password": "nope"}))
        with pytest.raises(DataError, match=r"refused access \(HTTP 401\)"):
            download_iam(tmp_path / "iam2", credentials=bad, base_url=s.url, parts=["xml"],
                         auth="basic", progress=False)
    finally:
        s.close()


def test_wrong_password_is_one_clear_line(server, tmp_path, monkeypatch):
    monkeypatch.setenv("IAM_USERNAME", USER)
    monkeypatch.setenv("IAM_PASSWORD", "wrong-password")
    with pytest.raises(DataError) as e:
        download_iam(tmp_path / "iam", base_url=server.url, progress=False)
    msg = str(e.value)
    assert "login" in msg and "did not accept" in msg and "\n" not in msg
    assert "wrong-password" not in msg and USER not in msg
    assert not server.file_gets("/DBs/iamDB/data/xml.tgz")  # stopped before any download


def test_resume_after_a_cut_transfer(server, iam_src, creds_file, tmp_path):
    out = tmp_path / "iam"
    lines = "/DBs/iamDB/data/lines.tgz"
    server.cut[lines] = 1000
    with pytest.raises(DataError, match=r"lines\.tgz .*(stopped after|incomplete).*run the same command again"):
        download_iam(out, credentials=creds_file, base_url=server.url, progress=False)
    part = out / ".iam-download" / "lines.tgz.part"
    assert part.stat().st_size == 1000
    state = json.loads((out / ".iam-download" / "state.json").read_text())
    assert [k for k, v in state["parts"].items() if v["done"]] == ["formsA-D", "formsE-H", "formsI-Z", "xml"]

    result = download_iam(out, credentials=creds_file, base_url=server.url, progress=False)
    assert result["xml"] == "done" and result["lines"] == "downloaded"
    assert server.file_gets(lines) == ["", "bytes=1000-"]  # resumed, not restarted
    assert len(server.file_gets("/DBs/iamDB/data/xml.tgz")) == 1  # finished parts not fetched again
    assert _tree(out) == _tree(iam_src)


def test_server_down_is_one_clear_line(creds_file, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=r"^cannot reach the IAM server at 127\.0\.0\.1:\d+: ") as e:
        download_iam(tmp_path / "iam", credentials=creds_file, base_url=f"http://127.0.0.1:{port}",
                     progress=False)
    assert "\n" not in str(e.value)


def test_credentials_never_in_any_output(server, creds_file, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "iam"
    server.cut["/DBs/iamDB/data/words.tgz"] = 10
    errors = []
    for _ in range(2):
        try:
            download_iam(out, credentials=creds_file, base_url=server.url, progress=True,
                         parts=["xml", "words"])
        except DataError as e:
            errors.append(str(e))
    assert len(errors) == 1
    from htr_tf.cli import main

    assert main(["data", "iam-download", "--out", str(out), "--credentials", str(creds_file),
                 "--base-url", server.url, "--parts", "xml", "words"]) == 0
    captured = capsys.readouterr()
    everything = "\n".join([captured.out, captured.err, caplog.text, *errors,
                            *(p.read_text(errors="replace") for p in (out / ".iam-download").iterdir()),
                            repr(load_credentials(creds_file)), str(load_credentials(creds_file))])
    assert "xml" in captured.out and "done" in captured.out
    for secret in (PASSWORD, USER, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in everything


def test_credentials_sources_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("IAM_USERNAME", raising=False)
    monkeypatch.delenv("IAM_PASSWORD", raising=False)
    with pytest.raises(DataError, match="no IAM credentials.*IAM_USERNAME"):
        load_credentials(None)
    monkeypatch.setenv("IAM_USERNAME", "u")
    monkeypatch.setenv("IAM_PASSWORD", "p")
    assert load_credentials(None) == Credentials("u", "p")
    p = tmp_path / "c.json"
    p.write_text('{"email": "e@x", "password": "pw"}')
    assert load_credentials(p) == Credentials("e@x", "pw")
    p.write_text('{"username": "e@x"')
    with pytest.raises(DataError, match="not valid JSON"):
        load_credentials(p)
    p.write_text('{"username": "e@x"}')
    with pytest.raises(DataError, match="needs non-empty"):
        load_credentials(p)
    with pytest.raises(DataError, match="credentials file not found"):
        load_credentials(tmp_path / "missing.json")
    with pytest.raises(DataError, match="unknown IAM part 'pages'"):
        download_iam(tmp_path / "x", credentials=("u", "p"), parts=["pages"])


def test_corrupt_archive_is_deleted_and_refetched(iam_src, creds_file, tmp_path):
    files = iam_archives(iam_src)
    good = files["/DBs/iamDB/data/ascii.tgz"]
    files["/DBs/iamDB/data/ascii.tgz"] = good[:40] + b"\0" * (len(good) - 40)  # right size, bad bytes
    s = FakeIAM(files)
    try:
        out = tmp_path / "iam"
        with pytest.raises(DataError, match=r"ascii\.tgz is corrupt .*deleted: run the command again"):
            download_iam(out, credentials=creds_file, base_url=s.url, parts=["ascii"], progress=False)
        assert not (out / ".iam-download" / "ascii.tgz").exists()
        s.files["/DBs/iamDB/data/ascii.tgz"] = good
        download_iam(out, credentials=creds_file, base_url=s.url, parts=["ascii"], progress=False)
        assert (out / "ascii" / "lines.txt").read_bytes() == (iam_src / "ascii" / "lines.txt").read_bytes()
    finally:
        s.close()


def test_login_page_served_instead_of_a_file_is_an_auth_error(iam_src, creds_file, tmp_path):
    s = FakeIAM(iam_archives(iam_src))
    try:
        class Forgetful(set):  # the session "expires" as soon as it is created
            def add(self, item):
                pass

        s.sessions = Forgetful()
        with pytest.raises(DataError, match="sent a web page instead of xml.tgz"):
            download_iam(tmp_path / "iam", credentials=creds_file, base_url=s.url,
                         parts=["xml"], progress=False)
    finally:
        s.close()


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "xml/../../evil.txt"])
def test_extraction_refuses_path_traversal(tmp_path, name):
    archive = tmp_path / "xml.tgz"
    archive.write_bytes(_tgz({"a01-000u.xml": b"<form/>", name: b"owned"}))
    dest = tmp_path / "out" / "xml"
    with pytest.raises(DataError, match="refused to extract .*leaves the target directory"):
        safe_extract(archive, dest, Part("xml", "xml", "x", "x"))
    assert not list(tmp_path.rglob("evil.txt"))


def test_extraction_refuses_links(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("link.xml")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    archive = tmp_path / "xml.tgz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="links and devices are not allowed"):
        safe_extract(archive, tmp_path / "out", Part("xml", "xml", "x", "x"))
    zp = tmp_path / "s.zip"
    zp.write_bytes(_zip({"../../evil.txt": b"x"}))
    with pytest.raises(DataError, match="leaves the target directory"):
        safe_extract(zp, tmp_path / "out", Part("splits", "splits", "x", "x", flatten=True))
