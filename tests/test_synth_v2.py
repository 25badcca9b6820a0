"""Synthetic handwriting v2: fonts and the reserved-font guard, the pen simulator, paper and scan,
French text, line records (htr_tf.data.synth_lines) and the CLI."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from htr_tf.data import fonts, french, paper, strokes, synth_lines
from htr_tf.data.fonts import ReservedFontError, check_not_reserved
from htr_tf.errors import DataError


def _shards(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob("*.tfrecord"))}


@pytest.fixture(scope="module")
def line_set(tmp_path_factory) -> tuple[Path, dict]:
    """24 v2 lines by 4 writers (6 lines each), bundled fonts only so the test needs no system fonts."""
    out = tmp_path_factory.mktemp("synth2") / "lines"
    s = synth_lines.synthesize_lines(out, lines=24, seed=5, lines_per_writer=6, system_fonts=False,
                                     progress=False, p_pen=0.5, p_keras=0.3)
    return out, s


# -- fonts and the reserved list -----------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/tmp/x/Purisa-Bold.ttf", "/tmp/somewhere/dkg.ttf", "/tmp/SteveHand.ttf",
    "/usr/share/fonts/truetype/sjfonts/Anything.ttf", "/usr/share/fonts/opentype/havana/Other.otf",
])
def test_reserved_fonts_are_refused(path):
    with pytest.raises(ReservedFontError, match="reserved"):
        check_not_reserved(path, use_dpkg=False)


def test_reserved_copy_in_a_fonts_dir_is_refused(tmp_path):
    src = next(fonts.BUNDLED_HAND_FONTS.glob("*.ttf"))
    shutil.copy(src, tmp_path / "Isabella.ttf")
    with pytest.raises(ReservedFontError, match="Isabella.ttf"):
        fonts.font_sources(fonts_dir=tmp_path)
    with pytest.raises(ReservedFontError):
        synth_lines.load_v2_fonts(tmp_path)


def test_allowed_sources_are_not_reserved():
    assert not set(fonts.DEBIAN_FONT_PACKAGES) & set(fonts.RESERVED_PACKAGES)
    for pkg, (_, files) in fonts.DEBIAN_FONT_PACKAGES.items():
        for f in files:
            check_not_reserved(Path("/usr/share/fonts") / f, use_dpkg=False)
    found, _ = fonts.font_sources()
    assert sum(s.origin == "bundled" for s in found) == 12
    assert fonts.debian_install_line().startswith("apt-get install")


# -- the pen simulator -------------------------------------------------------------------------
def test_stroke_fonts_cover_the_charset():
    chars = synth_lines.synth_charset().chars
    for f in strokes.stroke_fonts():
        assert strokes.covers(f, chars) == "", f.name


def test_stroke_writer_draws_reproducibly():
    w = strokes.StrokeWriter.sample(np.random.default_rng(3))
    a = strokes.draw_stroke_text("Noël à l'œuvre", w, np.random.default_rng(1), 20.0)
    b = strokes.draw_stroke_text("Noël à l'œuvre", w, np.random.default_rng(1), 20.0)
    pa = np.concatenate([p for word in a[0] for p, _ in word])
    pb = np.concatenate([p for word in b[0] for p, _ in word])
    assert np.array_equal(pa, pb) and len(a[0]) == 3
    st = [(p - pa.min(0) + 5, wd) for word in a[0] for p, wd in word]
    hw = (pa.max(0) - pa.min(0) + 10).astype(int)
    ink = strokes.render_strokes(st, (int(hw[1]), int(hw[0])), np.random.default_rng(0), 0.3)
    assert ink.dtype == np.uint8 and ink.shape == (hw[1], hw[0]) and ink.max() > 200
    # two writers write the same word differently
    w2 = strokes.StrokeWriter.sample(np.random.default_rng(4))
    c = strokes.draw_stroke_text("Noël à l'œuvre", w2, np.random.default_rng(1), 20.0)
    pc = np.concatenate([p for word in c[0] for p, _ in word])
    assert pc.shape != pa.shape or not np.allclose(pc, pa)


# -- geometry, paper and scan --------------------------------------------------------------------
def _mask() -> np.ndarray:
    import cv2

    m = np.zeros((40, 160), np.uint8)
    cv2.putText(m, "Hello", (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2)
    return m


def test_geometry_augmentations_keep_shape_and_dtype():
    m = _mask()
    rng = np.random.default_rng(0)
    for out in (paper.warp_grid(m, rng, 12.0, 2.0), paper.elastic(m, rng, 6.0, 1.5),
                paper.stroke_width(m, 2), paper.stroke_width(m, -1)):
        assert out.shape == m.shape and out.dtype == np.uint8 and out.max() > 0
    assert paper.stroke_width(m, 2).sum() > m.sum() > paper.stroke_width(m, -1).sum()


def test_every_paper_and_scan_effect_runs():
    m = _mask()
    seen: set[str] = set()
    for seed in range(120):
        rng = np.random.default_rng(seed)
        g, info = paper.ink_on_paper(m, rng, 14.0, 30.0, bleed=m)
        assert g.shape == m.shape and g.dtype == np.uint8
        g2, sinfo = paper.scan(g, rng, 14.0)
        assert g2.shape == m.shape and g2.dtype == np.uint8
        seen |= set(info) | set(sinfo) | {f"ink:{info['ink']}", f"ruling:{info.get('ruling')}"}
        if sinfo.get("binarised"):
            assert set(np.unique(g2)) <= {0, 255}
        # the ink stays darker than the paper around it
        assert g2[m > 200].mean() < g2[m == 0].mean()
    for k in ("stains", "bleed", "light", "blur", "noise", "jpeg", "binarised", "ruling:ruled", "ruling:seyes",
              "ink:black", "ink:blue", "ink:pencil"):
        assert k in seen, k


# -- text ----------------------------------------------------------------------------------------
def test_french_lines_are_in_the_charset_and_use_its_letters():
    cs = synth_lines.synth_charset()
    rng = np.random.default_rng(0)
    lines = [cs.normalize(french.french_line(rng, 60, set(cs.chars))) for _ in range(300)]
    assert all(ln and not cs.unknown(ln) for ln in lines)
    used = set("".join(lines))
    assert set("éàèêçâîôûœ") <= used
    assert any(c in used for c in "ÉÀÇÈÊ")


# -- line records --------------------------------------------------------------------------------
def test_line_records_are_valid(line_set):
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    out, summary = line_set
    rs = RecordSet(out)
    cs = synth_lines.synth_charset()
    assert rs.charset.chars == cs.chars and rs.source == "synth-v2"
    assert summary["lines"] == 24 and sum(summary["splits"].values()) == 24
    writers: dict[str, set[str]] = {}
    for split in rs.splits():
        for ex in rs.iter_lines(split):
            assert ex["text"] and cs.decode(ex["ids"]) == ex["text"]
            img = decode_image(ex["image"])
            assert img.dtype == np.uint8 and img.shape == (ex["height"], ex["width"])
            assert img.shape[0] >= 16 and img.min() < img.max()
            writers.setdefault(ex["writer"], set()).add(split)
    assert all(len(s) == 1 for s in writers.values()) and len(writers) == 4
    kinds = summary["writers"]
    assert set(kinds) == {"font", "pen"}


def test_line_records_reproducible_with_workers(line_set, tmp_path):
    out, _ = line_set
    s = synth_lines.synthesize_lines(tmp_path / "w2", lines=24, seed=5, lines_per_writer=6, system_fonts=False,
                                     progress=False, p_pen=0.5, p_keras=0.3, workers=2)
    assert _shards(tmp_path / "w2") == _shards(out)
    assert s["lines"] == 24


def test_line_mode_bad_input(tmp_path):
    with pytest.raises(DataError, match="lines"):
        synth_lines.synthesize_lines(tmp_path / "x", lines=0, progress=False)
    with pytest.raises(DataError, match="p_french"):
        synth_lines.synthesize_lines(tmp_path / "x", lines=2, p_french=1.5, progress=False)


def test_cli_lines_and_fonts(tmp_path, capsys):
    from htr_tf.commands.synth import main

    assert main(["synth", "--lines", "3", "--out", str(tmp_path / "r"), "--bundled-fonts-only", "--quiet"]) == 0
    assert (tmp_path / "r" / "manifest.json").exists()
    assert main(["synth", "--lines", "3", "--pages", "2", "--out", str(tmp_path / "r2")]) == 1
    assert main(["fonts", "--bundled-fonts-only"]) == 0
    text = capsys.readouterr().out
    assert "bundled" in text and "cursive.jhf" in text


def _strokes_line() -> np.ndarray:
    """A wide line of 59 slanted strokes, as long and low as a written line."""
    cv2 = pytest.importorskip("cv2")
    m = np.zeros((40, 1200), np.uint8)
    for x in range(10, 1190, 20):
        cv2.line(m, (x, 10), (x + 6, 30), 255, 3)
    return m


@pytest.mark.parametrize("name", sorted(synth_lines.KERAS_LAYERS) + ["extra_elastic"])
def test_line_augmentations_keep_wide_lines_legible(name):
    # Keras' RandomElasticTransform moved each pixel of such a line on its own (1x1 smoothing
    # kernel, 20-30 px displacement): its 59 strokes became 200-2800 specks for 4 seeds of 5.
    import cv2

    m = _strokes_line()
    for seed in range(4):
        out = (synth_lines.extra_elastic(m, seed, 13.0) if name == "extra_elastic"
               else synth_lines.keras_augment(m, name, seed))
        pieces = cv2.connectedComponents((out > 127).astype(np.uint8))[0] - 1
        assert 50 <= pieces <= 70, (name, seed, pieces)
        assert 0.8 < out.shape[1] / m.shape[1] < 1.25, out.shape


def test_extra_elastic_is_reproducible():
    m = _strokes_line()
    a, b, c = (synth_lines.extra_elastic(m, s, 13.0) for s in (7, 7, 8))
    assert np.array_equal(a, b) and (a.shape != c.shape or not np.array_equal(a, c))


def test_unknown_keras_layer_is_named():
    with pytest.raises(DataError, match="RandomElasticTransform"):
        synth_lines.keras_augment(_strokes_line(), "RandomElasticTransform", 1)


@pytest.mark.parametrize("name", sorted(synth_lines.KERAS_LAYERS))
def test_keras_layers_are_reproducible(name):
    m = np.zeros((30, 120), np.uint8)
    m[10:20, 10:110] = 255
    a = synth_lines.keras_augment(m, name, 7)
    b = synth_lines.keras_augment(m, name, 7)
    c = synth_lines.keras_augment(m, name, 8)
    assert a.dtype == np.uint8 and a.ndim == 2 and a.max() > 200
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_install_script_matches_the_allow_lists():
    script = (Path(__file__).resolve().parents[1] / "training" / "install_fonts.sh").read_text()
    for name in list(fonts.DEBIAN_FONT_PACKAGES) + list(fonts.PYPI_FONT_PACKAGES):
        assert f" {name}" in script, name
    assert not any(r in script for r in fonts.RESERVED_PACKAGES)


# -- IAM-format forms, v2 writers --------------------------------------------------------------------
def test_v2_forms_are_read_by_iam_prepare(tmp_path):
    from htr_tf.data import synth
    from htr_tf.data.iam import prepare_iam
    from htr_tf.data.records import RecordSet

    def run(out, workers):
        return synth.synthesize(out, pages=4, seed=4, progress=False, scale=0.3, style="v2", p_pen=0.5,
                                system_fonts=False, forms_per_writer=1, workers=workers)

    s = run(tmp_path / "iam", 1)
    assert s["pages"] == 4 and s["lines"] > 4
    info = (tmp_path / "iam" / "synth.json").read_text()
    assert '"synth_version": 2' in info
    m = prepare_iam(tmp_path / "iam", tmp_path / "rec", progress=False)
    assert not m["skipped"] and sum(e["count"] for e in m["lines"].values()) == s["lines"]
    rs = RecordSet(tmp_path / "rec")
    assert sum(1 for sp in rs.splits("forms") for _ in rs.iter_forms(sp)) == 4
    run(tmp_path / "iam2", 2)
    digest = lambda root: {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
                           for p in sorted(root.rglob("*")) if p.is_file()}
    assert digest(tmp_path / "iam") == digest(tmp_path / "iam2")
    with pytest.raises(DataError, match="style"):
        synth.synthesize(tmp_path / "x", pages=1, style="v3", progress=False)


def test_line_sets_say_their_revision_and_older_ones_are_named(line_set):
    from htr_tf.data.records import RecordSet

    manifest = RecordSet(line_set[0]).manifest
    assert manifest["info"]["synth_revision"] == synth_lines.SYNTH_LINES_REVISION
    assert synth_lines.stale_revision_note(manifest) is None
    old = {**manifest, "info": {k: v for k, v in manifest["info"].items() if k != "synth_revision"}}
    note = synth_lines.stale_revision_note(old)
    assert note and "revision 1" in note and "make_records.sh" in note
    assert synth_lines.stale_revision_note({**old, "source": "copiste"}) is None
