"""Batch OCR (`htr_tf.batch`): page discovery and names, resume, bad pages, worker processes.

Most tests run the batch engine over a small stand-in for the page pipeline (a page's "text"
is its mean grey level), so they are fast and exact; `test_ocr_cli_batch` and
`test_ocr_cli_workers` run the bundled models through `htr ocr`.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from htr_tf.batch import (ERRORS_FILE, BatchOptions, PageTask, check_output_dir, find_pages, relative_name,
                          run_batch, threads_per_worker)
from htr_tf.errors import ConfigError, HTRError
from htr_tf.fileio import write_png
from htr_tf.results import LineResult, PageResult, RegionResult


class MeanPipeline:
    """Stands in for `Pipeline`: one line whose text is the page's mean grey level (and, when
    asked, the TF thread limit this process was given); blank pages have no lines. Sleeps
    ``delay`` seconds per page; a page whose id contains ``crash`` kills the process."""

    def __init__(self, delay: float = 0.0, threads: bool = False) -> None:
        self.delay, self.threads = delay, threads

    def run(self, gray: np.ndarray, id: str | None = None) -> PageResult:
        if "crash" in (id or ""):
            os._exit(3)
        time.sleep(self.delay)
        page = PageResult(width=gray.shape[1], height=gray.shape[0], id=id)
        if gray.min() == gray.max():
            page.warnings.append("no text lines found")
            return page
        text = f"mean {gray.mean():.3f}"
        if self.threads:
            text += f" threads {os.environ.get('TF_NUM_INTRAOP_THREADS')} pid {os.getpid()}"
        page.regions.append(RegionResult(box=(0, 0, gray.shape[1], gray.shape[0]), confidence=1.0,
                                         lines=[LineResult(text, 0.9, box=(1, 1, 5, 5))]))
        return page


def mean_pipeline(delay: float = 0.0, threads: bool = False) -> MeanPipeline:
    return MeanPipeline(delay, threads)


def _page(value: int, size: int = 40) -> np.ndarray:
    img = np.full((size, size), 255, np.uint8)
    img[10:20, 5: 5 + value % 30] = value % 200
    return img


@pytest.fixture
def collection(tmp_path) -> Path:
    """scans/ with pages in nested folders, a hidden folder, a non-image, and bad pages."""
    root = tmp_path / "scans"
    for rel, v in [("b/p2.png", 2), ("a/p1.png", 1), ("a/deep/p3.tif", 3), ("p0.jpg", 0), (".cache/h.png", 9)]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png"):
            write_png(root / rel, _page(v + 5))
        else:
            import cv2

            cv2.imwrite(str(root / rel), _page(v + 5))
    (root / "notes.txt").write_text("not a page")
    (root / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "b" / "empty.png").write_bytes(b"")
    write_png(root / "b" / "blank.png", np.full((40, 40), 255, np.uint8))
    return root


def _outputs(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


# -- finding pages -------------------------------------------------------------------------------
def test_find_pages_walks_sorted_and_names_keep_subfolders(collection, tmp_path):
    tasks, notes = find_pages([str(collection)])
    assert [t.name for t in tasks] == ["a/deep/p3", "a/p1", "b/blank", "b/corrupt", "b/empty", "b/p2", "p0"]
    assert all(Path(t.source).is_file() for t in tasks) and not notes

    tasks, _ = find_pages([str(collection / "**" / "p*.png")])        # pattern: names below its fixed part
    assert [t.name for t in tasks] == ["a/p1", "b/p2"]
    tasks, _ = find_pages([str(collection / "b" / "p2.png"), str(tmp_path / "gone.png")])
    assert [t.name for t in tasks] == ["p2", "gone"]                  # a missing file is a (failing) page

    empty = tmp_path / "empty"
    empty.mkdir()
    tasks, notes = find_pages([str(empty), str(collection / "*.gif"), str(collection / "p0.jpg")])
    assert [t.name for t in tasks] == ["p0"] and len(notes) == 2 and "no image" in notes[0]
    out = collection / "a" / "out"                                    # the output dir is never an input
    write_png(out / "x.png", _page(1))
    assert "a/out/x" not in [t.name for t in find_pages([str(collection)], exclude=[str(out)])[0]]
    assert "a/out/x" in [t.name for t in find_pages([str(collection)])[0]]


def test_find_pages_refuses_two_inputs_with_one_output_name(collection):
    write_png(collection / "a" / "p1.bmp", _page(3))
    with pytest.raises(ConfigError, match=r"would be written by two inputs: .*p1.bmp and .*p1.png"):
        find_pages([str(collection)])
    tasks, _ = find_pages([str(collection / "a" / "*.png"), str(collection / "a" / "p1.png")])
    assert [t.name for t in tasks] == ["p1"]                           # the same file twice is read once


def test_relative_name():
    assert relative_name("gs://b/scans/box 1/p.tif", "gs://b/scans") == "box 1/p"
    assert relative_name("/x/y/p.png", "/other") == "p"
    assert relative_name("p.png", ".") == "p" and relative_name("./d/p.png", ".") == "d/p"
    assert relative_name("/d/.hidden", "/d") == ".hidden"


# -- one process ---------------------------------------------------------------------------------
def test_batch_writes_every_page_and_records_bad_ones(collection, tmp_path):
    out = tmp_path / "out"
    tasks, _ = find_pages([str(collection)])
    s = run_batch(tasks, mean_pipeline, BatchOptions(out, "json"), stream=io.StringIO())
    assert (s.total, s.done, s.no_text, s.skipped, s.failed) == (7, 4, 1, 0, 2)
    assert _outputs(out) == ["a/deep/p3.json", "a/p1.json", "b/blank.json", "b/p2.json", ERRORS_FILE, "p0.json"]
    doc = json.loads((out / "a" / "p1.json").read_text())
    assert doc["id"].endswith("p1.png") and doc["text"].startswith("mean ")
    records = [json.loads(x) for x in (out / ERRORS_FILE).read_text().splitlines()]
    by_name = {Path(r["image"]).name: r for r in records}
    assert set(by_name) == {"corrupt.png", "empty.png", "blank.png"}
    assert by_name["corrupt.png"]["status"] == "failed" and "not a readable image" in by_name["corrupt.png"]["reason"]
    assert by_name["empty.png"]["reason"].endswith("file is empty")
    assert by_name["blank.png"]["status"] == "no-text" and by_name["blank.png"]["output"] == "b/blank.json"
    assert len({r["run"] for r in records}) == 1 and "time" in records[0]

    again = run_batch(tasks, mean_pipeline, BatchOptions(out, "json"), stream=io.StringIO())
    assert (again.done, again.no_text, again.skipped, again.failed) == (0, 0, 5, 2)  # only the failed re-read
    redo = run_batch(tasks, mean_pipeline, BatchOptions(out, "json", overwrite=True), stream=io.StringIO())
    assert (redo.done, redo.skipped) == (4, 0)


def test_huge_image_is_refused_without_stopping(tmp_path, monkeypatch):
    import htr_tf.batch as batch

    d = tmp_path / "in"
    write_png(d / "a.png", _page(1))
    write_png(d / "big.png", np.zeros((3000, 3000), np.uint8))        # refused by its header, not decoded
    write_png(d / "c.png", _page(2))
    monkeypatch.setattr("htr_tf.fileio.MAX_IMAGE_PIXELS", 1_000_000)
    tasks, _ = find_pages([str(d)])
    s = run_batch(tasks, mean_pipeline, BatchOptions(tmp_path / "out"), stream=io.StringIO())
    assert (s.done, s.failed) == (2, 1)
    rec = json.loads((tmp_path / "out" / ERRORS_FILE).read_text())
    assert rec["image"].endswith("big.png") and "more than the 1,000,000 accepted" in rec["reason"]
    monkeypatch.setattr(batch, "MAX_FILE_BYTES", 10)                   # too large a file: not even read
    s = run_batch(tasks, mean_pipeline, BatchOptions(tmp_path / "out2"), stream=io.StringIO())
    assert s.failed == 3 and "MiB a page image may have" in (tmp_path / "out2" / ERRORS_FILE).read_text()


def test_progress_bar_and_summary(collection, tmp_path, monkeypatch):
    import io

    tasks, _ = find_pages([str(collection / "a")])
    stream = io.StringIO()
    s = run_batch(tasks, mean_pipeline, BatchOptions(tmp_path / "o", progress=True), stream=stream)
    err = stream.getvalue()
    assert "2 page(s), 0 already written, 2 to read" in err
    assert "2/2" in err and "page/s" in err                            # tqdm: count, rate
    assert s.line().startswith("2 page(s): 2 done, 0 skipped (already written), 0 failed;")
    assert "pages/s" in s.line()

    monkeypatch.setattr("htr_tf.batch.PROGRESS_LINE_SECONDS", 0.0)   # no terminal: progress lines
    stream = io.StringIO()
    tasks, _ = find_pages([str(collection)])
    run_batch(tasks, mean_pipeline, BatchOptions(tmp_path / "o2", progress=False), stream=stream)
    lines = [x for x in stream.getvalue().splitlines() if "ETA" in x]
    assert len(lines) == 6 and lines[0].startswith("htr: 1/7 pages, ") and "pages/s, 0 failed, ETA " in lines[0]


def test_unwritable_output_dir_fails_at_once(collection, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")

    def never() -> MeanPipeline:
        raise AssertionError("models must not be loaded when the output cannot be written")

    tasks, _ = find_pages([str(collection)])
    with pytest.raises(ConfigError, match="cannot write to the output directory .*file/out"):
        run_batch(tasks, never, BatchOptions(blocker / "out"))
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_output_dir(blocker)
    if os.geteuid() != 0:                                               # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="Permission denied"):
            run_batch(tasks, never, BatchOptions(ro))


def test_two_runs_into_one_directory_leave_only_whole_files(collection, tmp_path):
    out = tmp_path / "out"
    tasks, _ = find_pages([str(collection)])
    tasks = [t for t in tasks if "corrupt" not in t.name and "empty" not in t.name] * 1
    results = []

    def go() -> None:
        results.append(run_batch(tasks, lambda: MeanPipeline(delay=0.05), BatchOptions(out, "json"),
                                 stream=io.StringIO()))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.done + r.no_text for r in results) >= len(tasks)      # each page read at least once
    assert all(r.failed == 0 for r in results)
    for t in tasks:
        json.loads((out / f"{t.name}.json").read_text())               # every file whole
    assert not [p for p in out.rglob(".*")]                             # no temporary file left


KILLED_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_batch import MeanPipeline
    from htr_tf.batch import BatchOptions, find_pages, run_batch
    tasks, _ = find_pages([{src!r}])
    s = run_batch(tasks, lambda: MeanPipeline(delay=0.15), BatchOptions({out!r}, "page-xml"))
    print(s.done)
""")


