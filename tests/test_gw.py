"""George Washington conversion: token mapping, a tiny GW-format fixture, the real pages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from htr_tf.data.gw import (UnknownTokenError, group_lines, gw_token_text, gw_word_text, prepare_gw,
                            read_transcription, read_word_polygons)
from htr_tf.errors import DataError


def test_special_tokens_map_to_characters():
    assert [gw_token_text(t) for t in ("s_cm", "s_pt", "s_mi", "s_sq", "s_qo", "s_qt", "s_et",
                                       "s_bl", "s_br", "s_s", "s_lb", "s_", "s_0", "s_9")] == \
        [",", ".", "-", ";", ":", "'", "&", "(", ")", "s", "L", "", "0", "9"]
    assert gw_word_text("L-e-t-t-e-r-s-s_cm") == "Letters,"
    assert gw_word_text("u-n-l-e-s_s-s") == "unless"
    assert gw_word_text("s_2-s_6th-s_pt") == "26th."
    assert gw_word_text("s_1st-s_pt") == "1st."
    assert gw_word_text("s_1-s_7-s_5-s_5-s_pt") == "1755."
    assert gw_word_text("s_GW") == "G.W."
    assert gw_word_text("o-s_qt-c-l-o-c-k-s_pt") == "o'clock."
    with pytest.raises(UnknownTokenError, match="s_xx"):
        gw_word_text("a-s_xx")


# -- a tiny GW-format directory ------------------------------------------------------------------
PAGES = {
    # page: [(line, [(word letters, x0, x1)])]
    "300": [(1, [("T-h-e", 20, 90), ("w-o-r-d-s-s_cm", 110, 230)]),
            (2, [("s_2-s_6th-s_pt", 20, 100), ("u-n-l-e-s_s-s", 120, 240), ("s_", 250, 270)])],
    "301": [(1, [("G-o-o-d", 30, 120), ("s_GW", 140, 200)])],
}
LINE_Y = {1: (30, 70), 2: (90, 130)}


def make_gw(root: Path, extra_polygon: bool = True) -> Path:
    """Write images/, locations/ and transcription.txt for two small pages."""
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "locations").mkdir()
    lines = []
    for page, page_lines in PAGES.items():
        img = np.full((160, 300), 215, np.uint8)
        paths = []
        for ll, words in page_lines:
            y0, y1 = LINE_Y[ll]
            for ww, (letters, x0, x1) in enumerate(words, 1):
                wid = f"{page}-{ll:02d}-{ww:02d}"
                lines.append(f"{wid} {letters}")
                cv2.rectangle(img, (x0 + 5, y0 + 10), (x1 - 5, y1 - 10), 20, -1)  # the "ink"
                paths.append(f'<path fill="none" d="M {x0}.00 {y0}.00 L {x1}.00 {y0}.00 L {x1}.00 {y1}.00 '
                             f'L {x0}.00 {y1}.00 Z" id="{wid}" stroke="black"/>')
        if extra_polygon and page == "300":
            paths.append('<path d="M 280 140 L 295 140 L 295 155 Z" id="300-09-01"/>')
        if page == "300":  # ink of a neighbour intruding into line 1's box, outside its words
            cv2.rectangle(img, (92, 62), (108, 76), 0, -1)
        cv2.imwrite(str(root / "images" / f"{page}.jpg"), img)
        svg = ('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
               'viewBox="0 0 300 160" width="300px" height="160px">\n  ' + "\n  ".join(paths) + "\n</svg>\n")
        (root / "locations" / f"{page}.svg").write_text(svg)
    (root / "transcription.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny_gw(tmp_path) -> Path:
    return make_gw(tmp_path / "gw")


def test_prepare_tiny_gw(tiny_gw, tmp_path):
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    m = prepare_gw(tiny_gw, tmp_path / "rs", train_pages=["300"], val_pages=["301"], progress=False)
    assert m["lines"]["train"]["count"] == 2 and m["lines"]["validation"]["count"] == 1
    assert m["forms"]["train"]["count"] == 1 and m["source"] == "gw"
    assert m["skipped"] == {"polygon without transcription": 1, "word: empty transcription": 1}
    assert m["info"]["words"] == {"train": 4, "validation": 2}
    rs = RecordSet(tmp_path / "rs")
    lines = list(rs.iter_lines("train"))
    assert [ln["text"] for ln in lines] == ["The words,", "26th. unless"]
    assert [ln["id"] for ln in lines] == ["300-01", "300-02"]
    assert lines[0]["form_id"] == "300" and lines[0]["writer"] == "gw" and lines[0]["source"] == "gw"
    assert rs.charset.decode(lines[1]["ids"]) == "26th. unless"
    crop = decode_image(lines[0]["image"])
    pad = m["info"]["pad"]
    assert crop.shape == (int(lines[0]["height"]), int(lines[0]["width"])) == (40 + 2 * pad, 210 + 2 * pad)
    # the neighbour's blob (x 92..108, y 62..76) lies in the box but outside the words: masked
    # to the paper tone; the words' own ink is kept
    x0, y0 = 20 - pad, 30 - pad
    assert crop[70 - y0, 100 - x0] > 150
    assert crop[50 - y0, 50 - x0] < 60 and crop[50 - y0, 150 - x0] < 60
    assert list(rs.iter_lines("validation"))[0]["text"] == "Good G.W."
    form = next(rs.iter_forms("train"))
    assert form["id"] == "300" and form["line_ids"] == ["300-01", "300-02"]
    assert form["line_texts"] == ["The words,", "26th. unless"]
    assert form["word_texts"] == ["The", "words,", "26th.", "unless"] and list(form["word_line"]) == [0, 0, 1, 1]
    assert np.allclose(form["word_boxes"][0], [20, 30, 90, 70])
    assert np.allclose(form["line_boxes"][0], [20 - pad, 30 - pad, 230 + pad, 70 + pad])
    assert np.allclose(form["paragraph_box"], [20 - pad, 30 - pad, 240 + pad, 130 + pad])
    assert decode_image(form["image"]).shape == (160, 300)


def test_prepare_gw_without_mask_keeps_the_box(tiny_gw, tmp_path):
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    prepare_gw(tiny_gw, tmp_path / "rs", train_pages=["300"], val_pages=[], progress=False, mask=False)
    crop = decode_image(next(RecordSet(tmp_path / "rs").iter_lines("train"))["image"])
    assert crop[70 - 22, 100 - 12] < 60  # the neighbour's blob stays


def test_prepare_gw_pipeline_crops_are_what_the_page_pipeline_cuts(tiny_gw, tmp_path):
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image
    from htr_tf.geometry import crop as crop_box
    from htr_tf.pipeline import PipelineOptions, isolate_line

    m = prepare_gw(tiny_gw, tmp_path / "rs", train_pages=["300"], val_pages=[], progress=False, crop="pipeline")
    assert m["info"]["crop"] == "pipeline" and m["info"]["mask"] is False
    rs = RecordSet(tmp_path / "rs")
    line = next(rs.iter_lines("train"))
    form = next(rs.iter_forms("train"))
    page = decode_image(form["image"])
    o = PipelineOptions()
    b = np.asarray(form["line_boxes"][0], np.float64)
    box = (max(0.0, b[0] - o.line_pad_x), max(0.0, b[1] - o.line_pad_y),
           min(page.shape[1], b[2] + o.line_pad_x), min(page.shape[0], b[3] + o.line_pad_y))
    expected = isolate_line(crop_box(page, box))
    assert np.array_equal(decode_image(line["image"]), expected)
    with pytest.raises(DataError, match="crop style"):
        prepare_gw(tiny_gw, tmp_path / "rs2", train_pages=["300"], val_pages=[], progress=False, crop="nope")


def test_prepare_gw_derived_crops_are_the_pipelines_polygon_crops(tiny_gw, tmp_path):
    from htr_tf import crop as C
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image
    from htr_tf.line_shapes import line_shapes

    m = prepare_gw(tiny_gw, tmp_path / "rs", train_pages=["300"], val_pages=[], progress=False, crop="derived")
    assert m["info"]["crop"] == "derived"
    rs = RecordSet(tmp_path / "rs")
    form = next(rs.iter_forms("train"))
    page = decode_image(form["image"])
    shapes = line_shapes(page, np.asarray(form["line_boxes"], np.float32))
    for line, shape, box in zip(rs.iter_lines("train"), shapes, form["line_boxes"]):
        # what Pipeline.recognize_boxes hands the recogniser with line_crop="polygon"
        expected = (C.cut_polygon(page, shape.polygon, threshold=C.ink_threshold(page))[0] if shape.from_ink
                    else C.cut_line(page, box)[0])
        assert np.array_equal(decode_image(line["image"]), expected)


def test_pages_outside_the_splits_are_counted(tiny_gw, tmp_path):
    m = prepare_gw(tiny_gw, tmp_path / "rs", train_pages=["300"], val_pages=[], progress=False)
    assert m["skipped"]["line: page not in any split"] == 1
    assert m["skipped"]["word: page not in any split"] == 2


def test_gw_errors_name_the_problem(tiny_gw, tmp_path):
    with pytest.raises(DataError, match="GW directory not found"):
        prepare_gw(tmp_path / "nope", tmp_path / "rs", ["300"], [], progress=False)
    with pytest.raises(DataError, match="both the train and the validation"):
        prepare_gw(tiny_gw, tmp_path / "rs", ["300"], ["300"], progress=False)
    with pytest.raises(DataError, match="no words for page"):
        prepare_gw(tiny_gw, tmp_path / "rs", ["300"], ["999"], progress=False)
    with (tiny_gw / "transcription.txt").open("a") as f:
        f.write("300-05-01 e-x-t-r-a\n")
    with pytest.raises(DataError, match="300.svg.*300-05-01.*no polygon"):
        prepare_gw(tiny_gw, tmp_path / "rs", ["300"], [], progress=False)
    (tiny_gw / "locations" / "301.svg").write_text("<svg><path id='301-01-01'")
    with pytest.raises(DataError, match="301.svg: malformed SVG"):
        read_word_polygons(tiny_gw / "locations" / "301.svg")
    (tiny_gw / "locations" / "301.svg").write_text('<svg><path id="301-01-01" d="M 1 2 C 3 4 5 6"/></svg>')
    with pytest.raises(DataError, match="301-01-01.*malformed path"):
        read_word_polygons(tiny_gw / "locations" / "301.svg")
    (tiny_gw / "transcription.txt").write_text("300-01-01\n")
    with pytest.raises(DataError, match="transcription.txt:1"):
        read_transcription(tiny_gw / "transcription.txt")
    assert not (tmp_path / "rs").exists()  # nothing half-written


def test_svg_path_parsing_handles_relative_commands(tmp_path):
    p = tmp_path / "p.svg"
    p.write_text('<svg xmlns="http://www.w3.org/2000/svg"><path id="1-01-01" d="m 10,20 l 5,0 0,5 z"/></svg>')
    assert np.allclose(read_word_polygons(p)["1-01-01"], [[10, 20], [15, 20], [15, 25]])


# -- the real pages ---------------------------------------------------------------------------------
def test_real_gw_words_and_lines(gw_dir, tmp_path):
    words = read_transcription(gw_dir / "transcription.txt")
    assert len(words) == 2433
    n_lines = n_words = 0
    texts = {}
    for page in range(270, 280):
        lines, skipped = group_lines(words, read_word_polygons(gw_dir / "locations" / f"{page}.svg"), str(page))
        assert not skipped
        n_lines += len(lines)
        n_words += sum(len(ln.word_ids) for ln in lines)
        texts.update({ln.id: ln.text for ln in lines})
    assert n_words == 2433 and 320 <= n_lines <= 340
    assert texts["270-01"] == "270. Letters, Orders and Instructions. October 1755."
    assert texts["270-03"] == "only for the publick use, unless by particu-"
    assert all("s_" not in t and "  " not in t for t in texts.values())

    m = prepare_gw(gw_dir, tmp_path / "gw", train_pages=["270"], val_pages=["279"], progress=False)
    assert m["lines"]["train"]["count"] == sum(1 for k in texts if k.startswith("270-"))
    assert not m["skipped"].get("line: characters outside the charset")
    assert json.loads((tmp_path / "gw" / "manifest.json").read_text())["info"]["mask"] is True
