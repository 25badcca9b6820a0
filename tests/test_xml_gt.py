"""PAGE XML / ALTO ground truth: parsing both formats, markup presets, splits, crops, skips."""

from __future__ import annotations

from pathlib import Path

from xml.sax.saxutils import escape

import numpy as np
import pytest

from htr_tf.errors import DataError

ALTO_V4 = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>pixel</MeasurementUnit>
    <sourceImageInformation><fileName>{image}</fileName></sourceImageInformation></Description>
  <Tags><OtherTag ID="BT1" LABEL="Main"/><OtherTag ID="LT1" LABEL="default"/></Tags>
  <Layout><Page WIDTH="{w}" HEIGHT="{h}" ID="p1"><PrintSpace>
    <TextBlock ID="b1" TAGREFS="BT1">
      <Shape><Polygon POINTS="0 0 {w} 0 {w} {h} 0 {h}"/></Shape>
      {lines}
    </TextBlock>
  </PrintSpace></Page></Layout>
</alto>
"""

ALTO_LINE = """<TextLine ID="{id}" TAGREFS="LT1" BASELINE="{x0} {yb} {x1} {yb}" HPOS="{x0}" VPOS="{y0}"
  WIDTH="{wd}" HEIGHT="{ht}"><Shape><Polygon POINTS="{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}"/></Shape>
  <String CONTENT="{text}"/></TextLine>"""

PAGE_2019 = """<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15">
  <Metadata><Creator>test</Creator></Metadata>
  <Page imageFilename="{image}" imageWidth="{w}" imageHeight="{h}">
    <ReadingOrder><OrderedGroup id="ro"><RegionRefIndexed index="0" regionRef="r2"/>
      <RegionRefIndexed index="1" regionRef="r1"/></OrderedGroup></ReadingOrder>
    <TextRegion id="r1" type="paragraph"><Coords points="0,0 10,0 10,10 0,10"/>
      <TextLine id="l2"><Coords points="10,60 190,60 190,90 10,90"/><Baseline points="10,85 190,85"/>
        <Word id="w1"><Coords points="10,60 50,60 50,90 10,90"/><TextEquiv><Unicode>second</Unicode></TextEquiv></Word>
        <Word id="w2"><Coords points="60,60 190,60 190,90 60,90"/><TextEquiv><Unicode>line</Unicode></TextEquiv></Word>
      </TextLine>
    </TextRegion>
    <TextRegion id="r2" custom="structure {{type:heading;}}"><Coords points="0,0 10,0 10,10 0,10"/>
      <TextLine id="l1"><Coords points="10,10 190,10 190,40 10,40"/><Baseline points="10,35 190,35"/>
        <TextEquiv index="1"><Unicode>worse</Unicode></TextEquiv>
        <TextEquiv index="0"><Unicode>First line</Unicode></TextEquiv></TextLine>
    </TextRegion>
  </Page>