def test_killed_run_resumes_with_only_what_is_missing(tmp_path):
    import xml.etree.ElementTree as ET

    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(12):
        write_png(src / f"p{i:02d}.png", _page(i + 3))
    stale = out / ".p99.xml.abc.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("<half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), src=str(src), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(out.glob("p*.xml"))) < 4 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)                                    # at whatever point it is
    proc.wait()
    written = sorted(p.name for p in out.glob("p*.xml"))
    assert 4 <= len(written) < 12
    for name in written:
        ET.parse(out / name)                                             # whole XML documents only
    assert not stale.exists()                                            # a killed run's leftover went
    tasks, _ = find_pages([str(src)])
    s = run_batch(tasks, mean_pipeline, BatchOptions(out, "page-xml"), stream=io.StringIO())
    assert (s.skipped, s.done) == (len(written), 12 - len(written))
    assert sorted(p.name for p in out.glob("p*.xml")) == [f"p{i:02d}.xml" for i in range(12)]
    assert not list(out.glob(".*"))


# -- worker processes ------------------------------------------------------------------------------
def test_workers_split_threads_and_survive_a_dying_worker(tmp_path):
    import functools

    src = tmp_path / "src"
    for i in range(8):
        write_png(src / f"p{i}.png", _page(i + 3))
    write_png(src / "p3-crash.png", _page(1))
    tasks, _ = find_pages([str(src)])
    factory = functools.partial(mean_pipeline, 0.1, True)
    s = run_batch(tasks, factory, BatchOptions(tmp_path / "out", workers=2), stream=io.StringIO())
    assert (s.done, s.failed, s.workers) == (8, 1, 2)
    texts = [(tmp_path / "out" / f"p{i}.txt").read_text() for i in range(8)]
    assert all(f"threads {threads_per_worker(2)} pid" in t for t in texts)
    assert len(s.extra["worker_peak_rss_mb"]) >= 2                      # several processes answered
    rec = json.loads((tmp_path / "out" / ERRORS_FILE).read_text())
    assert rec["image"].endswith("p3-crash.png") and "worker process died" in rec["reason"]


