"""Download the IAM Handwriting Database with the user's own IAM account, resumably.

IAM may not be redistributed: every user registers at https://fki.tic.heia-fr.ch/register
and downloads it with their own username (the e-mail address) and password.

Two ways to log in, as the original MXNet system did over its history:

* ``auth="form"`` (the default): the current IAM site, ``https://fki.tic.heia-fr.ch``, has
  a login form; we post the username and password to ``/login`` (with any hidden fields
  of that form, such as a CSRF token) and keep the session cookie, which is what the
  original's latest ``iam_dataset.py`` does.  It is the default because it is the only
  way the current server hands out the files.
* ``auth="basic"``: the original's first way, HTTP basic authentication against the old
  server ``http://www.fki.inf.unibe.ch`` and its paths (``DBs/iamDB/data/forms/...``).
  That host no longer serves IAM; the mode remains for mirrors that still use it.

Files land in IAM's layout (see :mod:`htr_tf.data.iam`): the three form archives together
in ``DIR/forms``, ``DIR/xml``, ``DIR/lines``, ``DIR/words``, ``DIR/ascii`` and the split
files of the large writer-independent text line recognition task in ``DIR/splits``.

Downloads resume: an archive grows in ``DIR/.iam-download/NAME.part`` and continues with
an HTTP ``Range`` request; sizes are checked against ``Content-Length``; a part that is
downloaded and extracted is recorded in ``DIR/.iam-download/state.json`` and skipped next
time.  Credentials never reach a log, a progress bar, the state file or an error message.
"""

from __future__ import annotations

import base64
import http.client
import http.cookiejar
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, Sequence

from htr_tf.errors import DataError
from htr_tf.fileio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["Credentials", "load_credentials", "download_iam", "PARTS", "Part",
           "DEFAULT_BASE_URL", "ORIGINAL_BASE_URL", "safe_extract"]

DEFAULT_BASE_URL = "https://fki.tic.heia-fr.ch"
ORIGINAL_BASE_URL = "http://www.fki.inf.unibe.ch"
REGISTER_URL = "https://fki.tic.heia-fr.ch/register"
STATE_DIR = ".iam-download"
STATE_FILE = "state.json"
CHUNK = 1 << 20

AuthMode = Literal["form", "basic"]


@dataclass(frozen=True)
class Part:
    """One downloadable archive and where its files go."""

    name: str
    target: str       # directory under DIR
    path: str         # path on the current site (auth="form")
    basic_path: str   # path on the original site (auth="basic")
    flatten: bool = False  # keep only file names (the split files)

    def url(self, base: str, auth: AuthMode) -> str:
        return base.rstrip("/") + "/" + (self.path if auth == "form" else self.basic_path)

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name


PARTS: tuple[Part, ...] = (
    Part("formsA-D", "forms", "DBs/iamDB/data/formsA-D.tgz", "DBs/iamDB/data/forms/formsA-D.tgz"),
    Part("formsE-H", "forms", "DBs/iamDB/data/formsE-H.tgz", "DBs/iamDB/data/forms/formsE-H.tgz"),
    Part("formsI-Z", "forms", "DBs/iamDB/data/formsI-Z.tgz", "DBs/iamDB/data/forms/formsI-Z.tgz"),
    Part("xml", "xml", "DBs/iamDB/data/xml.tgz", "DBs/iamDB/data/xml/xml.tgz"),
    Part("lines", "lines", "DBs/iamDB/data/lines.tgz", "DBs/iamDB/data/lines/lines.tgz"),
    Part("words", "words", "DBs/iamDB/data/words.tgz", "DBs/iamDB/data/words/words.tgz"),
    Part("ascii", "ascii", "DBs/iamDB/data/ascii.tgz", "DBs/iamDB/data/ascii/ascii.tgz"),
    Part("splits", "splits", "static/zip/largeWriterIndependentTextLineRecognitionTask.zip",
         "DBs/iamDB/tasks/largeWriterIndependentTextLineRecognitionTask.zip", flatten=True),
)


