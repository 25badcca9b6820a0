"""`htr ocr --level line`, `htr evaluate recognizer` and `htr export recognizer` through `htr_tf.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import render_note, render_text_line
from htr_tf.cli import main
from htr_tf.fileio import write_png


@pytest.fixture(scope="module")
def line_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("lines")
    paths = []
    for i, text in enumerate(["hello world", "Sir, it's 1755", "of"]):
        p = d / f"line{i}.png"
        write_png(p, render_text_line(text, height=40 + 8 * i, seed=i))
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def expected_texts(tiny_recognizer_dir, line_images):
    from htr_tf.recognize import recognize_crops
    from htr_tf.fileio import read_image
    from htr_tf.models.recognizer import Recognizer

    rec = Recognizer.load(tiny_recognizer_dir)
    return [d.text for d in recognize_crops(rec, [read_image(p) for p in line_images])]


def test_ocr_line_text(tiny_recognizer_dir, line_images, expected_texts, capsys):
    rc = main(["ocr", "--level", "line", "--decoder", "greedy", "--model", str(tiny_recognizer_dir), *line_images])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.split("\n")[:-1] == expected_texts  # one line per image, in order


def test_ocr_jit_reads_the_same_and_needs_the_local_backend(tiny_recognizer_dir, line_images, expected_texts,
                                                            capsys):
    rc = main(["ocr", "--level", "line", "--decoder", "greedy", "--jit", "--model", str(tiny_recognizer_dir),
               *line_images])
    assert rc == 0 and capsys.readouterr().out.split("\n")[:-1] == expected_texts
    rc = main(["ocr", "--level", "line", "--jit", "--backend", "tflite", "--model", str(tiny_recognizer_dir),
               line_images[0]])
    assert rc != 0 and "--jit" in capsys.readouterr().err


def test_confidence_floors_from_the_command_line_override_only_what_is_given():
    from htr_tf.cli import build_parser
    from htr_tf.commands.ocr import confidence_options
    from htr_tf.pipeline import PipelineOptions

    parse = build_parser().parse_args
    assert confidence_options(parse(["ocr", "p.png"])) == {}
    assert PipelineOptions(**confidence_options(parse(["ocr", "p.png"]))).min_relative_confidence == 0.75
    a = parse(["evaluate", "pipeline", "--data", "R", "--min-line-confidence", "0.3", "--min-relative-confidence", "0"])
    assert confidence_options(a) == {"min_line_confidence": 0.3, "min_relative_confidence": 0.0}


def test_ocr_uses_the_best_installed_decoder_and_says_which(tiny_recognizer_dir, line_images, capsys):
    from htr_tf.cli import build_parser
    from htr_tf.decode import default_decoder, lm_extra_installed

    assert default_decoder() == ("beam+lm" if lm_extra_installed() else "greedy")
    rc = main(["ocr", "--level", "line", "--model", str(tiny_recognizer_dir), "--format", "json", line_images[0]])
    assert rc == 0 and json.loads(capsys.readouterr().out)["decoder"] == default_decoder()
    sub = build_parser()._subparsers._group_actions[0].choices["ocr"]
    help_text = " ".join(sub.format_help().split())
    assert "beam+lm (word 4-gram beam search) with the lm extra, greedy without it" in help_text
    assert f"here: {default_decoder()}" in help_text


def test_ocr_line_json_and_beam(tiny_recognizer_dir, line_images, capsys):
    rc = main(["ocr", "--level", "line", "--model", str(tiny_recognizer_dir), "--format", "json",
               "--decoder", "beam", "--beam-width", "4", *line_images])
    lines = capsys.readouterr().out.strip().split("\n")
    assert rc == 0 and len(lines) == 3
    for path, line in zip(line_images, lines):
        r = json.loads(line)
        assert r["image"] == path and r["decoder"] == "beam"
        assert 0.0 <= r["confidence"] <= 1.0
        assert len(r["char_confidences"]) == len(r["char_boxes"]) == len(r["text"])
        x0, y0, x1, y1 = r["box"]
        assert (x0, y0) == (0.0, 0.0) and x1 > 0 and y1 > 0
        assert all(x0 <= b[0] <= b[2] <= x1 for b in r["char_boxes"])
        assert " ".join(w["text"] for w in r["words"]) == " ".join(r["text"].split())


def test_ocr_bad_image_is_reported_and_others_still_run(tiny_recognizer_dir, line_images,
                                                         expected_texts, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    rc = main(["ocr", "--level", "line", "--decoder", "greedy", "--model", str(tiny_recognizer_dir),
               line_images[0], str(bad), str(tmp_path / "missing.jpg"), line_images[1]])
    cap = capsys.readouterr()
    assert rc == 1
    assert cap.out.split("\n")[:-1] == expected_texts[:2]
    errors = cap.err.strip().split("\n")
    assert any("broken.png" in e and "not a readable image" in e for e in errors)
    assert any("missing.jpg" in e and "no such file" in e for e in errors)
    assert "2 of 4 image(s) could not be read" in cap.err


@pytest.fixture(scope="module")
def note_pages(tmp_path_factory):
    """Two small notes (no printed form) with two and one text lines."""
    d = tmp_path_factory.mktemp("pages")
    paths = []
    for i, texts in enumerate([["the Orders of October", "Sir, it was delivered"], ["to the Captain"]]):
        page = render_note(texts)
        p = d / f"note{i}.png"
        write_png(p, page)
        paths.append(str(p))
    return paths


def test_ocr_pages_to_stdout_in_every_format(note_pages, capsys):
    assert main(["ocr", note_pages[0]]) == 0
    text = capsys.readouterr().out
    assert len(text.rstrip("\n").split("\n")) == 2

    assert main(["ocr", "--format", "json", *note_pages]) == 0
    docs = [json.loads(x) for x in capsys.readouterr().out.strip().split("\n")]
    assert [d["id"] for d in docs] == note_pages
    assert [len(d["regions"][0]["lines"]) for d in docs] == [2, 1]
    from htr_tf.decode import default_decoder

    assert docs[0]["text"] == text.rstrip("\n") and docs[0]["decoder"] == default_decoder()

    assert main(["ocr", *note_pages]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"==> {note_pages[0]} <==\n") and f"\n==> {note_pages[1]} <==\n" in out


def test_ocr_pages_to_files_with_overlays(note_pages, tmp_path, capsys):
    import xml.etree.ElementTree as ET

    from htr_tf.fileio import read_image
    from htr_tf.outputs import PAGE_NS

    out, ov = tmp_path / "xml", tmp_path / "overlays"
    rc = main(["ocr", "--format", "page-xml", "--out", str(out), "--overlay", str(ov), *note_pages])
    assert rc == 0 and capsys.readouterr().out == ""
    assert sorted(p.name for p in out.iterdir()) == ["note0.xml", "note1.xml"]
    root = ET.parse(out / "note0.xml").getroot()
    assert len(root.findall(f".//{{{PAGE_NS}}}TextLine")) == 2
    assert read_image(ov / "note1.png").shape == read_image(note_pages[1]).shape
    assert not list(out.glob(".*tmp"))                       # written atomically, nothing left over


def test_ocr_page_errors_are_clear(note_pages, tmp_path, capsys):
    bad = tmp_path / "cut.png"
    bad.write_bytes(Path(note_pages[0]).read_bytes()[:200])   # truncated
    rc = main(["ocr", str(bad), note_pages[1]])
    cap = capsys.readouterr()
    assert rc == 1 and cap.out.startswith(f"==> {note_pages[1]} <==\n") and cap.out.count("<==") == 1
    assert "cut.png" in cap.err and "1 of 2 page(s) could not be read" in cap.err
    assert main(["ocr", "--format", "page-xml", *note_pages]) == 1
    assert "needs --out DIR" in capsys.readouterr().err
    assert main(["ocr", "--level", "line", "--format", "page-xml", note_pages[0]]) == 1
    assert "not to --level line" in capsys.readouterr().err
    assert main(["ocr", "--backend", "quantum", note_pages[0]]) == 1
    assert "unknown backend" in capsys.readouterr().err
    blank = tmp_path / "blank.png"
    import numpy as np

    write_png(blank, np.full((600, 400), 255, np.uint8))
    assert main(["ocr", str(blank)]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "no text lines found" in cap.err


def test_ocr_model_errors(tmp_path, line_images, monkeypatch, capsys):
    import htr_tf.bundle

    monkeypatch.setattr(htr_tf.bundle, "_ASSETS", tmp_path / "no-bundled-models")
    assert main(["ocr", "--level", "line", line_images[0]]) == 1
    err = capsys.readouterr().err
    assert "no bundled recognizer model" in err and "--model" in err and "Traceback" not in err
    assert main(["ocr", "--level", "line", "--model", str(tmp_path / "nope"), line_images[0]]) == 1
    assert "nope" in capsys.readouterr().err
    assert main(["ocr", "--level", "line", "--model", str(tmp_path), "--decoder", "viterbi",
                 line_images[0]]) == 1


def test_evaluate_cli(tiny_recognizer_dir, tiny_line_records, tmp_path, capsys):
    report = tmp_path / "out" / "report.json"
    rc = main(["evaluate", "recognizer", "--model", str(tiny_recognizer_dir), "--data", str(tiny_line_records),
               "--report", str(report), "--limit", "5", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "CER " in out and "WER " in out and "5 lines" in out
    data = json.loads(report.read_text())
    assert data["num_lines"] == 5 and len(data["lines"]) == 5
    assert {"id", "ref", "hyp", "cer", "wer", "confidence"} <= set(data["lines"][0])
    assert f"CER {100 * data['cer']:.2f}%" in out
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.json"]  # written atomically

    rc = main(["evaluate", "recognizer", "--model", str(tiny_recognizer_dir), "--data", str(tiny_line_records),
               "--decoder", "nope", "--quiet"])
    assert rc == 1 and "valid choices: greedy, beam" in capsys.readouterr().err
    rc = main(["evaluate", "recognizer", "--model", str(tiny_recognizer_dir), "--data", str(tmp_path),
               "--quiet"])
    assert rc == 1 and "not a record set" in capsys.readouterr().err


def test_export_cli(tiny_recognizer_dir, tmp_path, capsys):
    from htr_tf.export import load_exported

    out = tmp_path / "serving" / "recognizer" / "1"
    assert main(["export", "recognizer", "--model", str(tiny_recognizer_dir), "--out", str(out)]) == 0
    assert "recognize_bytes" in capsys.readouterr().out
    assert load_exported(out).geometry.height == 32
    assert main(["export", "recognizer", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_console_script_keeps_tensorflow_chatter_off_stderr(tmp_path):
    """`htr` run as a program prints the text and nothing from TensorFlow's C++ start-up."""
    import subprocess
    import sys

    import numpy as np

    page = tmp_path / "blank.png"
    write_png(page, np.full((300, 400), 255, np.uint8))
    proc = subprocess.run([sys.executable, "-m", "htr_tf.cli", "ocr", "--level", "line", str(page)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    assert proc.stderr == ""


def test_cli_reads_lines_in_several_views(tiny_recognizer_dir, tiny_line_records, line_images, capsys):
    rc = main(["evaluate", "recognizer", "--model", str(tiny_recognizer_dir), "--data", str(tiny_line_records),
               "--limit", "2", "--variants", "default", "--quiet"])
    assert rc == 0 and "2 lines" in capsys.readouterr().out
    assert main(["ocr", "--level", "line", "--decoder", "greedy", "--model", str(tiny_recognizer_dir),
                 "--variants", "small,wide", *line_images]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(line_images)
    assert main(["ocr", "--level", "line", "--model", str(tiny_recognizer_dir), "--variants", "bold",
                 line_images[0]]) == 1
    assert "unknown reading variant(s) bold" in capsys.readouterr().err