def test_worker_model_error_stops_the_batch(tmp_path):
    import functools

    from htr_tf.errors import ModelError

    write_png(tmp_path / "p.png", _page(4))
    write_png(tmp_path / "q.png", _page(5))
    tasks = [PageTask(str(tmp_path / "p.png"), "p"), PageTask(str(tmp_path / "q.png"), "q")]
    with pytest.raises(ModelError, match="no model here"):
        run_batch(tasks, functools.partial(_raise_model_error, "no model here"),
                  BatchOptions(tmp_path / "out", workers=2), stream=io.StringIO())


    with pytest.raises(HTRError, match="died while loading the models"):
        run_batch(tasks, functools.partial(os._exit, 3), BatchOptions(tmp_path / "out", workers=2),
                  stream=io.StringIO())


def _raise_model_error(msg: str) -> MeanPipeline:
    from htr_tf.errors import ModelError

    raise ModelError(msg)


# -- htr ocr with the bundled models -----------------------------------------------------------------
@pytest.fixture(scope="module")
def note_collection(tmp_path_factory) -> Path:
    """Two notes in subfolders (two and one text lines), a corrupt, an empty and a blank page."""
    from conftest import render_note

    root = tmp_path_factory.mktemp("collection")
    write_png(root / "box1" / "note0.png", render_note(["the Orders of October", "Sir, it was delivered"]))
    write_png(root / "box2" / "note1.png", render_note(["to the Captain"]))
    (root / "box2" / "corrupt.png").write_bytes((root / "box1" / "note0.png").read_bytes()[:300])
    (root / "empty.jpg").write_bytes(b"")
    write_png(root / "blank.png", np.full((500, 400), 250, np.uint8))
    return root