# -- credentials ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """An IAM username (the account's e-mail address) and password; the repr masks both."""

    username: str = field(repr=False)
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(username='***', password='***')"

    __str__ = __repr__


def load_credentials(credentials: str | os.PathLike | Credentials | Sequence[str] | None = None
                     ) -> Credentials:
    """Credentials from a JSON file ``{"username": .., "password": ..}``, a pair, or else
    the environment variables ``IAM_USERNAME`` and ``IAM_PASSWORD``."""
    if isinstance(credentials, Credentials):
        return credentials
    if isinstance(credentials, (tuple, list)):
        if len(credentials) != 2:
            raise DataError("credentials must be a (username, password) pair")
        return Credentials(str(credentials[0]), str(credentials[1]))
    if credentials is None:
        user, pw = os.environ.get("IAM_USERNAME"), os.environ.get("IAM_PASSWORD")
        if user and pw:
            return Credentials(user, pw)
        raise DataError("no IAM credentials: pass --credentials FILE (JSON with \"username\" and "
                        f"\"password\") or set IAM_USERNAME and IAM_PASSWORD; register at {REGISTER_URL}")
    path = Path(credentials)
    if not path.is_file():
        raise DataError(f"{path}: credentials file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path}: credentials file is not valid JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: credentials file must hold a JSON object")
    user = data.get("username", data.get("email"))
    pw = data.get("password")
    if not isinstance(user, str) or not isinstance(pw, str) or not user or not pw:
        raise DataError(f"{path}: credentials file needs non-empty \"username\" and \"password\"")
    return Credentials(user, pw)