</PcGts>
"""


def _page_image(w: int, h: int, rows: list[tuple[int, int]]) -> np.ndarray:
    """White page with a dark bar (ink) inside each (y0, y1) row, and ink outside all rows."""
    img = np.full((h, w), 235, np.uint8)
    for y0, y1 in rows:
        img[y0 + 5:y1 - 5, 20:w - 20] = 20
    img[h - 6:h - 2, 2:6] = 0  # a speck outside every line
    return img


def _write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    cv2.imwrite(str(path), img)


def _alto(tmp: Path, name: str, texts: list[str], w: int = 200, h: int = 200, image: str | None = None,
          xml_size: tuple[int, int] | None = None, extra_line: str = "") -> Path:
    rows = [(10 + 45 * i, 45 + 45 * i) for i in range(len(texts))]
    lines = "\n".join(ALTO_LINE.format(id=f"l{i}", x0=10, x1=w - 10, y0=y0, y1=y1, yb=y1 - 5, wd=w - 20,
                                       ht=y1 - y0, text=escape(t, {'"': "&quot;"})) for i, (t, (y0, y1)) in enumerate(zip(texts, rows)))
    xw, xh = xml_size or (w, h)
    xml = tmp / "xml" / f"{name}.xml"
    xml.parent.mkdir(exist_ok=True)
    (tmp / "images").mkdir(exist_ok=True)
    xml.write_text(ALTO_V4.format(image=image or f"{name}.png", w=xw, h=xh, lines=lines + extra_line),
                   encoding="utf-8")
    _write_png(tmp / "images" / f"{name}.png", _page_image(w, h, rows))
    return xml


def test_read_alto_v4(tmp_path):
    from htr_tf.data.xml_gt import read_xml_page

    page = read_xml_page(_alto(tmp_path, "p", ["Bonjour à tous", "second line"]))
    assert page.format == "alto" and (page.width, page.height) == (200, 200)
    assert page.image_name == "p.png"
    assert [ln.text for ln in page.lines] == ["Bonjour à tous", "second line"]
    ln = page.lines[0]
    assert ln.polygon.shape == (4, 2) and ln.baseline.shape == (2, 2)
    assert ln.type == "default" and page.regions[0].type == "Main"
    np.testing.assert_allclose(ln.box, [10, 10, 190, 45])


def test_read_alto_v2_single_value_baseline_and_spaces(tmp_path):
    from htr_tf.data.xml_gt import read_xml_page

    xml = tmp_path / "v2.xml"
    xml.write_text("""<alto xmlns="http://www.loc.gov/standards/alto/ns-v2#"><Layout><Page WIDTH="100" HEIGHT="50">
      <PrintSpace><TextBlock ID="b"><TextLine ID="t" HPOS="5" VPOS="5" WIDTH="90" HEIGHT="20" BASELINE="22">
      <String CONTENT="two"/><SP/><String CONTENT="words"/><HYP CONTENT="-"/></TextLine></TextBlock>
      </PrintSpace></Page></Layout></alto>""", encoding="utf-8")
    page = read_xml_page(xml)
    ln = page.lines[0]
    assert ln.text == "two words-"
    assert ln.polygon is None
    np.testing.assert_allclose(ln.baseline, [[5, 22], [95, 22]])
    assert ln.outline().shape == (4, 2)


def test_read_page_2019_reading_order_textequiv_and_words(tmp_path):
    from htr_tf.data.xml_gt import read_xml_page

    xml = tmp_path / "p.xml"
    xml.write_text(PAGE_2019.format(image="p.png", w=200, h=100), encoding="utf-8")
    page = read_xml_page(xml)
    assert page.format == "page"
    assert [r.id for r in page.regions] == ["r2", "r1"]  # ReadingOrder wins over document order
    assert page.regions[0].type == "heading"
    assert [ln.text for ln in page.lines] == ["First line", "second line"]  # lowest index; words joined
    np.testing.assert_allclose(page.lines[1].baseline, [[10, 85], [190, 85]])


def test_read_page_2013_point_elements(tmp_path):
    from htr_tf.data.xml_gt import read_xml_page

    xml = tmp_path / "old.xml"
    xml.write_text("""<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15">
      <Page imageFilename="x.png" imageWidth="50" imageHeight="50"><TextRegion id="r">
      <TextLine id="l"><Coords><Point x="1" y="2"/><Point x="40" y="2"/><Point x="40" y="20"/></Coords>
      <TextEquiv><Unicode>abc</Unicode></TextEquiv></TextLine></TextRegion></Page></PcGts>""", encoding="utf-8")
    ln = read_xml_page(xml).lines[0]
    assert ln.text == "abc" and ln.polygon.shape == (3, 2)


@pytest.mark.parametrize("content, message", [
    ("<alto><Layout>", "malformed"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><alto>&b;</alto>', "unsafe"),
    ("<svg/>", "neither ALTO"),
    ('<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Description><MeasurementUnit>mm10'
     '</MeasurementUnit></Description></alto>', "MeasurementUnit"),
])
def test_bad_xml_is_a_clear_error(tmp_path, content, message):
    from htr_tf.data.xml_gt import read_xml_page

    xml = tmp_path / "bad.xml"
    xml.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_xml_page(xml)


def test_markup_presets():
    from htr_tf.data.xml_gt import MARKUP_PRESETS

    cop = MARKUP_PRESETS["copiste"]
    assert cop.apply("un >mot barré< ici")[0] is None
    assert cop.apply("illisible ><")[0] is None
    assert cop.apply("texte normal") == ("texte normal", "")
    assert cop.document_of("imp_wikitexte_0172_double") == "imp_wikitexte_0172"
    assert cop.document_of("wikitexte_0051_2") == "wikitexte_0051"
    assert cop.document_of("wikitexte_0051") == "wikitexte_0051"
    per = MARKUP_PRESETS["peraire"]
    assert per.apply("M^r Dupont \u22ce ici") == ("Mr Dupont  ici", "")
    assert per.apply("mot # barré")[0] is None
    cre = MARKUP_PRESETS["cremma"]
    assert cre.apply("<> reste")[0] is None and cre.apply("1^er")[0] == "1er"


def test_split_of_document_is_stable_and_by_document():
    from htr_tf.data.xml_gt import split_of_document

    fr = {"validation": 0.2, "test": 0.2}
    a = [split_of_document(f"doc{i}", "s", fr) for i in range(300)]
    assert a == [split_of_document(f"doc{i}", "s", fr) for i in range(300)]
    share = {s: a.count(s) / len(a) for s in ("train", "validation", "test")}
    assert 0.45 < share["train"] < 0.75 and share["validation"] > 0.1 and share["test"] > 0.1


def test_prepare_xml_writes_lines_forms_and_counts_every_skip(tmp_path):
    from htr_tf.charset import load_charset
    from htr_tf.data.records import RecordSet, split_points
    from htr_tf.data.xml_gt import prepare_xml

    src = tmp_path / "src"
    src.mkdir()
    _alto(src, "a_1", ["Première ligne", "un >mot< barré", "", "clé {x}"])
    _alto(src, "b_1", ["other page"], xml_size=(100, 100))  # image is 200x200: coordinates scaled
    outside = ALTO_LINE.format(id="far", x0=500, x1=600, y0=500, y1=540, yb=535, wd=100, ht=40, text="far away")
    _alto(src, "c_1", ["kept"], extra_line=outside)
    (src / "xml" / "broken.xml").write_text("<alto>", encoding="utf-8")
    _alto(src, "d_1", ["no image"], image="missing.png")
    (src / "images" / "d_1.png").unlink()
    splits = tmp_path / "train.txt"
    splits.write_text("a_1\nb_1\nc_1\nd_1\nbroken\n", encoding="utf-8")
    val = tmp_path / "val.txt"
    val.write_text("", encoding="utf-8")

    m = prepare_xml([src / "xml"], tmp_path / "rec", source="t", markup="copiste",
                    split_files={"train": splits, "validation": val}, charset=load_charset("latin"), progress=False)
    assert m["lines"]["train"]["count"] == 3  # Première ligne, other page, kept
    assert m["forms"]["train"]["count"] == 3
    sk = m["skipped"]
    assert sk["line: crossed-out text (>...<)"] == 1
    assert sk["line: empty text"] == 1
    assert sk["line: characters outside the charset"] == 1
    assert sk["line: outside the page"] == 1
    assert sk["page: unreadable XML"] == 1
    assert sk["page: image missing or unreadable"] == 1
    assert m["unknown_chars"] == {"{": 1, "}": 1}
    assert any("b_1" in s and "scaled" in s for s in m["info"]["scaled_pages"])

    rs = RecordSet(tmp_path / "rec")
    lines = {ln["id"]: ln for ln in rs.iter_lines("train")}
    assert lines["a_1/l0"]["text"] == "Première ligne" and lines["a_1/l0"]["form_id"] == "a_1"
    assert lines["a_1/l0"]["writer"] == "a"  # copiste's document = page id without _N
    forms = {f["id"]: f for f in rs.iter_forms("train")}
    b = forms["b_1"]
    polys = split_points(b["line_polygon_xy"], b["line_polygon_len"])
    np.testing.assert_allclose(polys[0][0], [20, 20])  # (10, 10) in a 100 px XML of a 200 px image
    assert len(split_points(b["line_baseline_xy"], b["line_baseline_len"])[0]) == 2


def test_masked_and_box_crops_differ_only_outside_the_polygon(tmp_path):
    import cv2

    from htr_tf.data.records import RecordSet
    from htr_tf.data.xml_gt import prepare_xml

    src = tmp_path / "src"
    src.mkdir()
    xml = _alto(src, "p", ["abc"])
    img = cv2.imread(str(src / "images" / "p.png"), cv2.IMREAD_GRAYSCALE)
    img[50:53, 30:60] = 0  # ink below the polygon (y 10..45) and its 3 px growth, inside the padded cut
    _write_png(src / "images" / "p.png", img)
    out = {}
    for crop in ("masked", "box"):
        prepare_xml([xml], tmp_path / crop, crop=crop, split_fractions={}, progress=False)
        (ln,) = list(RecordSet(tmp_path / crop).iter_lines("train"))
        out[crop] = cv2.imdecode(np.frombuffer(ln["image"], np.uint8), cv2.IMREAD_GRAYSCALE)
    masked, box = out["masked"], out["box"]
    assert masked.shape[0] > box.shape[0]  # the polygon cut is padded, the box is the polygon's box
    assert (masked < 100).sum() > 0 and (box < 100).sum() > 0
    assert masked[-6:].min() > 200  # the ink below the line is painted with paper


def test_derived_crops_are_the_page_pipelines_polygon_crops(tmp_path):
    import cv2

    from htr_tf import crop as C
    from htr_tf.data.records import RecordSet
    from htr_tf.data.xml_gt import prepare_xml
    from htr_tf.line_shapes import line_shapes

    src = tmp_path / "src"
    src.mkdir()
    xml = _alto(src, "p", ["abc"])
    img = cv2.imread(str(src / "images" / "p.png"), cv2.IMREAD_GRAYSCALE)
    img[20:40, 20:80] = 0  # writing inside the line's polygon
    _write_png(src / "images" / "p.png", img)
    m = prepare_xml([xml], tmp_path / "d", crop="derived", split_fractions={}, progress=False)
    assert m["info"]["crop"] == "derived"
    rs = RecordSet(tmp_path / "d")
    (ln,) = list(rs.iter_lines("train"))
    (form,) = list(rs.iter_forms("train"))
    page = cv2.imdecode(np.frombuffer(form["image"], np.uint8), cv2.IMREAD_GRAYSCALE)
    (shape,) = line_shapes(page, np.asarray(form["line_boxes"], np.float32))
    assert shape.from_ink
    expected, _ = C.cut_polygon(page, shape.polygon, threshold=C.ink_threshold(page))
    assert np.array_equal(cv2.imdecode(np.frombuffer(ln["image"], np.uint8), cv2.IMREAD_GRAYSCALE), expected)


def test_prepare_xml_bad_options(tmp_path):
    from htr_tf.data.xml_gt import prepare_xml

    with pytest.raises(DataError, match="crop"):
        prepare_xml([tmp_path], tmp_path / "o", crop="round")
    with pytest.raises(DataError, match="markup"):
        prepare_xml([tmp_path], tmp_path / "o", markup="klingon")
    with pytest.raises(DataError, match="no XML files"):
        prepare_xml([tmp_path], tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_xml_prepare(tmp_path, capsys):
    from htr_tf.cli import main

    src = tmp_path / "src"
    src.mkdir()
    _alto(src, "p", ["Été"])
    att = tmp_path / "att.txt"
    att.write_text("# comment\nData Y, CC BY 4.0\n\n", encoding="utf-8")
    rc = main(["data", "xml-prepare", "--xml", str(src / "xml"), "--out", str(tmp_path / "r"),
               "--split-hash", "validation=0,test=0", "--attribution", "Data X, CC BY 4.0",
               "--attribution", f"@{att}", "--quiet"])
    assert rc == 0
    assert "lines  train" in capsys.readouterr().out
    from htr_tf.data.records import RecordSet

    assert RecordSet(tmp_path / "r").manifest["info"]["attribution"] == ["Data X, CC BY 4.0", "Data Y, CC BY 4.0"]
    assert main(["data", "xml-prepare", "--xml", str(src / "xml"), "--out", str(tmp_path / "r2"),
                 "--attribution", "@/no/such/file"]) != 0
    assert "--attribution @/no/such/file" in capsys.readouterr().err


def test_models_inherit_the_attribution_of_their_data_and_init():
    from types import SimpleNamespace

    from htr_tf.train.recognizer import attributions

    manifests = [{"info": {"attribution": ["A", "B"]}}, {"info": {}}]
    init = SimpleNamespace(info={"attribution": ["C", "A"]})
    assert attributions(manifests, init) == ["C", "A", "B"]
    assert attributions(manifests, None) == ["A", "B"]


def test_load_charset_names_and_files(tmp_path):
    from htr_tf.charset import IAM_CHARACTERS, Charset, load_charset

    assert load_charset("iam").chars == IAM_CHARACTERS
    lat = load_charset("latin")
    assert lat.chars.startswith(IAM_CHARACTERS) and all(c in lat for c in "éàçœÉÇŒ°_[]")
    assert lat.normalize("«  oui »") == '" oui "'
    f = tmp_path / "cs.txt"
    f.write_text("abc\nd", encoding="utf-8")
    assert load_charset(str(f)).chars == "abcd"
    j = tmp_path / "cs.json"
    j.write_text(Charset("xyz", replacement="").to_json(), encoding="utf-8")
    assert load_charset(str(j)).chars == "xyz"
    with pytest.raises(DataError, match="not a name"):
        load_charset("klingon")


def test_select_drops_the_lines_a_report_reads_badly(tmp_path, capsys):
    import json

    from htr_tf.cli import main
    from htr_tf.data.records import RecordSet

    src = tmp_path / "src"
    src.mkdir()
    _alto(src, "p", ["good line", "misaligned", "fine"])
    rc = main(["data", "xml-prepare", "--xml", str(src / "xml"), "--out", str(tmp_path / "r"),
               "--split-hash", "validation=0,test=0", "--quiet"])
    assert rc == 0
    report = tmp_path / "rep.json"
    report.write_text(json.dumps({"lines": [{"id": "p/l0", "cer": 0.1}, {"id": "p/l1", "cer": 0.9},
                                            {"id": "p/l2", "cer": 0.5}]}), encoding="utf-8")
    assert main(["data", "select", "--data", str(tmp_path / "r"), "--report", str(report),
                 "--max-cer", "0.5", "--out", str(tmp_path / "s")]) == 0
    rs = RecordSet(tmp_path / "s")
    assert [ln["id"] for ln in rs.iter_lines("train")] == ["p/l0", "p/l2"]
    assert rs.count("forms", "train") == 1
    assert rs.manifest["skipped"]["line: CER above 0.5 in rep.json"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    assert main(["data", "select", "--data", str(tmp_path / "r"), "--report", str(bad),
                 "--out", str(tmp_path / "t")]) != 0
    assert "no per-line records" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
