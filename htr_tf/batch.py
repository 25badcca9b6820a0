"""Batch OCR of large collections: find the pages, read each once, resume where a run stopped.

``htr ocr DIR|GLOB... --out OUT`` and ``htr beam`` share this module's rules:

* **Which pages, under which names.**  :func:`find_pages` walks directories (recursively,
  image suffixes only, hidden entries skipped) and glob patterns, sorted; each page's output
  name is its path relative to the directory given (or to the fixed part of the pattern), without
  its suffix, so ``scans/box1/p001.tif`` read from ``scans`` becomes ``OUT/box1/p001.txt``.  Two
  inputs that would write the same output are refused before anything runs.
* **Resume.**  Each output is written to a temporary name and renamed into place, so an
  output that exists is complete; a page whose output exists is skipped (``--overwrite``
  redoes it).  A run killed at any point and started again does only what is missing, and
  two runs into the same directory at once only ever leave whole files (the later rename wins).
* **Bad pages never stop a batch.**  An unreadable, empty or too large image, or any error
  while reading one page, is written to ``OUT/errors.jsonl`` (one JSON object per line, with
  the reason) and the batch goes on; a page without text lines gets its (empty) output and a
  ``no-text`` record, so a resumed run does not read it again.  What would fail every page
  (an output directory that cannot be written, a model that does not load) stops at once.
* **Processes.**  ``workers > 1`` runs that many spawned processes, each loading the models
  once, with the CPU's threads split between them (TensorFlow intra/inter-op threads and
  OpenCV's).  A worker that dies (killed for memory, a crash in native code) is replaced; the
  pages it held are tried once more, then recorded as failed.
"""

from __future__ import annotations

import concurrent.futures as cf
import glob
import json
import os
import posixpath
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

from htr_tf.errors import ConfigError, DataError, HTRError
from htr_tf.fileio import MAX_IMAGE_PIXELS

__all__ = ["IMAGE_SUFFIXES", "ERRORS_FILE", "PageTask", "BatchOptions", "BatchSummary", "find_pages",
           "relative_name", "check_output_dir", "check_file_size", "ocr_page", "recognize_page", "failure_reason",
           "run_batch", "threads_per_worker"]

#: File suffixes taken from directories and patterns (OpenCV decodes all of them); a file
#: named explicitly is read whatever its suffix.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jp2", ".tif", ".tiff", ".bmp", ".dib",
                            ".webp", ".pbm", ".pgm", ".ppm", ".pnm"})
#: Failures and pages without text, one JSON object per line, in the output directory.
ERRORS_FILE = "errors.jsonl"
#: Temporary files older than this (seconds) in the output directory are left over from a
#: killed run and removed at start (a live writer renames its temporary file within moments).
STALE_TEMP_SECONDS = 3600.0
#: Without a terminal, a progress line (pages/s, ETA) is printed this often (seconds).
PROGRESS_LINE_SECONDS = 60.0
#: Largest image file read: the largest page accepted (``fileio.MAX_IMAGE_PIXELS``) stored
#: uncompressed as 16-bit RGBA; a larger file is refused before it is read into memory.
MAX_FILE_BYTES = 8 * MAX_IMAGE_PIXELS


# -- which pages, under which names ---------------------------------------------------------------
@dataclass(frozen=True)
class PageTask:
    """One page to read: where its image is and its output name (``/``-separated, relative to
    the output directory, without suffix)."""

    source: str
    name: str

    def output(self, suffix: str) -> str:
        return self.name + suffix


def is_image_name(path: str) -> bool:
    return posixpath.splitext(path.lower())[1] in IMAGE_SUFFIXES


def relative_name(path: str, base: str) -> str:
    """``path`` relative to the directory ``base``, ``/``-separated, without its suffix
    (works for local paths and for URLs such as ``gs://bucket/dir/page.png``)."""
    p, b = path.replace(os.sep, "/"), base.replace(os.sep, "/").rstrip("/")
    if b and p.startswith(b + "/"):
        rel = p[len(b) + 1:]
    elif not b or b == ".":
        rel = p[2:] if p.startswith("./") else p
    else:
        rel = posixpath.basename(p)
    rel = rel.lstrip("/")
    stem, ext = posixpath.splitext(rel)
    return stem if ext and stem and not stem.endswith("/") else rel