# -- HTTP -----------------------------------------------------------------------------------
class _LoginFormParser(HTMLParser):
    """Finds the form with a password field: its action, its user field and hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._cur: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._cur = {"action": a.get("action", ""), "hidden": {}, "user": None, "password": None}
            self.forms.append(self._cur)
        elif tag == "input" and self._cur is not None:
            typ, name = a.get("type", "text").lower(), a.get("name", "")
            if not name:
                return
            if typ == "hidden":
                self._cur["hidden"][name] = a.get("value", "")
            elif typ == "password":
                self._cur["password"] = name
            elif typ in ("email", "text") and self._cur["user"] is None:
                self._cur["user"] = name

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._cur = None

    def login_form(self) -> dict[str, Any] | None:
        return next((f for f in self.forms if f["password"]), None)


def _looks_like_login_page(body: bytes) -> bool:
    p = _LoginFormParser()
    try:
        p.feed(body[:200_000].decode("utf-8", "replace"))
    except Exception:  # HTMLParser is lenient; anything odd just means "not a login page"
        return False
    return p.login_form() is not None


class _Session:
    """urllib with a cookie jar, a timeout, and clear one-line errors."""

    def __init__(self, base_url: str, creds: Credentials, auth: AuthMode, timeout: float):
        self.base, self.creds, self.auth, self.timeout = base_url.rstrip("/"), creds, auth, timeout
        self.host = urllib.parse.urlsplit(self.base).netloc or self.base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def request(self, url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
        req = urllib.request.Request(url, data=data, headers=dict(headers or {}))
        req.add_header("User-Agent", "htr-tf iam-download")
        if self.auth == "basic":
            token = base64.b64encode(f"{self.creds.username}:{self.creds.password}".encode()).decode()
            req.add_unredirected_header("Authorization", f"Basic {token}")  # never sent on redirects
        try:
            return self.opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise DataError(f"IAM server at {self.host} refused access (HTTP {e.code}): wrong "
                                f"username or password, or the account is not activated") from None
            if e.code == 416:
                raise
            raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            raise DataError(f"cannot reach the IAM server at {self.host}: {reason}") from None

    def login(self) -> None:
        """Log in through the site's form (``auth="form"``); basic auth needs no login."""
        if self.auth == "basic":
            return
        login_url = f"{self.base}/login"
        fields: dict[str, str] = {}
        user_field, pw_field, action = "email", "password", login_url
        try:
            with self.request(login_url) as r:
                page = r.read(200_000)
            p = _LoginFormParser()
            p.feed(page.decode("utf-8", "replace"))
            form = p.login_form()
            if form:
                fields = dict(form["hidden"])
                user_field = form["user"] or user_field
                pw_field = form["password"]
                action = urllib.parse.urljoin(login_url, form["action"] or login_url)
        except DataError as e:
            if "cannot reach" in str(e):
                raise
            # No login page to read: post the fields the original posted.
        fields[user_field] = self.creds.username
        fields[pw_field] = self.creds.password
        body = urllib.parse.urlencode(fields).encode()
        with self.request(action, data=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            final = urllib.parse.urlsplit(r.geturl()).path.rstrip("/")
            page = r.read(200_000)
        if final.endswith("/login") or _looks_like_login_page(page):
            raise DataError(f"IAM login at {self.host} failed: the server did not accept the "
                            f"username and password (register or reset at {REGISTER_URL})")


# -- one archive ----------------------------------------------------------------------------
def _content_range_total(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/200`` -> (100, 200); ``bytes */200`` -> (None, 200)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = int(span.split("-")[0]) if span and span != "*" and "-" in span else None
    return start, (int(total) if total.isdigit() else None)


def _fetch(session: _Session, url: str, dest: Path, progress: bool) -> None:
    """Download ``url`` to ``dest``, resuming ``dest.part``; DataError on any failure."""
    from tqdm import tqdm

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = session.request(url, headers=headers)
    except urllib.error.HTTPError as e:  # 416: nothing left to send
        _, total = _content_range_total(e.headers.get("Content-Range"))
        if have and total == have:
            os.replace(part, dest)
            return
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: the server refused to resume {dest.name} (HTTP 416); the partial "
                        f"file was deleted: run the command again") from None
    with resp:
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("text/html"):
            raise DataError(f"{url}: the IAM server sent a web page instead of {dest.name} "
                            f"(not logged in, wrong credentials, or no such file)")
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if resp.status == 206:
            start, total = _content_range_total(resp.headers.get("Content-Range"))
            if start != have:
                raise DataError(f"{url}: the server resumed {dest.name} at byte {start}, not {have}")
            mode = "ab"
        else:  # 200: the whole file (the server may ignore Range)
            have, total, mode = 0, length, "wb"
        written = have
        with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                          unit_divisor=1024, desc=dest.name, disable=not progress,
                                          leave=False) as bar:
            try:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as e:
                of = f"{total:,}" if total is not None else "?"
                raise DataError(f"download of {dest.name} stopped after {written:,} of {of} "
                                f"bytes ({type(e).__name__}); run the same command again to "
                                f"resume") from None
    if total is not None and written != total:
        if written > total:
            part.unlink(missing_ok=True)
        raise DataError(f"download of {dest.name} is incomplete: {written:,} of {total:,} bytes; "
                        f"run the same command again to resume")
    os.replace(part, dest)


def _member_path(name: str, part: Part, archive: str) -> PurePosixPath | None:
    """The safe relative path of an archive member under the part's directory (None: skip)."""
    name = name.replace("\\", "/")
    pp = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in pp.parts:
        raise DataError(f"{archive}: refused to extract {name!r}: path leaves the target directory")
    parts = [p for p in pp.parts if p not in ("", ".")]
    if not parts:
        return None
    if part.flatten:
        return PurePosixPath(parts[-1])
    stem = archive.split(".")[0]
    if len(parts) > 1 and parts[0] in (part.target, part.name, stem):
        parts = parts[1:]
    return PurePosixPath(*parts)


def _write_member(src: IO[bytes], target: Path) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        shutil.copyfileobj(src, f, CHUNK)


