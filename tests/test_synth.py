"""Synthetic IAM-format forms (htr_tf.data.synth) and the Brown text (htr_tf.data.text)."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from htr_tf.charset import IAM_CHARACTERS
from htr_tf.data import synth, text
from htr_tf.errors import DataError

SCALE = 0.3  # small pages keep the tests fast; one test runs at IAM's full size


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, dict]:
    """Six small synthetic forms by three writers."""
    out = tmp_path_factory.mktemp("synth") / "iam"
    summary = synth.synthesize(out, pages=6, seed=7, progress=False, scale=SCALE)
    return out, summary


# -- text -----------------------------------------------------------------------------------
def test_detokenize_brown_conventions():
    assert text.detokenize(["``", "Hi", "''", ",", "he", "said", ";", ";"]) == '"Hi," he said;'
    assert text.detokenize(["a", "(", "b", ")", "--", "c", "$", "5", "%"]) == "a (b) - c $5%"
    assert text.detokenize(["It", "'s", "John", "'s", "."]) == "It's John's."


def test_bundled_sentences_are_in_the_charset():
    sentences = text.load_sentences()
    assert len(sentences) > 20_000
    allowed = set(IAM_CHARACTERS)
    assert all(set(s) <= allowed and s == " ".join(s.split()) for s in sentences)
    assert text.BUNDLED_TEXT.stat().st_size <= 1_500_000


def _tiny_brown(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("brown/README", "not a text")
        z.writestr("brown/ca01", "\n\n\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n\n"
                                 "\tIt/pps cost/vbd $/$ 5/cd ./.\n\n"
                                 "\tFirst/od clause/nn ;/. ;/.\n\tand/cc the/at second/od ./.\n")
    return path


def test_load_sentences_formats(tmp_path):
    z = _tiny_brown(tmp_path / "brown.zip")
    # "$" is outside the charset: that sentence is dropped; clauses ending in ";" are joined.
    assert text.load_sentences(z) == ['The jury said "no."', "First clause; and the second."]
    (tmp_path / "a.txt").write_text("Hello  world.\n\nCaf\u00e9 is out.\nIt\u2019s fine.\n")
    assert text.load_sentences(tmp_path / "a.txt") == ["Hello world.", "It's fine."]
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"One line.\n"))
    assert text.load_sentences(tmp_path / "a.txt.gz") == ["One line."]
    with pytest.raises(DataError, match="nope.txt"):
        text.load_sentences(tmp_path / "nope.txt")
    (tmp_path / "bad.txt").write_text("\u00e9\u00e9\n")
    with pytest.raises(DataError, match="bad.txt"):
        text.load_sentences(tmp_path / "bad.txt")


def test_write_extract_is_reproducible(tmp_path):
    z = _tiny_brown(tmp_path / "brown.zip")
    info = text.write_extract(z, tmp_path / "a.txt.gz")
    text.write_extract(z, tmp_path / "b.txt.gz")
    assert (tmp_path / "a.txt.gz").read_bytes() == (tmp_path / "b.txt.gz").read_bytes()
    assert info["sentences"] == 2 and info["percent_kept"] == 100
    assert text.load_sentences(tmp_path / "a.txt.gz") == text.load_sentences(z)


# -- fonts ----------------------------------------------------------------------------------
def test_bundled_fonts_cover_the_charset_with_licences():
    fonts = synth.load_fonts()
    assert len(fonts) >= 8
    readme = (synth.HAND_FONTS_DIR.parent / "README.md").read_text()
    licences = list((synth.HAND_FONTS_DIR.parent / "licenses").iterdir())
    assert synth.PRINT_FONT.exists()
    for f in fonts:
        assert Path(f.path).name in readme
        assert not any(c.isalnum() for c in f.missing)
    assert len(licences) >= 6
    total = sum(p.stat().st_size for p in synth.HAND_FONTS_DIR.parent.rglob("*") if p.is_file())
    assert total < 3_000_000


def test_unusable_fonts_are_refused(tmp_path):
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    with pytest.raises(DataError, match="no usable handwriting font"):
        synth.load_fonts(tmp_path)
    with pytest.raises(DataError, match="not found"):
        synth.load_fonts(tmp_path / "missing")
    caps = Path("/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf")
    if caps.exists():
        assert "lower case" in synth.inspect_font(caps)


# -- ids and splits -------------------------------------------------------------------------
def test_ids_and_writer_splits():
    assert synth.form_id_for(0) == "s00-000" and synth.form_id_for(123_456) == "t23-456"
    with pytest.raises(DataError):
        synth.form_id_for(800_000)
    splits = [synth.writer_split(w) for w in range(200)]
    assert splits.count("train") == 160 and splits.count("test") == 20
    assert splits.count("validation1") == 10 and splits.count("validation2") == 10


# -- pages ----------------------------------------------------------------------------------
def test_layout_files_parse(small_set):
    from htr_tf.data.iam import parse_form_xml, parse_lines_txt, parse_words_txt, read_split_files

    out, summary = small_set
    assert summary["pages"] == 6 and summary["lines"] > 6
    forms = sorted(p.stem for p in (out / "forms").glob("*.png"))
    assert forms == [synth.form_id_for(i) for i in range(6)]
    lines = parse_lines_txt(out / "ascii" / "lines.txt")
    words = parse_words_txt(out / "ascii" / "words.txt")
    splits = read_split_files(out / "splits")
    assert len(lines) == summary["lines"] and len(words) == summary["words"]
    assert sorted(i for ids in splits.values() for i in ids) == sorted(lines)
    allowed = set(IAM_CHARACTERS)
    for fid in forms:
        form = parse_form_xml((out / "xml" / f"{fid}.xml").read_bytes(), fid)
        assert form.writer_id == f"{int(fid[-3:]) // 2:03d}"
        assert " ".join(form.printed_lines) == " ".join(ln.text for ln in form.lines)
        for ln in form.lines:
            assert ln.text == " ".join(w.text for w in ln.words)
            assert set(ln.text) <= allowed
            assert (out / "lines" / fid[:3] / fid / f"{ln.id}.png").exists()
            assert lines[ln.id].tokens == [w.text for w in ln.words]
            for w in ln.words:
                assert (out / "words" / fid[:3] / fid / f"{w.id}.png").exists()
        # A writer's forms all go to the writer's split.
        split = next(s for s, ids in splits.items() if form.lines[0].id in ids)
        assert split == synth.writer_split(int(form.writer_id))


def test_boxes_hold_the_ink(small_set):
    from htr_tf.data.iam import parse_form_xml
    from htr_tf.fileio import read_image

    out, _ = small_set
    for xml in sorted((out / "xml").glob("*.xml")):
        form = parse_form_xml(xml.read_bytes(), str(xml))
        page = read_image(out / "forms" / f"{form.id}.png")
        assert page.shape == (round(synth.PAGE_HEIGHT * SCALE), round(synth.PAGE_WIDTH * SCALE))
        paper = float(np.median(page))
        covered = np.zeros(page.shape, bool)
        for ln in form.lines:
            x0, y0, x1, y1 = ln.box_xyxy()
            covered[y0:y1, x0:x1] = True
            for w in ln.words:
                bx0, by0, bx1, by1 = w.box_xyxy()
                assert 0 <= bx0 < bx1 <= page.shape[1] and 0 <= by0 < by1 <= page.shape[0]
                assert page[by0:by1, bx0:bx1].min() < paper - 60, f"{w.id}: its box holds no ink"
        # The handwritten zone outside the line boxes is blank paper (dust aside).
        hx0, hy0, hx1, hy1 = form.handwritten_box_xyxy()
        outside = page[hy0:hy1, hx0:hx1][~covered[hy0:hy1, hx0:hx1]]
        assert outside.size > 0 and np.mean(outside < paper - 40) < 1e-3


def test_same_seed_same_bytes_for_any_workers(tmp_path, small_set):
    a, b = tmp_path / "a", tmp_path / "b"
    synth.synthesize(a, pages=3, seed=7, progress=False, scale=SCALE)
    synth.synthesize(b, pages=3, seed=7, progress=False, scale=SCALE, workers=2)
    da, db = _tree_digest(a), _tree_digest(b)
    assert da == db
    # ...and equal to the first three pages of the six-page set made with the same seed.
    ref = _tree_digest(small_set[0])
    for k, v in da.items():
        if k.startswith(("forms/", "xml/", "lines/", "words/")):
            assert ref[k] == v, k
    c = tmp_path / "c"
    synth.synthesize(c, pages=1, seed=8, progress=False, scale=SCALE)
    assert _tree_digest(c)["forms/s00-000.png"] != da["forms/s00-000.png"]


def test_prepare_iam_finds_every_line(tmp_path, small_set):
    from htr_tf.data.iam import parse_lines_txt, prepare_iam

    out, summary = small_set
    manifest = prepare_iam(out, tmp_path / "records", progress=False)
    lines = parse_lines_txt(out / "ascii" / "lines.txt")
    written = sum(e["count"] for e in manifest["lines"].values())
    assert written == summary["lines"] == len(lines)
    assert sum(e["count"] for e in manifest["forms"].values()) == summary["pages"]
    assert not manifest["skipped"], manifest["skipped"]


def test_cli_full_size_page(tmp_path):
    from htr_tf.cli import main
    from htr_tf.fileio import read_image

    out = tmp_path / "iam"
    assert main(["data", "synth", "--pages", "1", "--out", str(out), "--seed", "3", "--quiet"]) == 0
    page = read_image(out / "forms" / "s00-000.png")
    assert page.shape == (synth.PAGE_HEIGHT, synth.PAGE_WIDTH)
    assert (out / "ascii" / "lines.txt").exists() and (out / "synth.json").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="pages"):
        synth.synthesize(tmp_path / "x", pages=0, progress=False)
    with pytest.raises(DataError, match="workers"):
        synth.synthesize(tmp_path / "x", pages=1, workers=0, progress=False)
    with pytest.raises(DataError, match="missing.txt"):
        synth.synthesize(tmp_path / "x", pages=1, text=tmp_path / "missing.txt", progress=False)
