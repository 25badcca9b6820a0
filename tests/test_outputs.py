"""Output writers: PAGE XML and ALTO valid against their official schemas, polygons and
baselines in every format, one registry of formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import xmlschema

from htr_tf.errors import ConfigError
from htr_tf.outputs import (ALTO_NS, FORMAT_REGISTRY, FORMATS, PAGE_NS, SUFFIXES, draw_overlay, render, to_alto,
                            to_json, to_page_xml)
from htr_tf.results import LineResult, PageResult, RegionResult, WordResult

XSD = Path(__file__).parent / "fixtures" / "xsd"


@pytest.fixture(scope="module")
def page_schema():
    return xmlschema.XMLSchema(str(XSD / "pagecontent-2019-07-15.xsd"))


@pytest.fixture(scope="module")
def alto_schema():
    return xmlschema.XMLSchema(str(XSD / "alto-4-2.xsd"),
                               locations=[("http://www.w3.org/1999/xlink", str(XSD / "xlink.xsd"))])


def _page() -> PageResult:
    """Two handwritten regions (a paragraph, a signature) and a printed one that was not read."""
    l1 = LineResult("Dear Sir, & <you>", 0.91, box=(100, 100, 600, 160), id="0-odd id",
                    words=[WordResult("Dear", 0.9, (100, 100, 200, 160)), WordResult("Sir,", 0.8, (220, 100, 300, 160)),
                           WordResult("&", 0.7, (320, 100, 340, 160)), WordResult("<you>", 0.95, (360, 100, 600, 160))],
                    polygon=[(100, 110), (600, 100), (605, 160), (98, 158)],
                    baseline=[(100, 145), (350, 143), (600, 141)])
    l2 = LineResult("no words", 0.5, box=(100, 170, 500, 230))             # box only: no polygon, no baseline
    l3 = LineResult("G.W.", 0.8, box=(700, 900, 900, 960), id="sig",
                    polygon=[(700, 900), (900, 900), (900, 960), (700, 960)], baseline=[(700, 950), (900, 950)])
    printed = LineResult("", 0.0, box=(50, 20, 800, 60), polygon=[(50, 20), (800, 20), (800, 60), (50, 60)],
                         baseline=[(50, 55), (800, 55)])
    return PageResult(width=1000, height=1000, id="scan.png", regions=[
        RegionResult((40, 10, 810, 70), 0.9, [printed], id="p1", type="printed", recognized=False,
                     polygon=[(40, 10), (810, 10), (810, 70), (40, 70)]),
        RegionResult((90, 90, 610, 240), 0.95, [l1, l2], id="r1"),
        # a region id that is not an NCName, and a polygon point outside the page (clipped)
        RegionResult((690, 890, 910, 970), 0.7, [l3], id="2 sig", polygon=[(690, 890), (1010, 890), (910, 970)]),
    ])


def test_page_xml_is_valid_and_carries_polygons_baselines_and_region_types(page_schema):
    xml = to_page_xml(_page(), "scans/scan.png")
    page_schema.validate(xml)
    ns = {"p": PAGE_NS}
    root = ET.fromstring(xml.encode())
    regions = root.findall("p:Page/p:TextRegion", ns)
    order = [r.get("regionRef") for r in root.findall("p:Page/p:ReadingOrder/p:OrderedGroup/p:RegionRefIndexed", ns)]
    assert order == [r.get("id") for r in regions] == ["p1", "r1", "_2_sig"]
    assert regions[0].get("production") == "printed" and "structure {type:printed;}" in regions[0].get("custom")
    assert "structure {type:handwritten;}" in regions[1].get("custom") and regions[1].get("production") is None
    assert regions[0].find("p:TextEquiv", ns) is None                      # not read: no text claimed
    lines = regions[1].findall("p:TextLine", ns)
    assert lines[0].get("id") == "_0-odd_id"
    assert lines[0].find("p:Coords", ns).get("points") == "100,110 600,100 605,160 98,158"
    assert lines[0].find("p:Baseline", ns).get("points") == "100,145 350,143 600,141"
    assert lines[1].find("p:Coords", ns).get("points") == "100,170 500,170 500,230 100,230"
    assert lines[1].find("p:Baseline", ns).get("points") == "100,230 500,230"   # box bottom without a baseline
    assert lines[0].find("p:TextEquiv/p:Unicode", ns).text == "Dear Sir, & <you>"
    assert regions[2].find("p:Coords", ns).get("points") == "690,890 1000,890 910,970"


def test_alto_is_valid_and_carries_shapes_baselines_and_words(alto_schema):
    xml = to_alto(_page(), "scans/scan.png")
    alto_schema.validate(xml)
    ns = {"a": ALTO_NS}
    root = ET.fromstring(xml.encode())
    assert root.find("a:Description/a:sourceImageInformation/a:fileName", ns).text == "scan.png"
    tags = {t.get("ID"): t.get("LABEL") for t in root.findall("a:Tags/a:OtherTag", ns)}
    blocks = root.findall("a:Layout/a:Page/a:PrintSpace/a:TextBlock", ns)
    assert [tags[b.get("TAGREFS")] for b in blocks] == ["printed", "handwritten", "handwritten"]
    line = blocks[1].find("a:TextLine", ns)
    assert line.get("BASELINE") == "100 145 350 143 600 141"
    assert line.find("a:Shape/a:Polygon", ns).get("POINTS") == "100 110 600 100 605 160 98 158"
    assert (line.get("HPOS"), line.get("VPOS"), line.get("WIDTH"), line.get("HEIGHT")) == ("98", "100", "507", "60")
    strings = line.findall("a:String", ns)
    assert [s.get("CONTENT") for s in strings] == ["Dear", "Sir,", "&", "<you>"]
    assert len(line.findall("a:SP", ns)) == 3 and float(strings[1].get("WC")) == pytest.approx(0.8)
    # a line without word boxes is one String; a printed line not read is one empty String
    second = blocks[1].findall("a:TextLine", ns)[1]
    assert [s.get("CONTENT") for s in second.findall("a:String", ns)] == ["no words"]
    assert [s.get("CONTENT") for s in blocks[0].findall("a:TextLine/a:String", ns)] == [""]
    ids = [e.get("ID") for e in root.iter() if e.get("ID")]
    assert len(ids) == len(set(ids))


def test_empty_page_is_valid_in_both_formats(page_schema, alto_schema):
    empty = PageResult(width=20, height=30)
    page_schema.validate(to_page_xml(empty, "a.png"))
    alto_schema.validate(to_alto(empty, "a.png"))


def test_json_has_polygons_baselines_and_region_types():
    d = json.loads(to_json(_page()))
    p1, r1, _ = d["regions"]
    assert p1["type"] == "printed" and p1["recognized"] is False and r1["type"] == "handwritten"
    assert r1["lines"][0]["polygon"] == [[100, 110], [600, 100], [605, 160], [98, 158]]
    assert r1["lines"][0]["baseline"][1] == [350, 143]
    assert "polygon" not in r1["lines"][1] and "baseline" not in r1["lines"][1]
    assert d["text"] == "Dear Sir, & <you>\nno words\n\nG.W."      # the printed region was not read


def test_results_reject_bad_geometry():
    with pytest.raises(ValueError, match="at least 3"):
        LineResult("a", 1.0, polygon=[(0, 0), (1, 1)])
    with pytest.raises(ValueError, match="at least 2"):
        LineResult("a", 1.0, baseline=[(0, 0)])
    with pytest.raises(ValueError, match="region type"):
        RegionResult(None, 1.0, type="typed")


def test_one_registry_of_formats():
    assert FORMATS == tuple(FORMAT_REGISTRY) and {"text", "json", "page-xml", "alto"} <= set(FORMATS)
    assert SUFFIXES["alto"] == ".xml" and FORMAT_REGISTRY["alto"].document and not FORMAT_REGISTRY["text"].document
    page = _page()
    assert render(page, "alto", "x.png").startswith('<?xml') and render(page, "text").endswith("G.W.\n")
    with pytest.raises(ConfigError, match="alto"):
        render(page, "hocr")


def test_overlay_draws_polygons_and_baselines():
    gray = np.full((1000, 1000), 250, np.uint8)
    img = draw_overlay(gray, _page())
    # the first line's polygon edge from (100, 110) to (600, 100) is drawn in orange (BGR 0, 140, 255)
    assert (img[103:108, 340:360, 2] > 200).any() and (img[103:108, 340:360, 0] < 50).any()
    # its baseline in green
    assert (img[142:146, 200:210, 1] > 150).any()