def safe_extract(archive: Path, dest: Path, part: Part) -> int:
    """Extract a tar(.gz) or zip archive into ``dest`` without path traversal, links or
    devices; returns the number of files.  A corrupt archive raises DataError."""
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name
    with open(archive, "rb") as f:
        magic = f.read(4)

    def inside(rel: PurePosixPath) -> Path:
        t = (dest / rel).resolve()
        if t != dest and dest not in t.parents:
            raise DataError(f"{name}: refused to extract {str(rel)!r}: path leaves the target directory")
        return t

    n = 0
    try:
        if magic[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    rel = _member_path(info.filename, part, name)
                    if rel is None or info.is_dir():
                        continue
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode and mode != 0o100000:
                        raise DataError(f"{name}: refused to extract {info.filename!r}: not a regular file")
                    with z.open(info) as src:
                        _write_member(src, inside(rel))
                    n += 1
        else:
            with tarfile.open(archive, "r|*") as tar:
                for m in tar:
                    rel = _member_path(m.name, part, name)
                    if rel is None or m.isdir():
                        continue
                    if not m.isfile():
                        raise DataError(f"{name}: refused to extract {m.name!r}: links and devices "
                                        f"are not allowed")
                    src = tar.extractfile(m)
                    assert src is not None
                    _write_member(src, inside(rel))
                    n += 1
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise DataError(f"{name} is corrupt ({type(e).__name__}: {e})") from None
    return n


# -- the command ----------------------------------------------------------------------------
def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(state, dict) and isinstance(state.get("parts"), dict):
            return state
    except (OSError, json.JSONDecodeError):
        pass
    return {"version": 1, "parts": {}}


def _select(parts: Sequence[str] | None) -> list[Part]:
    if not parts:
        return list(PARTS)
    by_name = {p.name: p for p in PARTS}
    aliases = {"forms": ["formsA-D", "formsE-H", "formsI-Z"]}
    out: list[Part] = []
    for name in parts:
        names = aliases.get(name, [name])
        for n in names:
            if n not in by_name:
                raise DataError(f"unknown IAM part {name!r}; valid: {', '.join(by_name)} (or forms)")
            if by_name[n] not in out:
                out.append(by_name[n])
    return out


def download_iam(out: str | os.PathLike,
                 credentials: str | os.PathLike | Credentials | Sequence[str] | None = None,
                 base_url: str | None = None, parts: Sequence[str] | None = None,
                 progress: bool = True, auth: AuthMode = "form", timeout: float = 60.0,
                 keep_archives: bool = False) -> dict[str, str]:
    """Download and extract IAM into ``out``; returns part name -> ``downloaded`` | ``done``.

    ``parts`` picks archives by name (``formsA-D formsE-H formsI-Z xml lines words ascii
    splits``; ``forms`` means all three); default all.  Re-running resumes a cut transfer
    and skips finished parts.  Errors (wrong password, no network, a cut transfer, a
    corrupt archive) raise a one-line :class:`DataError`.
    """
    from tqdm import tqdm

    if auth not in ("form", "basic"):
        raise DataError(f"unknown login method {auth!r}; valid: form, basic")
    selected = _select(parts)
    creds = load_credentials(credentials)
    base = base_url or (DEFAULT_BASE_URL if auth == "form" else ORIGINAL_BASE_URL)
    root = Path(out)
    state_dir = root / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / STATE_FILE
    state = _load_state(state_path)
    todo = [p for p in selected if not state["parts"].get(p.name, {}).get("done")]
    result = {p.name: "done" for p in selected if p not in todo}
    if not todo:
        return result
    session = _Session(base, creds, auth, timeout)
    session.login()
    for p in tqdm(todo, desc="IAM parts", unit="part", disable=not progress):
        archive = state_dir / p.filename
        if not archive.exists():
            _fetch(session, p.url(base, auth), archive, progress)
        try:
            n = safe_extract(archive, root / p.target, p)
        except DataError as e:
            if "is corrupt" in str(e):
                archive.unlink(missing_ok=True)
                raise DataError(f"{e}; it was deleted: run the command again to download it "
                                f"afresh") from None
            raise
        size = archive.stat().st_size
        if not keep_archives:
            archive.unlink()
        state["parts"][p.name] = {"done": True, "bytes": size, "files": n}
        atomic_write_text(state_path, json.dumps(state, indent=2))
        log.info("IAM %s: %d files into %s", p.name, n, root / p.target)
        result[p.name] = "downloaded"
    return result
