"""Page-level evaluation, the HTML report and sclite, over a fake backend with exact outputs.

The fake backend reads no pixels: line detection returns the boxes set for each page
(pages are told apart by their size) and the "recogniser" writes, for a line crop of
width ``w``, the text set for ``w`` (line boxes are as tall as the geometry, so crops are
not resized).  Every rate below is therefore known exactly.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.errors import ConfigError
from htr_tf.evaluate import score_lines
from htr_tf.evaluate_pipeline import (PageSample, char_alignments, char_ops, confusion_pairs, edit_distance,
                                      evaluate_pipeline, page_text, run_sclite, sclite_command)
from htr_tf.geometry import LineGeometry
from htr_tf.pipeline import Pipeline, PipelineOptions, register_backend

PAD = PipelineOptions().line_pad_x
HEIGHT = 32


class FakeBackend:
    """Deterministic Backend: boxes per page size, text per line-crop width (see module docstring)."""

    name = "fake"

    def __init__(self, detections: dict[tuple[int, int], np.ndarray], texts: dict[int, str]) -> None:
        self.charset = Charset()
        self.geometry = LineGeometry(height=HEIGHT, max_width=2048, min_width=16, width_multiple=8)
        self.width_downsample = 8
        self.detections, self.texts = detections, texts
        self.calls: Counter = Counter()

    def find_area(self, page):
        self.calls["find_area"] += 1
        h, w = page.shape
        return np.array([0, 0, w, h], np.float32), 1.0

    def find_lines(self, page, region):
        self.calls["find_lines"] += 1
        boxes = self.detections[page.shape]
        return boxes, np.ones(len(boxes), np.float32)

    def log_probs(self, images, widths):
        self.calls["log_probs"] += 1
        B, _, W = images.shape
        T, C = W // self.width_downsample, self.charset.num_classes
        logits = np.full((B, T, C), -8.0, np.float32)
        logits[:, :, 0] = 0.0
        for b, w in enumerate(widths):
            ids = self.charset.encode(self.texts.get(int(w), ""))
            assert 2 * len(ids) <= int(w) // self.width_downsample, "test line too narrow for its text"
            for k, c in enumerate(ids):
                logits[b, 2 * k, :] = -8.0
                logits[b, 2 * k, c] = 0.0
        lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return lp, (np.asarray(widths) // self.width_downsample).astype(np.int32)


def build_pages():
    """Three pages with known line-level and page-level errors (see the numbers in the tests)."""
    texts: dict[int, str] = {}
    detections: dict[tuple[int, int], np.ndarray] = {}
    counter = iter(range(1000))

    def box(y: int, hyp: str) -> list[float]:
        w = 400 + 8 * next(counter)           # a unique crop width per line: the key of its text
        texts[w + 2 * PAD] = hyp
        return [50.0, float(y), 50.0 + w, float(y + HEIGHT)]

    pages = []
    spec = [  # (page width, [(ref, hyp at its GT box)], detector: GT box indices + extra (y, hyp) boxes)
        (1000, [("the cat sat", "the bat sat"), ("on the mat", "on the mat")], [0, 1], []),
        (1008, [("a dog", "a dog"), ("ran far away", "ran far away")], [0], []),
        (1016, [("hi", "ho")], [0], [(120, "xx")]),
    ]
    for n, (width, lines, keep, extra) in enumerate(spec):
        gt = np.array([box(10 + 40 * k, hyp) for k, (_, hyp) in enumerate(lines)], np.float32)
        det = [gt[k] for k in keep] + [np.array(box(y, hyp), np.float32) for y, hyp in extra]
        shape = (200, width)
        detections[shape] = np.array(det, np.float32).reshape(-1, 4)
        img = np.full(shape, 255, np.uint8)
        for b in list(gt) + det[len(keep):]:          # an extra detection sits on ink too (else it is dropped)
            img[int(b[1]) + 8: int(b[3]) - 8, int(b[0]) + 4: int(b[2]) - 4] = 40
        pages.append(PageSample(f"p{n}", img, [r for r, _ in lines], gt, writer=f"w{n % 2}"))
    return pages, FakeBackend(detections, texts)


@pytest.fixture
def pages_and_backend():
    return build_pages()


# -- metrics ---------------------------------------------------------------------------------------
def test_jiwer_counts_agree_with_own_levenshtein_and_confusions():
    rng = random.Random(3)
    alphabet = "ab c"
    refs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(60)]
    hyps = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(60)]
    refs[0] = "x"  # never an all-empty reference set
    s = score_lines(refs, hyps)
    assert [x["char_edits"] for x in s["lines"]] == [edit_distance(r, h) for r, h in zip(refs, hyps)]
    assert s["char_edits"] == sum(edit_distance(r, h) for r, h in zip(refs, hyps))
    pairs = confusion_pairs(char_alignments(refs, hyps))
    assert sum(c for (r, h), c in pairs.items() if r and h) == s["char_substitutions"]
    assert sum(c for (r, h), c in pairs.items() if not h) == s["char_deletions"]
    assert sum(c for (r, h), c in pairs.items() if not r) == s["char_insertions"]
    ops = char_ops("the cat", "te bat!")
    assert "".join(r for k, r, _ in ops if k != "i") == "the cat"
    assert "".join(h for k, _, h in ops if k != "d") == "te bat!"
    assert Counter(k for k, _, _ in ops if k != "=") == Counter({"d": 1, "s": 1, "i": 1})


def test_page_text_joins_lines_with_one_space():
    assert page_text(["a  b ", "", " c"]) == "a b c"
    assert page_text([]) == ""


# -- the evaluation --------------------------------------------------------------------------------
def test_line_and_page_level_numbers_are_exact_and_pooled(pages_and_backend):
    pages, backend = pages_and_backend
    r = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy"], worst=2)
    (e,) = r["summary"]
    # line level: 2 substitutions (bat, ho) over 11+10+5+12+2 = 40 characters; 2 of 12 words
    assert (e["line"]["char_edits"], e["line"]["ref_chars"]) == (2, 40)
    assert e["line"]["cer"] == pytest.approx(2 / 40) and e["line"]["wer"] == pytest.approx(2 / 12)
    # page level: 1 (bat) + 13 (" ran far away" missed) + 4 ("hi" -> "ho xx") over 22+18+2 characters
    assert [p["hyp"]["greedy"] for p in r["pages"]] == ["the bat sat on the mat", "a dog", "ho xx"]
    assert [p["char_edits"]["greedy"] for p in r["pages"]] == [1, 13, 4]
    assert e["page"]["cer"] == pytest.approx(18 / 42)
    assert e["page"]["wer"] == pytest.approx((1 + 3 + 2) / 12)
    mean = (1 / 22 + 13 / 18 + 4 / 2) / 3
    assert e["mean_page_cer"] == pytest.approx(mean) and abs(mean - 18 / 42) > 0.2   # pooled, not the mean
    assert [p["line_cer"]["greedy"] for p in r["pages"]] == pytest.approx([1 / 21, 0.0, 0.5])
    # detection: 4 of 5 GT lines found, 4 of 5 detections right
    d = r["detection"]
    assert (d["tp"], d["detections"], d["ground_truth"]) == (4, 5, 5)
    assert d["recall"] == pytest.approx(0.8) and d["precision"] == pytest.approx(0.8)
    assert r["pages"][1]["recall50"] == pytest.approx(0.5) and r["pages"][2]["precision50"] == pytest.approx(0.5)
    # worst lines: most edits first, then the higher CER; each with its crop
    assert [(w["page"], w["ref"]) for w in r["worst_lines"]] == [("p2", "hi"), ("p0", "the cat sat")]
    assert all(w["image_png"] for w in r["worst_lines"])
    assert {(c["ref"], c["hyp"]): c["count"] for c in r["confusions"]["greedy"]} == {("c", "b"): 1, ("i", "o"): 1}
    assert r["num_pages"] == 3 and r["num_gt_lines"] == 5 and r["num_detected_lines"] == 5
    json.dumps(r)  # the report is plain JSON


def test_decoders_share_one_network_pass(pages_and_backend):
    pages, backend = pages_and_backend
    one = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy"], worst=0)
    calls_one = dict(backend.calls)
    backend.calls.clear()
    two = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy", "beam"], worst=0)
    assert dict(backend.calls) == calls_one          # the second decoder reads cached log-probs
    assert [e["decoder"] for e in two["summary"]] == ["greedy", "beam"]
    assert two["summary"][1]["line"]["cer"] == pytest.approx(one["summary"][0]["line"]["cer"])
    assert two["summary"][1]["page"]["cer"] == pytest.approx(one["summary"][0]["page"]["cer"])
    assert set(two["timings"]["decode_seconds_per_page"]) == {"greedy", "beam"}


def test_pages_are_read_in_the_views_the_backend_names(pages_and_backend):
    pages, backend = pages_and_backend
    once = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy"], worst=0)
    calls_once = backend.calls["log_probs"]
    backend.calls.clear()
    backend.decoding = {"variants": {"options": {"views": ["base", "thin"]}}}   # thin: same widths, same texts
    views = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy"], worst=0)
    assert backend.calls["log_probs"] == 2 * calls_once       # each batch read in both views
    assert views["summary"][0]["page"]["cer"] == pytest.approx(once["summary"][0]["page"]["cer"])


def test_pages_without_boxes_give_page_level_only(pages_and_backend, tmp_path):
    from htr_tf.evaluate_pipeline import pages_from_files
    from htr_tf.fileio import write_png

    pages, backend = pages_and_backend
    for p in pages:
        write_png(tmp_path / f"{p.id}.png", p.image)
        (tmp_path / f"{p.id}.gt.txt").write_text("\n".join(p.line_texts) + "\n")
    loose = pages_from_files(sorted(str(x) for x in tmp_path.glob("*.png")))
    r = evaluate_pipeline(Pipeline(backend), loose, decoders=["greedy"])
    assert r["line_level"] is False and r["detection"] is None and r["summary"][0]["line"] is None
    assert r["summary"][0]["page"]["cer"] == pytest.approx(18 / 42)
    from htr_tf.errors import DataError

    (tmp_path / "orphan.png").write_bytes((tmp_path / "p0.png").read_bytes())
    with pytest.raises(DataError, match="orphan.gt.txt"):
        pages_from_files([tmp_path / "orphan.png"])


# -- the HTML report ------------------------------------------------------------------------------------
class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids, self.tags, self.rows, self.imgs, self._table = set(), Counter(), Counter(), [], None
        self.spans = Counter()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] += 1
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id")
        if tag == "tr" and self._table:
            self.rows[self._table] += 1
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "span":
            self.spans[a.get("class")] += 1


def test_html_report_renders_every_section(pages_and_backend, tmp_path):
    from htr_tf.report import write_html_report

    pages, backend = pages_and_backend
    pages[2].line_texts[0] = "<script>"        # must come out escaped, never as a tag
    backend.texts[int(pages[2].line_boxes[0][2] - pages[2].line_boxes[0][0]) + 2 * PAD] = "ho &\"x\""
    r = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy", "beam"], worst=3)
    html_path, chart = write_html_report(r, tmp_path / "report.html")
    text = html_path.read_text(encoding="utf-8")
    p = _Collect()
    p.feed(text)
    assert {"summary", "cer-chart", "detection", "worst-lines", "pages", "confusions-greedy"} <= p.ids
    assert p.rows["summary"] == 1 + 2                     # header + one row per decoder
    assert p.rows["pages"] == 1 + 3
    assert p.rows["worst-lines"] == 1 + 2                 # only lines with errors, though 3 were asked for
    assert p.tags["script"] == 0 and "&lt;" in text and "&amp;" in text and "&quot;" in text
    assert p.spans["sub"] >= 2 and p.spans["del"] + p.spans["ins"] >= 1
    assert all(src.startswith("data:image/png;base64,") for src in p.imgs) and len(p.imgs) == 1 + 2
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import cv2

    img = cv2.imdecode(np.frombuffer(chart.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[0] > 100 and (img != 255).any()
    assert not list(tmp_path.glob(".*.tmp"))               # atomic writes left nothing behind


# -- sclite ------------------------------------------------------------------------------------------
def test_sclite_rsum_parser():
    from htr_tf.evaluate_pipeline import _parse_rsum

    out = ("        | SPKR | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |\n"
           "        | Sum  |    3     12 |    9      2      1      1      4      3 |\n")
    s = _parse_rsum(out)
    assert s["ref_words"] == 12 and s["word_edits"] == 4 and s["wer"] == pytest.approx(4 / 12)
    assert _parse_rsum("garbage") is None


def test_sclite_missing_is_reported_not_fatal(pages_and_backend, monkeypatch):
    import htr_tf.evaluate_pipeline as ep

    monkeypatch.setattr(ep, "sclite_command", lambda: None)
    pages, backend = pages_and_backend
    r = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy"], sclite=True)
    assert r["sclite"]["available"] is False
    with pytest.raises(ConfigError, match="sctk"):
        run_sclite(["a"], ["a"], ["s"])


@pytest.mark.skipif(sclite_command() is None, reason="sclite (Debian package sctk) is not installed")
def test_sclite_wer_equals_jiwer(pages_and_backend, tmp_path):
    pages, backend = pages_and_backend
    r = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy"], sclite=tmp_path / "trn")
    s = r["sclite"]["per_decoder"]["greedy"]
    assert s["line"]["wer"] == pytest.approx(2 / 12) == pytest.approx(s["line"]["jiwer_wer"])
    assert s["page"]["wer"] == pytest.approx(6 / 12) == pytest.approx(s["page"]["jiwer_wer"])
    assert (tmp_path / "trn" / "greedy-line" / "ref.trn").read_text().startswith("the cat sat (spk1_u1)")
    # case matters (sclite's default would ignore it) and an empty hypothesis is all deletions
    s2 = run_sclite(["The Cat", "a b"], ["the cat", ""], ["x", "y"])
    assert (s2["word_edits"], s2["ref_words"]) == (4, 4)


# -- the command line ----------------------------------------------------------------------------------
def write_form_records(pages, out) -> None:
    """The pages as a form record set (split ``test``), as ``htr data ...`` would write them."""
    from htr_tf.data.records import FormExample, RecordSetWriter
    from htr_tf.fileio import encode_png
    from htr_tf.geometry import union_box

    with RecordSetWriter(out, source="test", charset=Charset(), per_shard=8) as w:
        for p in pages:
            w.add_form("test", FormExample(
                id=p.id, image_png=encode_png(p.image), height=p.image.shape[0], width=p.image.shape[1],
                paragraph_box=union_box(p.line_boxes), line_boxes=p.line_boxes, line_ids=p.line_ids,
                line_texts=p.line_texts, writer=p.writer, source="test"))


def test_cli_evaluate_pipeline_on_records(pages_and_backend, tmp_path, capsys):
    from htr_tf.cli import main
    pages, backend = pages_and_backend
    write_form_records(pages, tmp_path / "rec")
    register_backend("fake-eval-test", lambda **kw: backend)
    rc = main(["evaluate", "pipeline", "--data", str(tmp_path / "rec"), "--backend", "fake-eval-test",
               "--decoder", "greedy,beam", "--beam-width", "4", "--report", str(tmp_path / "out" / "r.html"),
               "--json", str(tmp_path / "out" / "r.json"), "--limit", "2", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "line detection @ IoU 0.5: recall 0.750, precision 1.000" in out
    r = json.loads((tmp_path / "out" / "r.json").read_text())
    assert r["num_pages"] == 2 and r["split"] == "test"
    assert r["decoders"][1]["options"]["beam_width"] == 4
    assert r["summary"][0]["page"]["cer"] == pytest.approx((1 + 13) / (22 + 18))
    assert all("image_png" not in w for w in r["worst_lines"])       # crops stay in the HTML only
    assert (tmp_path / "out" / "r.html").exists() and (tmp_path / "out" / "r.cer.png").exists()

    assert main(["evaluate", "pipeline", "--backend", "fake-eval-test", "--quiet"]) == 1
    assert "either --data" in capsys.readouterr().err
    assert main(["evaluate", "pipeline", "--data", str(tmp_path / "rec"), "--split", "nope",
                 "--backend", "fake-eval-test", "--quiet"]) == 1
    assert "no forms for split 'nope'" in capsys.readouterr().err


def test_decoders_built_from_names_are_closed_and_given_ones_are_not(pages_and_backend, monkeypatch):
    from htr_tf.decode import GreedyDecoder, ctc, register_decoder

    monkeypatch.setattr(ctc, "_REGISTRY", dict(ctc._REGISTRY))  # the test's decoder leaves with it

    class Closing(GreedyDecoder):
        name = "closing-test"
        closed = 0

        def close(self) -> None:
            type(self).closed += 1

    register_decoder("closing-test", Closing)
    pages, backend = pages_and_backend
    r = evaluate_pipeline(Pipeline(backend), pages, decoders=["closing-test"], worst=0)
    assert Closing.closed == 1 and r["summary"][0]["decoder"] == "closing-test"
    given = Closing()
    evaluate_pipeline(Pipeline(backend), pages, decoders=[given, "greedy"], worst=0)
    assert Closing.closed == 1                      # the caller's decoder stays open


def test_tuned_settings_of_the_backend_are_defaults_for_every_named_decoder(pages_and_backend, tmp_path, capsys):
    from htr_tf.cli import main
    pages, backend = pages_and_backend
    backend.decoding = {"beam": {"options": {"beam_width": 6, "min_prob": 0.0}}}
    r = evaluate_pipeline(Pipeline(backend), pages, decoders=["greedy", "beam"], worst=0)
    assert r["decoders"][1]["options"] == {"beam_width": 6, "min_prob": 0.0, "backend": "numpy"}
    write_form_records(pages, tmp_path / "rec")
    register_backend("fake-tuned-test", lambda **kw: backend)
    base = ["evaluate", "pipeline", "--data", str(tmp_path / "rec"), "--backend", "fake-tuned-test",
            "--limit", "1", "--quiet", "--json", str(tmp_path / "r.json")]

    def options(*extra: str) -> list[dict]:
        assert main(base + list(extra)) == 0
        return [d.get("options") for d in json.loads((tmp_path / "r.json").read_text())["decoders"]]

    assert options("--decoder", "beam,greedy")[0]["beam_width"] == 6               # first: the pipeline's own
    assert options("--decoder", "greedy,beam")[1]["beam_width"] == 6
    got = options("--decoder", "greedy,beam", "--decoder-option", "beam_width=2", "--decoder-option", "backend=tf")
    assert got == [{}, {"beam_width": 2, "min_prob": 0.0, "backend": "tf"}]     # each option where it applies
    assert options("--decoder", "beam", "--beam-width", "3")[0]["beam_width"] == 3
    capsys.readouterr()
    assert main(base + ["--decoder", "greedy,beam", "--decoder-option", "alpha=1"]) == 1
    err = capsys.readouterr().err
    assert "--decoder-option alpha: no decoder among ['greedy', 'beam'] takes it" in err
    assert "beam: ['beam_width', 'min_prob', 'backend']" in err
