"""`htr beam` / `htr_tf.beam_pipeline`: Apache Beam batch OCR on the DirectRunner.

The multi-process test runs 2 DirectRunner workers over the stand-in page pipeline of
test_batch (no TensorFlow in the workers, so it is fast); the CLI test runs the bundled
models in process.  Skipped when the beam extra is not installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam", reason="Apache Beam is not installed (pip install \"htr-tf[beam]\")")

from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from htr_tf.batch import ERRORS_FILE  # noqa: E402
from htr_tf.beam_pipeline import INDEX_FILE, build_pipeline, counts, input_specs, write_atomically  # noqa: E402
from htr_tf.fileio import write_png  # noqa: E402
from test_batch import _page, mean_pipeline  # noqa: E402

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture
def pages(tmp_path) -> Path:
    """Six pages in subfolders, a corrupt and an empty one, a blank page, a hidden folder and a non-image."""
    root = tmp_path / "in"
    for i in range(6):
        write_png(root / f"box{i % 2}" / f"p{i}.png", _page(i + 4))
    (root / "box1" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (root / "empty.tif").write_bytes(b"")
    write_png(root / "blank.png", np.full((50, 50), 255, np.uint8))
    write_png(root / ".thumbs" / "t.png", _page(1))
    (root / "readme.txt").write_text("x")
    return root


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _run(inputs: list[str], out: Path, extra: list[str], fmt: str = "json") -> dict[str, int]:
    p = beam.Pipeline(options=PipelineOptions(extra))
    build_pipeline(p, inputs, str(out), mean_pipeline, fmt)
    result = p.run()
    result.wait_until_finish()
    return counts(result)


def test_direct_runner_two_processes_resume_and_errors(pages, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "out"
    multi = ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    c = _run([str(pages)], out, multi)
    assert c == {"done": 6, "no-text": 1, "skipped": 0, "failed": 2}
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted([ERRORS_FILE, INDEX_FILE, "blank.json"] + [f"box{i % 2}/p{i}.json" for i in range(6)])
    doc = json.loads((out / "box0" / "p2.json").read_text())
    assert doc["id"] == str(pages / "box0" / "p2.png") and doc["text"].startswith("mean ")
    index = {r["output"]: r for r in _records(out / INDEX_FILE)}
    assert len(index) == 9 and index["box1/corrupt.json"]["status"] == "failed"
    assert "not a readable image" in index["box1/corrupt.json"]["reason"]
    assert index["empty.json"]["reason"].endswith("file is empty")
    errors = {r["output"]: r["status"] for r in _records(out / ERRORS_FILE)}
    assert errors == {"box1/corrupt.json": "failed", "empty.json": "failed", "blank.json": "no-text"}

    (out / "box1" / "p3.json").unlink()                                  # resume: only what is missing
    c = _run([str(pages)], out, multi)
    assert c == {"done": 1, "no-text": 0, "skipped": 6, "failed": 2}
    assert {r["output"] for r in _records(out / INDEX_FILE) if r["status"] == "done"} == {"box1/p3.json"}
    assert not [p for p in out.rglob(".*")]                              # no temporary file left


def test_records_names_and_clashes_with_assert_that(pages, tmp_path):
    write_png(pages / "box0" / "p0.bmp", _page(9))                       # same output name as box0/p0.png
    out = tmp_path / "out"
    with beam.Pipeline() as p:
        records = build_pipeline(p, [str(pages / "box0"), str(pages / "box1" / "p1.png"), str(tmp_path / "nope.png")],
                                 str(out), mean_pipeline, "text")
        assert_that(records | beam.Map(lambda r: (r["output"], r["status"])),
                    equal_to([("p0.txt", "failed"), ("p0.txt", "failed"), ("p2.txt", "done"),
                              ("p4.txt", "done"), ("p1.txt", "done"), ("nope.txt", "failed")]))
    reasons = {Path(r["image"]).name: r["reason"] for r in _records(out / ERRORS_FILE)}
    assert "2 inputs would write the same output name" in reasons["p0.bmp"]
    assert reasons["nope.png"].endswith("no such file")


def test_input_specs_and_atomic_write(pages, tmp_path):
    d, f, g = input_specs([str(pages), str(pages / "blank.png"), str(pages / "box*" / "*.png")])
    assert d == (str(pages / "**"), str(pages), True)
    assert f == (str(pages / "blank.png"), str(pages), False)
    assert g == (str(pages / "box*" / "*.png"), str(pages), True)
    target = tmp_path / "a" / "b.txt"
    write_atomically(str(target), b"whole")
    assert target.read_bytes() == b"whole" and os.listdir(target.parent) == ["b.txt"]


def test_beam_cli_with_bundled_models(tmp_path, capsys):
    from conftest import render_note
    from htr_tf.cli import main

    src = tmp_path / "in"
    write_png(src / "note.png", render_note(["to the Captain"]))
    (src / "cut.png").write_bytes((src / "note.png").read_bytes()[:100])
    out = tmp_path / "out"
    rc = main(["beam", "--input", str(src), "--output", str(out), "--format", "page-xml", "--decoder", "greedy",
               "--runner", "DirectRunner"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 page(s): 1 done, 0 skipped (already written), 1 failed" in err
    assert (out / "note.xml").read_text().count("<TextLine") == 1
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["beam", "--input", str(src), "--output", str(blocker / "o")]) == 1
    assert "cannot write to the output directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):                                      # only beam passes options on
        main(["ocr", str(src), "--runner", "DirectRunner"])
    assert "unrecognized arguments: --runner DirectRunner" in capsys.readouterr().err