def pattern_base(pattern: str) -> str:
    """The leading directories of a glob pattern that hold no wildcard (``.`` when none)."""
    parts = pattern.replace(os.sep, "/").split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    base = "/".join(fixed)
    if not base and pattern.startswith("/"):
        base = "/"
    return base or "."


def _walk_images(root: str, exclude: Sequence[str]) -> list[str]:
    """Image files under ``root`` (recursively, hidden entries and ``exclude`` skipped), sorted
    by their path relative to ``root``."""
    found: list[str] = []
    excluded = {os.path.realpath(e) for e in exclude}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.realpath(os.path.join(dirpath, d)) not in excluded)
        found.extend(os.path.join(dirpath, f) for f in filenames if not f.startswith(".") and is_image_name(f))
    return sorted(found, key=lambda f: os.path.relpath(f, root).split(os.sep))


def find_pages(specs: Sequence[str], exclude: Sequence[str] = ()) -> tuple[list[PageTask], list[str]]:
    """The pages that image files, directories and glob patterns name, with their output names.

    Returns the tasks (in the order given; sorted within a directory or pattern; a file met
    twice is read once) and a note for each directory or pattern that holds no image.
    Directories in ``exclude`` (the output directories) are never searched.  A name that is
    neither a directory nor a pattern is taken as a file even when it does not exist, so the
    batch reports it as a failed page.  Raises :class:`ConfigError` when two pages would write
    the same output name.
    """
    tasks: list[PageTask] = []
    notes: list[str] = []
    seen: set[str] = set()

    def add(source: str, name: str) -> None:
        key = os.path.realpath(source)
        if key not in seen:
            seen.add(key)
            tasks.append(PageTask(source, name))

    for spec in specs:
        if os.path.isdir(spec):
            files = _walk_images(spec, exclude)
            if not files:
                notes.append(f"{spec}: no image files in this directory ({', '.join(sorted(IMAGE_SUFFIXES))})")
            for f in files:
                add(f, relative_name(f, spec))
        elif os.path.exists(spec) or not glob.has_magic(spec):
            add(spec, relative_name(spec, os.path.dirname(spec)))
        else:
            base = pattern_base(spec)
            n = len(tasks)
            for m in sorted(glob.glob(spec, recursive=True)):
                if os.path.isdir(m):
                    for f in _walk_images(m, exclude):
                        add(f, relative_name(f, base))
                elif is_image_name(m) and not os.path.basename(m).startswith("."):
                    add(m, relative_name(m, base))
            if len(tasks) == n:
                notes.append(f"{spec}: no image file matches this pattern")
    by_name: dict[str, list[str]] = {}
    for t in tasks:
        by_name.setdefault(t.name, []).append(t.source)
    clashes = [srcs for srcs in by_name.values() if len(srcs) > 1]
    if clashes:
        shown = "; ".join(" and ".join(s) for s in clashes[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ConfigError(f"{len(clashes)} output name(s) would be written by two inputs: {shown}{more}. "
                          "Name the files to read with a pattern (e.g. DIR/**/*.tif) or give the "
                          "directories separately")
    return tasks, notes


# -- the output directory -----------------------------------------------------------------------------
def check_output_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Create ``path`` if needed and prove it can be written; a clear :class:`ConfigError` if not."""
    import tempfile

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"the {what} {p} is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".htr-write-test.", suffix=".tmp", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"cannot write to the {what} {p}: {e.strerror or e}") from None
    return p


def _scan_output(out_dir: Path, stale_after: float) -> tuple[set[str], int]:
    """The output files already present (``/``-separated relative paths) and the number of
    stale temporary files removed."""
    existing: set[str] = set()
    removed = 0
    now = time.time()
    for dirpath, _dirnames, filenames in os.walk(out_dir):
        rel_dir = os.path.relpath(dirpath, out_dir)
        for f in filenames:
            if f.startswith(".") and f.endswith(".tmp"):
                full = os.path.join(dirpath, f)
                try:
                    if now - os.path.getmtime(full) > stale_after:
                        os.unlink(full)
                        removed += 1
                except OSError:
                    pass
                continue
            existing.add(f if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{f}")
    return existing, removed


# -- one page -----------------------------------------------------------------------------------------
def failure_reason(e: BaseException) -> str:
    """A one-line reason for a page that could not be read."""
    if isinstance(e, HTRError):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory while reading this page"
    if isinstance(e, OSError):
        return f"cannot read the file: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def check_file_size(size: int, source: str) -> None:
    """Refuse, before reading it, a file too large to be a page the pipeline accepts."""
    if size > MAX_FILE_BYTES:
        raise DataError(f"{source}: file is {size / 2**20:,.0f} MiB, more than the "
                        f"{MAX_FILE_BYTES / 2**20:,.0f} MiB a page image may have")


def recognize_page(pipeline: Any, data: bytes, source: str, fmt: str) -> tuple[str, Any, Any]:
    """Decode ``data``, run the page pipeline, render ``fmt``: (text, PageResult, gray image)."""
    from htr_tf.fileio import decode_image
    from htr_tf.outputs import render

    gray = decode_image(data, source)
    result = pipeline.run(gray, id=source)
    return render(result, fmt, image_filename=source), result, gray


def page_record(task: PageTask, suffix: str, status: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    """The record of one page: ``status`` is done, no-text, skipped or failed."""
    rec: dict[str, Any] = {"image": task.source, "output": task.output(suffix), "status": status}
    if reason:
        rec["reason"] = reason
    rec.update(extra)
    return rec


def ocr_page(pipeline: Any, task: PageTask, out_dir: Path, fmt: str, overlay_dir: Path | None = None,
             overwrite: bool = False) -> dict[str, Any]:
    """Read one page and write its output (and overlay) atomically; returns its record.

    Anything wrong with the page gives a ``failed`` record; failing to write the output
    raises :class:`HTRError` (it would fail for every page).
    """
    from htr_tf.fileio import atomic_write_text
    from htr_tf.outputs import SUFFIXES, write_overlay

    suffix = SUFFIXES[fmt]
    target = out_dir / task.output(suffix)
    if not overwrite and target.exists():          # another run wrote it meanwhile
        return page_record(task, suffix, "skipped")
    t0 = time.perf_counter()
    try:
        if os.path.isdir(task.source):
            raise DataError(f"{task.source}: is a directory, not an image")
        check_file_size(os.path.getsize(task.source), task.source)
        with open(task.source, "rb") as f:
            data = f.read()
        text, result, gray = recognize_page(pipeline, data, task.source, fmt)
    except FileNotFoundError:
        return page_record(task, suffix, "failed", f"{task.source}: no such file")
    except Exception as e:  # noqa: BLE001 - one bad page never stops the batch
        return page_record(task, suffix, "failed", failure_reason(e))
    try:
        if overlay_dir is not None:
            write_overlay(overlay_dir / task.output(".png"), gray, result)
        atomic_write_text(target, text)             # last: its presence means the page is done
    except OSError as e:
        raise HTRError(f"cannot write {target}: {e.strerror or e}; stopping (the pages written so far "
                       "are kept: run the same command again to go on)") from None
    seconds = round(time.perf_counter() - t0, 4)
    if result.warnings:
        return page_record(task, suffix, "no-text", "; ".join(result.warnings), lines=0, seconds=seconds)
    return page_record(task, suffix, "done", lines=len(result.lines), seconds=seconds)


# -- worker processes -----------------------------------------------------------------------------
def threads_per_worker(workers: int) -> int:
    """This machine's cores (those this process may use) shared out between ``workers``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def limit_threads(threads: int) -> None:
    """Limit TensorFlow (read at its start from the environment), OpenMP and OpenCV to
    ``threads`` threads; call before TensorFlow starts."""
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


_WORKER: dict[str, Any] = {}


def _init_worker(factory: Callable[[], Any], threads: int, job: dict[str, Any], ready: Any) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    limit_threads(threads)
    _WORKER["job"] = job
    try:
        _WORKER["pipeline"] = factory()
        with ready.get_lock():
            ready.value += 1
    except HTRError as e:
        _WORKER["error"] = e
    except Exception as e:  # noqa: BLE001 - reported by the parent, which stops the batch
        _WORKER["error"] = HTRError(f"a worker process could not load the page pipeline: {type(e).__name__}: {e}")


def _work(task: PageTask) -> dict[str, Any]:
    if "error" in _WORKER:
        return {"status": "fatal", "error": _WORKER["error"]}
    try:
        rec = ocr_page(_WORKER["pipeline"], task, **_WORKER["job"])
    except HTRError as e:
        return {"status": "fatal", "error": e}
    rec["pid"], rec["peak_rss_mb"] = os.getpid(), _peak_rss_mb()
    return rec


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- the batch ------------------------------------------------------------------------------------
@dataclass
class BatchOptions:
    """Where and how a batch writes: ``fmt`` is a name in :data:`htr_tf.outputs.FORMATS`."""

    out_dir: Path
    fmt: str = "text"
    overlay_dir: Path | None = None
    workers: int = 1
    overwrite: bool = False
    #: Show a progress bar (pages/s, ETA); None: when the stream is a terminal.
    progress: bool | None = None

    def __post_init__(self) -> None:
        from htr_tf.outputs import FORMATS

        if self.fmt not in FORMATS:
            raise ConfigError(f"unknown output format {self.fmt!r}; choose one of {', '.join(FORMATS)}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        self.out_dir = Path(self.out_dir)
        self.overlay_dir = Path(self.overlay_dir) if self.overlay_dir is not None else None


@dataclass
class BatchSummary:
    """What a batch did: page counts by outcome, seconds, and where the error records are."""

    total: int = 0
    done: int = 0
    no_text: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    workers: int = 1
    threads: int = 0
    errors_file: str = ""
    peak_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pages_per_second(self) -> float:
        read = self.done + self.no_text + self.failed
        return read / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        s = (f"{self.total} page(s): {self.done + self.no_text} done"
             + (f" ({self.no_text} without text)" if self.no_text else "")
             + f", {self.skipped} skipped (already written), {self.failed} failed")
        if self.failed or self.no_text:
            s += f" (see {self.errors_file})"
        return s + f"; {self.seconds:.1f} s, {self.pages_per_second:.2f} pages/s"


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line with a single write (O_APPEND), so concurrent runs never interleave."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class _Progress:
    """A tqdm bar (pages/s, ETA) on a terminal; elsewhere (a log file) one line every
    ``every`` seconds with the same numbers."""

    def __init__(self, total: int, show: bool, stream: TextIO, every: float = 60.0) -> None:
        self.bar, self.total, self.stream, self.every = None, total, stream, every
        self.count, self.t0 = 0, time.perf_counter()
        self.next_line = self.t0 + every
        if show and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="page", desc="pages", file=stream, smoothing=0.05,
                            dynamic_ncols=True)

    def update(self, summary: BatchSummary) -> None:
        self.count += 1
        if self.bar is not None:
            if summary.failed:
                self.bar.set_postfix_str(f"failed {summary.failed}", refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now >= self.next_line and self.count < self.total:
            self.next_line = now + self.every
            rate = self.count / (now - self.t0)
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            print(f"htr: {self.count}/{self.total} pages, {rate:.2f} pages/s, {summary.failed} failed, "
                  f"ETA {_duration(eta)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _pages_in_pool(todo: Sequence[PageTask], factory: Callable[[], Any], workers: int, threads: int,
                   job: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Records of ``todo`` read by ``workers`` spawned processes, as they finish.

    At most two pages per worker are in flight.  When a worker dies, the pool is started
    again and the pages that were in flight are read again one at a time, so the page that
    kills a worker is found and recorded as failed while the others are read.  Workers that
    die before any of them has loaded the models stop the batch.
    """
    import multiprocessing as mp

    from htr_tf.outputs import SUFFIXES

    queue, suspects = deque(todo), deque()
    retried: set[PageTask] = set()
    ctx = mp.get_context("spawn")  # not fork: TensorFlow's threads do not survive a fork
    while queue or suspects:
        ready = ctx.Value("i", 0)
        ex = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                    initargs=(factory, threads, job, ready))
        running: dict[cf.Future, PageTask] = {}
        try:
            while queue or suspects or running:
                if suspects:                      # a suspect runs alone: a death is its own
                    if not running:
                        running[ex.submit(_work, suspects[0])] = suspects[0]
                        suspects.popleft()
                else:
                    while queue and len(running) < 2 * workers:
                        running[ex.submit(_work, queue[0])] = queue[0]
                        queue.popleft()
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    rec = fut.result()           # BrokenProcessPool when a worker died
                    task = running.pop(fut)
                    if rec.get("status") == "fatal":
                        raise rec["error"]
                    if rec["status"] == "skipped" and task in retried:
                        rec["status"] = "done"   # written by this run before the pool broke
                    yield rec
        except cf.process.BrokenProcessPool:
            if ready.value == 0:
                raise HTRError("the worker processes died while loading the models (see the messages above; "
                               "try --workers 1)") from None
            lost = []
            for fut, t in running.items():
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    yield fut.result()
                else:
                    lost.append(t)
            if len(lost) == 1:                    # it was the only page in flight
                yield page_record(lost[0], SUFFIXES[job["fmt"]], "failed",
                                  "the worker process died while reading this page (out of memory, "
                                  "or a crash in native code)")
            else:
                suspects.extend(lost)
                retried.update(lost)
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


def run_batch(tasks: Sequence[PageTask], pipeline_factory: Callable[[], Any], options: BatchOptions,
              stream: TextIO | None = None) -> BatchSummary:
    """Read every page of ``tasks`` that has no output yet; returns the summary.

    ``pipeline_factory()`` builds the page pipeline (an object with ``run(gray, id=...)``
    returning a :class:`~htr_tf.results.PageResult`); with ``workers > 1`` it must be
    picklable (a module-level function or a ``functools.partial`` of one), as each process
    calls it once.  Messages and the progress bar go to ``stream`` (stderr).
    """
    from htr_tf.outputs import SUFFIXES

    stream = stream if stream is not None else sys.stderr
    o = options
    out_dir = check_output_dir(o.out_dir)
    if o.overlay_dir is not None:
        check_output_dir(o.overlay_dir, "overlay directory")
    suffix = SUFFIXES[o.fmt]
    existing, stale = _scan_output(out_dir, STALE_TEMP_SECONDS)
    todo = [t for t in tasks if o.overwrite or t.output(suffix) not in existing]
    workers = max(1, min(o.workers, len(todo)))
    threads = threads_per_worker(workers) if o.workers > 1 else 0
    s = BatchSummary(total=len(tasks), skipped=len(tasks) - len(todo), workers=workers, threads=threads,
                     errors_file=str(out_dir / ERRORS_FILE))
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    print(f"htr: {len(tasks)} page(s), {s.skipped} already written, {len(todo)} to read"
          + (f" by {workers} processes x {threads} thread(s)" if o.workers > 1 and todo else "")
          + (f"; removed {stale} stale temporary file(s)" if stale else ""), file=stream)
    job = {"out_dir": out_dir, "fmt": o.fmt, "overlay_dir": o.overlay_dir, "overwrite": o.overwrite}
    show = o.progress if o.progress is not None else bool(getattr(stream, "isatty", lambda: False)())
    bar = _Progress(len(todo), show, stream, PROGRESS_LINE_SECONDS)
    t0 = time.perf_counter()
    try:
        if not todo:
            records: Iterable[dict[str, Any]] = ()
        elif o.workers == 1:
            pipeline = pipeline_factory()
            records = (ocr_page(pipeline, t, **job) for t in todo)
        else:
            records = _pages_in_pool(todo, pipeline_factory, workers, threads, job)
        for rec in records:
            status = rec["status"]
            if status == "skipped":
                s.skipped += 1
            elif status == "failed":
                s.failed += 1
            elif status == "no-text":
                s.no_text += 1
            else:
                s.done += 1
            if "peak_rss_mb" in rec:
                peaks = s.extra.setdefault("worker_peak_rss_mb", {})
                peaks[rec["pid"]] = max(peaks.get(rec["pid"], 0.0), rec.pop("peak_rss_mb"))
            if status in ("failed", "no-text"):
                _append_jsonl(out_dir / ERRORS_FILE, {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                      "run": run_id, "host": socket.gethostname(), **rec})
            bar.update(s)
    finally:
        bar.close()
    s.seconds = round(time.perf_counter() - t0, 3)
    s.peak_rss_mb = _peak_rss_mb()
    return s