def test_ocr_cli_batch(note_collection, tmp_path, capsys):
    from htr_tf.cli import main

    out = tmp_path / "out"
    rc = main(["ocr", str(note_collection), "--out", str(out), "--format", "json"])
    cap = capsys.readouterr()
    assert rc == 1 and cap.out == ""                                    # two pages failed, the rest written
    assert "5 page(s): 3 done (1 without text), 0 skipped (already written), 2 failed" in cap.err
    assert _outputs(out) == ["blank.json", "box1/note0.json", "box2/note1.json", ERRORS_FILE]
    assert [sum(len(r["lines"]) for r in json.loads((out / f"box{i + 1}" / f"note{i}.json").read_text())["regions"])
            for i in range(2)] == [2, 1]
    records = {Path(r["image"]).name: r for r in map(json.loads, (out / ERRORS_FILE).read_text().splitlines())}
    assert records["corrupt.png"]["status"] == "failed" and "not a readable image" in records["corrupt.png"]["reason"]
    assert records["empty.jpg"]["reason"].endswith("file is empty")
    assert records["blank.png"]["status"] == "no-text"

    rc = main(["ocr", str(note_collection), "--out", str(out), "--format", "json"])
    assert rc == 1 and "3 skipped (already written), 2 failed" in capsys.readouterr().err

    assert main(["ocr", str(note_collection / "box1"), str(note_collection / "box2" / "note1.png")]) == 0
    text = capsys.readouterr().out                                     # directories work without --out too
    assert text.count("<==") == 2 and len([x for x in text.split("\n") if x.strip()]) == 2 + 2 + 1

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["ocr", str(note_collection), "--out", str(blocker / "out")]) == 1
    assert "cannot write to the output directory" in capsys.readouterr().err
    assert main(["ocr", str(note_collection), "--workers", "2"]) == 1
    assert "go with --out DIR" in capsys.readouterr().err
    assert main(["ocr", str(tmp_path / "nothing*.png")]) == 1
    assert "no image file matches this pattern" in capsys.readouterr().err


def test_ocr_cli_pipeline_factory_pickles(note_collection):
    """What `--workers` sends to each process: the options and the function that builds the pipeline."""
    import functools
    import pickle

    from htr_tf.cli import build_parser
    from htr_tf.commands.ocr import pipeline_from_args

    a = build_parser().parse_args(["ocr", str(note_collection), "--out", "x", "--workers", "2", "--decoder", "beam"])
    factory = pickle.loads(pickle.dumps(functools.partial(pipeline_from_args, a)))
    assert factory.args[0].decoder == "beam" and factory.func is pipeline_from_args


@pytest.mark.slow
def test_ocr_cli_workers(note_collection, tmp_path, capsys):
    """--workers 2 writes what one process writes (three TensorFlow start-ups: slow)."""
    from htr_tf.cli import main

    pages = [str(note_collection / "box1"), str(note_collection / "box2" / "note1.png")]
    assert main(["ocr", *pages, "--out", str(tmp_path / "one")]) == 0
    assert main(["ocr", *pages, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert "by 2 processes" in capsys.readouterr().err
    assert _outputs(tmp_path / "two") == ["note0.txt", "note1.txt"] == _outputs(tmp_path / "one")
    for name in _outputs(tmp_path / "one"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
