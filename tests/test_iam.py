"""IAM on disk: the XML model and writer, real-format parsing, and ``prepare_iam``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from htr_tf.data.iam import (LINES_HEADER, WORDS_HEADER, Cmp, Form, IAMWriter, Line, Word,
                             form_to_xml, line_image_path, parse_form_xml, parse_lines_txt,
                             parse_words_txt, prepare_iam, read_split_files)
from htr_tf.errors import DataError
from iam_fixture import (RAW_FORM_ID, RAW_LINES_ROWS, RAW_TEXTS, RAW_WORDS_ROWS, RAW_XML,
                         UNLISTED_LINE, IAMFixture, make_iam_fixture)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> IAMFixture:
    return make_iam_fixture(tmp_path_factory.mktemp("iam") / "iam")


@pytest.fixture
def fx(source, tmp_path) -> IAMFixture:
    """A private copy of the fixture directory, free to damage."""
    root = tmp_path / "iam"
    shutil.copytree(source.root, root)
    return IAMFixture(root, dict(source.texts), dict(source.split_of), set(source.err_lines),
                      dict(source.forms), set(source.unknown_char_lines))


def _form() -> Form:
    words = [Word("a01-000u-00-00", '"', [Cmp(10, 20, 5, 8)], tag='"', attrs={"sentence-start": "yes"}),
             Word("a01-000u-00-01", "Mr.", [Cmp(20, 20, 30, 20), Cmp(52, 22, 10, 18)], tag="NPT"),
             Word("a01-000u-00-02", "O'Neil", [Cmp(70, 18, 40, 24)], tag="NP"),
             Word("a01-000u-00-03", "&", [], tag="CC")]
    lines = [Line("a01-000u-00", '"Mr. O\'Neil &', words, segmentation="err", threshold=154,
                  attrs={"asx": "0", "lby": "810"}),
             Line("a01-000u-01", "<tea> \u20ac5", [Word("a01-000u-01-00", "\u20ac5", [Cmp(5, 60, 9, 9)])])]
    return Form("a01-000u", "000", 300, 200, ['Say "<hi>" & go'], lines,
                attrs={"version": "3.0_beta"})


# -- the XML model ----------------------------------------------------------------------------
def test_xml_round_trip_escapes_entities_and_keeps_attributes():
    f = _form()
    x = form_to_xml(f)
    assert x.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n\n<!DOCTYPE form SYSTEM')
    assert b'text="&quot;Mr. O&apos;Neil &amp;"' in x and b"&lt;tea&gt; &#8364;5" in x
    assert b'<line asx="0" id="a01-000u-00" lby="810" segmentation="err" threshold="154" text=' in x
    assert b'<word id="a01-000u-00-03" tag="CC" text="&amp;"/>' in x
    assert b'<cmp x="20" y="20" width="30" height="20"/>' in x
    assert parse_form_xml(x, "a01-000u.xml") == f
    assert f.lines[0].box_xyxy() == (10, 18, 110, 42)
    assert f.handwritten_box_xyxy() == (5, 18, 110, 69)
    assert f.lines[0].words[1].box_xyxy() == (20, 20, 62, 40)
    with pytest.raises(ValueError, match="no components"):
        f.lines[0].words[3].box_xyxy()


def test_real_format_snippet_parses_and_is_rewritten_byte_for_byte():
    f = parse_form_xml(RAW_XML.encode("iso-8859-1"), "d04-005.xml")
    assert (f.id, f.writer_id, f.width, f.height, f.created) == ("d04-005", "303", 800, 480, "2002-01-14")
    assert f.attrs == {"last-modified": "2002-07-17", "skew": "287", "status": "final", "version": "3.0_beta"}
    assert [ln.text for ln in f.lines] == list(RAW_TEXTS.values())  # &quot; &apos; &amp; unescaped
    assert [ln.segmentation for ln in f.lines] == ["ok", "err"]
    assert f.lines[0].threshold == 154 and f.lines[0].attrs["lby"] == "138"
    assert f.lines[0].words[0].attrs == {"sentence-start": "yes"} and f.lines[0].words[0].tag == '"'
    assert f.lines[0].words[2].text == "can't" and len(f.lines[0].words[2].cmps) == 2
    assert f.lines[1].words[1].text == "M Ps" and f.lines[1].words[5].cmps == []
    assert form_to_xml(f) == RAW_XML.encode("iso-8859-1")


def test_real_lines_and_words_rows(tmp_path):
    p = tmp_path / "lines.txt"
    p.write_text(LINES_HEADER + "\n".join(RAW_LINES_ROWS) + "\n")
    rows = parse_lines_txt(p)
    r = rows["d04-005-01"]
    assert (r.segmentation, r.graylevel, r.components, r.box) == ("err", 156, 5, (56, 174, 300, 42))
    assert r.tokens == ["the", "M Ps", "met", "at", "9", "."] and r.format() == RAW_LINES_ROWS[1]
    assert rows["d04-005-00"].tokens[0] == '"'
    w = tmp_path / "words.txt"
    # Real rows have no component count; the header's documented form has one: read both.
    w.write_text(WORDS_HEADER + "\n".join(RAW_WORDS_ROWS) + "\na01-000u-00-00 ok 154 1 408 768 27 51 PPSS We\n")
    words = parse_words_txt(w)
    assert words["d04-005-01-01"].text == "M Ps" and words["d04-005-01-01"].box == (125, 180, 70, 30)
    assert words["d04-005-00-02"].tag == "MD*"
    assert words["a01-000u-00-00"].box == (408, 768, 27, 51) and words["a01-000u-00-00"].text == "We"
    assert words["d04-005-00-00"].format() == RAW_WORDS_ROWS[0]
    assert all(len(h) == 79 for h in (LINES_HEADER.splitlines()[0], WORDS_HEADER.splitlines()[0]))
    p.write_text(LINES_HEADER + "a01-000u-00 ok nan 19 408 746 1661 89 We|can't\n")
    with pytest.raises(DataError, match=rf"lines\.txt:{len(LINES_HEADER.splitlines()) + 1}: malformed lines\.txt row"):
        parse_lines_txt(p)


def test_split_reader_uses_every_id_including_the_first(tmp_path):
    (tmp_path / "trainset.txt").write_text("a01-000u-00\na01-000u-01\n")
    (tmp_path / "testset.txt").write_text("b01-000-00\r\n\r\n")
    s = read_split_files(tmp_path)
    assert s == {"train": ["a01-000u-00", "a01-000u-01"], "validation1": [], "validation2": [],
                 "test": ["b01-000-00"]}


# -- the writer -------------------------------------------------------------------------------
def test_writer_layout_and_index_rows(tmp_path):
    page = np.full((200, 300), 255, np.uint8)
    page[18:69, 5:110] = 40
    with IAMWriter(tmp_path / "iam") as w:
        w.add_form(_form(), page, "validation2")
    root = tmp_path / "iam"
    assert (root / "forms" / "a01-000u.png").exists() and (root / "xml" / "a01-000u.xml").exists()
    crop = root / "lines" / "a01" / "a01-000u" / "a01-000u-00.png"
    assert crop == line_image_path(root, "a01-000u-00")
    from htr_tf.fileio import read_image

    assert read_image(crop).shape == (24, 100)  # the union of the line's components
    assert (root / "words" / "a01" / "a01-000u" / "a01-000u-00-01.png").exists()
    assert not (root / "words" / "a01" / "a01-000u" / "a01-000u-00-03.png").exists()  # no components
    lines = (root / "ascii" / "lines.txt").read_text()
    assert lines.startswith(LINES_HEADER)
    assert "a01-000u-00 err 154 4 10 18 100 24 \"|Mr.|O'Neil|&\n" in lines
    words = (root / "ascii" / "words.txt").read_text()
    assert "a01-000u-00-01 ok 154 20 20 42 20 NPT Mr.\n" in words
    assert "a01-000u-00-03 ok 154 -1 -1 -1 -1 CC &\n" in words
    assert (root / "ascii" / "forms.txt").read_text().endswith("a01-000u 000 1 prt 2 1 5 1\n")
    assert (root / "splits" / "validationset2.txt").read_text() == "a01-000u-00\na01-000u-01\n"
    assert (root / "splits" / "trainset.txt").read_text() == ""


def test_writer_reopens_a_directory_and_replaces_a_readded_form(tmp_path):
    page = np.full((200, 300), 255, np.uint8)
    with IAMWriter(tmp_path) as w:
        w.add_form(_form(), page, "train")
    f2 = _form()
    f2.id, f2.writer_id = "b07-001", "555"
    for i, ln in enumerate(f2.lines):
        ln.id = f"b07-001-{i:02d}"
        for j, wd in enumerate(ln.words):
            wd.id = f"{ln.id}-{j:02d}"
    f3 = _form()
    f3.lines = f3.lines[:1]
    with IAMWriter(tmp_path) as w:
        w.add_form(f2, page, "test")
        w.add_form(f3, page, "train")  # a01-000u again, now with one line
    rows = parse_lines_txt(tmp_path / "ascii" / "lines.txt")
    assert sorted(rows) == ["a01-000u-00", "b07-001-00", "b07-001-01"]
    assert read_split_files(tmp_path / "splits")["train"] == ["a01-000u-00"]


def test_writer_rejects_bad_input(tmp_path):
    w = IAMWriter(tmp_path)
    with pytest.raises(ValueError, match="page is 300x100, the form says 300x200"):
        w.add_form(_form(), np.zeros((100, 300), np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        w.add_form(_form(), np.zeros((200, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown split 'val'"):
        w.add_form(_form(), np.zeros((200, 300), np.uint8), "val")
    f = _form()
    f.lines[1].id = "a02-000-01"
    with pytest.raises(ValueError, match="line id 'a02-000-01'"):
        w.add_form(f, np.zeros((200, 300), np.uint8))


# -- parsing errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("data, match", [
    (b"", "XML file is empty"),
    (b"<form id='x' width='1' height='1'><handwritten-part>", "malformed XML"),
    (b"<page/>", "root element is <page>"),
    (b"<form id='x' width='wide' height='1'><handwritten-part/></form>", "width='wide' is not an integer"),
    (b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
     b'<form id="x" width="1" height="1"><handwritten-part><line id="x-00" text="&b;"/></handwritten-part></form>',
     "possible XML bomb"),
    (b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><form t="&x;"/>',
     "possible XML bomb"),
])
def test_parse_errors_name_the_file(data, match):
    with pytest.raises(DataError, match=match) as e:
        parse_form_xml(data, "xml/z01-000.xml")
    assert str(e.value).startswith("xml/z01-000.xml: ") and "\n" not in str(e.value)


# -- prepare_iam ------------------------------------------------------------------------------
def _lines(out: Path) -> dict[str, dict]:
    from htr_tf.data.records import RecordSet

    rs = RecordSet(out)
    return {ex["id"]: ex | {"split": s} for s in rs.splits("lines") for ex in rs.iter_lines(s)}


def _forms(out: Path) -> dict[str, dict]:
    from htr_tf.data.records import RecordSet

    rs = RecordSet(out)
    return {ex["id"]: ex | {"split": s} for s in rs.splits("forms") for ex in rs.iter_forms(s)}


def _accounted(m: dict) -> int:
    written = sum(e["count"] for e in m["lines"].values())
    return written + sum(n for r, n in m["skipped"].items() if r.startswith("line: "))


def test_prepare_counts_texts_and_manifest(fx, tmp_path):
    from htr_tf.fileio import decode_image, read_image

    out = tmp_path / "rec"
    m = prepare_iam(fx.root, out, progress=False)
    expected = fx.expected_lines()
    assert {s: e["count"] for s, e in m["lines"].items()} == {s: len(v) for s, v in expected.items()}
    assert {s: e["count"] for s, e in m["forms"].items()} == {
        "train": 1, "validation1": 1, "validation2": 1, "test": 1}
    assert m["skipped"] == {"form: no line in a split file": 1,
                            "line: characters outside the charset": 1, "line: in no split file": 2}
    assert sorted(m["skipped_examples"]["line: in no split file"]) == [UNLISTED_LINE, "e05-100-00"]
    assert m["unknown_chars"] == {"\u00e9": 1} and m["source"] == "iam"
    assert m["info"]["input_lines"] == len(fx.texts) == _accounted(m)  # every line accounted for

    lines = _lines(out)
    assert {i: ex["split"] for i, ex in lines.items()} == {
        i: s for s, ids in expected.items() for i in ids}
    for i, ex in lines.items():
        assert ex["text"] == fx.texts[i] and bool(ex["err"]) == (i in fx.err_lines)
        assert ex["form_id"] == i.rsplit("-", 1)[0] and ex["source"] == "iam"
        img = decode_image(ex["image"])
        assert img.shape == (ex["height"], ex["width"])
    assert lines["d04-005-00"]["text"] == '"We can\'t go," said Jones & Co.'  # XML entities unescaped
    assert lines["d04-005-00"]["writer"] == "303"
    # Line images: the lines/ PNG byte for byte when there is one ...
    png = line_image_path(fx.root, "a01-000u-00").read_bytes()
    assert lines["a01-000u-00"]["image"] == png
    # ... else cropped from the page with lines.txt's box (56 104 530 42).
    page = read_image(fx.root / "forms" / f"{RAW_FORM_ID}.png")
    assert np.array_equal(decode_image(lines["d04-005-00"]["image"]), page[104:146, 56:586])

    forms = _forms(out)
    f = forms["a01-000u"]
    xml = parse_form_xml((fx.root / "xml" / "a01-000u.xml").read_bytes(), "a01-000u.xml")
    assert f["line_ids"] == [ln.id for ln in xml.lines]  # all lines, also the unlisted one
    assert np.allclose(f["line_boxes"], [ln.box_xyxy() for ln in xml.lines])
    assert np.allclose(f["paragraph_box"], xml.handwritten_box_xyxy())
    assert list(f["line_err"]) == [0, 1, 0] and f["line_texts"][0] == '"Yes," he said & left.'
    assert f["word_texts"] == [w.text for ln in xml.lines for w in ln.words]
    assert list(f["word_line"]) == [k for k, ln in enumerate(xml.lines) for _ in ln.words]
    assert np.allclose(f["word_boxes"][1], xml.lines[0].words[1].box_xyxy())
    assert f["image"] == (fx.root / "forms" / "a01-000u.png").read_bytes() and f["writer"] == "000"
    raw = forms[RAW_FORM_ID]
    assert raw["split"] == "validation2"
    assert np.allclose(raw["line_boxes"], [[56, 104, 586, 146], [56, 174, 356, 216]])  # lines.txt boxes
    # The word without components takes its box from words.txt.
    assert raw["word_texts"][-1] == "." and np.allclose(raw["word_boxes"][-1], [340, 202, 346, 208])


def test_first_id_of_each_split_file_is_used(fx, tmp_path):
    first = {s: (fx.root / "splits" / f).read_text().split()[0]
             for s, f in [("validation1", "validationset1.txt"), ("test", "testset.txt")]}
    assert first == {"validation1": "b02-010-00", "test": "c03-021a-00"}
    prepare_iam(fx.root, tmp_path / "rec", unknown="replace", progress=False)
    lines = _lines(tmp_path / "rec")
    assert lines["b02-010-00"]["split"] == "validation1"  # pandas.read_csv would have lost it
    assert lines["c03-021a-00"]["split"] == "test"


@pytest.mark.parametrize("policy, text", [("drop", "Tea or caf, then?"), ("replace", "Tea or caf#, then?")])
def test_unknown_character_policies(fx, tmp_path, policy, text):
    m = prepare_iam(fx.root, tmp_path / "rec", unknown=policy, progress=False)
    assert _lines(tmp_path / "rec")["c03-021a-00"]["text"] == text
    assert m["unknown_chars"] == {"\u00e9": 1} and "line: characters outside the charset" not in m["skipped"]


def test_unknown_error_policy_names_the_line_and_keeps_the_old_set(fx, tmp_path):
    out = tmp_path / "rec"
    prepare_iam(fx.root, out, progress=False)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(DataError, match=r"c03-021a\.xml: line c03-021a-00 has characters outside the charset: 'é'"):
        prepare_iam(fx.root, out, unknown="error", progress=False)
    assert sorted(p.name for p in out.iterdir()) == before
    assert not list(tmp_path.glob("rec.tmp-*"))


def test_skip_err_lines_keeps_them_in_form_records(fx, tmp_path):
    m = prepare_iam(fx.root, tmp_path / "rec", include_err=False, progress=False)
    assert m["skipped"]["line: segmentation err (excluded)"] == 2
    assert sorted(m["skipped_examples"]["line: segmentation err (excluded)"]) == sorted(fx.err_lines)
    assert not set(_lines(tmp_path / "rec")) & fx.err_lines
    assert list(_forms(tmp_path / "rec")["a01-000u"]["line_err"]) == [0, 1, 0]


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:60])


def _append(p: Path, text: str) -> None:
    with open(p, "a", encoding="utf-8") as f:
        f.write(text)


def _set_line_text(root: Path, form_id: str, line_id: str, text: str) -> None:
    import re

    p = root / "xml" / f"{form_id}.xml"
    s = p.read_text(encoding="iso-8859-1")
    s = re.sub(rf'(id="{line_id}" segmentation="\w+" threshold="\d+" text=")[^"]*"', rf'\g<1>{text}"', s)
    p.write_text(s, encoding="iso-8859-1")


BOMB = (b'<?xml version="1.0"?>\n<!DOCTYPE form [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]>\n<form id="a01-000u" width="800" height="480">'
        b'<handwritten-part><line id="a01-000u-00" text="&lol3;"/></handwritten-part></form>\n')

DAMAGE = {
    "corrupt line png": (lambda r: _truncate(line_image_path(r, "a01-000u-00")),
                         {"line: corrupt or truncated line image": ["a01-000u-00"]}, "a01-000u-00.png"),
    "truncated page, no line pngs": (lambda r: _truncate(r / "forms" / "d04-005.png"),
                                     {"line: no line image and corrupt or truncated page image": ["d04-005-00", "d04-005-01"],
                                      "form: corrupt or truncated page image": ["d04-005"]}, "d04-005.png"),
    "missing xml": (lambda r: (r / "xml" / "b02-010.xml").unlink(),
                    {"line: missing form XML": ["b02-010-00", "b02-010-01"],
                     "form: missing form XML": ["b02-010"]}, "b02-010.xml"),
    "malformed xml": (lambda r: _truncate(r / "xml" / "c03-021a.xml"),
                      {"line: malformed XML": ["c03-021a-00", "c03-021a-01"],
                       "form: malformed XML": ["c03-021a"]}, "c03-021a.xml"),
    "xml bomb": (lambda r: (r / "xml" / "a01-000u.xml").write_bytes(BOMB),
                 {"line: XML refused as unsafe (entity declarations)": ["a01-000u-00", "a01-000u-01", "a01-000u-02"],
                  "form: XML refused as unsafe (entity declarations)": ["a01-000u"]}, "a01-000u.xml"),
    "split id not in the xml": (lambda r: (r / "splits" / "testset.txt").write_text("c03-021a-07\nc03-021a-00\nc03-021a-01\n"),
                                {"line: not in its form's XML": ["c03-021a-07"]}, None),
    "split id with no image": (lambda r: ((r / "forms" / "b02-010.png").unlink(),
                                          line_image_path(r, "b02-010-01").unlink()),
                               {"line: no line image and missing page image": ["b02-010-01"],
                                "form: missing page image": ["b02-010"]}, "b02-010.png"),
    "empty text": (lambda r: _set_line_text(r, "b02-010", "b02-010-01", "  "),
                   {"line: empty text": ["b02-010-01"]}, None),
    "malformed lines.txt row": (lambda r: _append(r / "ascii" / "lines.txt", "z99-000-00 ok x\n"),
                                {"index: malformed lines.txt row": []}, "lines.txt"),
    "id in two split files": (lambda r: _append(r / "splits" / "testset.txt", "b02-010-00\n"),
                              {"line: listed in more than one split file": ["b02-010-00"]}, None),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_bad_input_is_skipped_counted_and_named(fx, tmp_path, caplog, case):
    damage, reasons, warned = DAMAGE[case]
    damage(fx.root)
    caplog.set_level(logging.WARNING, logger="htr_tf.data.iam")
    m = prepare_iam(fx.root, tmp_path / "rec", progress=False)
    base = {"form: no line in a split file": 1, "line: characters outside the charset": 1,
            "line: in no split file": 2}
    for reason, ids in reasons.items():
        if ids:
            assert sorted(m["skipped_examples"][reason]) == sorted(ids), reason
            assert m["skipped"][reason] == len(ids) + base.get(reason, 0)
        else:
            assert m["skipped"][reason] == 1
    new = {r for r in m["skipped"] if r not in base}
    assert new == set(reasons)
    assert m["info"]["input_lines"] == _accounted(m)
    if warned:
        assert any(warned in r.getMessage() for r in caplog.records), caplog.text
    written = set(_lines(tmp_path / "rec"))
    for ids in reasons.values():
        assert not written & set(ids)


def test_interrupted_run_keeps_the_previous_set_and_a_rerun_finishes(fx, tmp_path, monkeypatch):
    from htr_tf.data import iam
    from htr_tf.data.records import RecordSet

    out = tmp_path / "rec"
    first = prepare_iam(fx.root, out, progress=False)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = iam._Prep._line

    def dying(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(iam._Prep, "_line", dying)
    with pytest.raises(KeyboardInterrupt):
        prepare_iam(fx.root, out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # nothing lost
    assert RecordSet(out).count("lines", "train") == 2
    assert list(tmp_path.glob("rec.tmp-*")) == []
    monkeypatch.setattr(iam._Prep, "_line", real)
    again = prepare_iam(fx.root, out, progress=False)
    assert again["lines"] == first["lines"] and again["skipped"] == first["skipped"]


def test_prepare_rejects_missing_pieces(tmp_path, fx):
    with pytest.raises(DataError, match="IAM directory not found"):
        prepare_iam(tmp_path / "nope", tmp_path / "rec", progress=False)
    with pytest.raises(DataError, match="unknown-character policy 'ignore'"):
        prepare_iam(fx.root, tmp_path / "rec", unknown="ignore", progress=False)  # type: ignore[arg-type]
    shutil.rmtree(fx.root / "splits")
    with pytest.raises(DataError, match="no splits/ directory"):
        prepare_iam(fx.root, tmp_path / "rec", progress=False)


def test_progress_bar_can_be_turned_off(fx, tmp_path, capsys):
    prepare_iam(fx.root, tmp_path / "a", progress=True)
    assert "IAM forms" in capsys.readouterr().err
    prepare_iam(fx.root, tmp_path / "b", progress=False)
    assert "IAM forms" not in capsys.readouterr().err


def test_cli_iam_prepare(fx, tmp_path, capsys):
    from htr_tf.cli import main

    assert main(["data", "iam-prepare", "--iam", str(fx.root), "--out", str(tmp_path / "rec"),
                 "--quiet", "--unknown", "replace", "--skip-err"]) == 0
    out = capsys.readouterr().out
    assert "lines  train" in out and "skipped      2  line: segmentation err (excluded)" in out
    assert main(["data", "iam-prepare", "--iam", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "rec2")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"htr: error: {tmp_path / 'missing'}: IAM directory not found"


def test_without_ascii_files_boxes_come_from_the_xml(fx, tmp_path, caplog):
    shutil.rmtree(fx.root / "ascii")
    caplog.set_level(logging.WARNING, logger="htr_tf.data.iam")
    m = prepare_iam(fx.root, tmp_path / "rec", progress=False)
    assert {s: e["count"] for s, e in m["lines"].items()} == {s: len(v) for s, v in fx.expected_lines().items()}
    assert "lines.txt: missing" in caplog.text
    raw = _forms(tmp_path / "rec")[RAW_FORM_ID]
    assert np.allclose(raw["line_boxes"], [[60, 110, 581, 142], [60, 180, 335, 210]])  # unions of cmps
    assert len(raw["word_texts"]) == 16  # the word without components has no box without words.txt
