"""Bundles on disk (one module for every model kind) and provenance without machine paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from htr_tf.bundle import (bundled_model_path, read_bundle_meta, replace_dir, require_bundled, save_bundle,
                           staged_dir)
from htr_tf.errors import ModelError
from htr_tf.provenance import clean_provenance, describe_records, is_machine_path, rewrite_bundle_provenance


def test_staged_dir_replaces_atomically_and_leaves_nothing_on_error(tmp_path):
    final = tmp_path / "out"
    with staged_dir(final) as d:
        (d / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as d:
            (d / "a").write_text("2")
            raise RuntimeError("half written")
    assert (final / "a").read_text() == "1"
    staged = tmp_path / "new"
    staged.mkdir()
    (staged / "b").write_text("3")
    replace_dir(staged, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in final.iterdir()] == ["b"]


def test_every_bundled_model_is_found_by_one_helper():
    for kind in ("recognizer", "paragraph", "lines"):
        assert read_bundle_meta(require_bundled(kind), kind)["kind"] == kind
        assert require_bundled(kind, tflite=True).suffix == ".tflite"
    with pytest.raises(ModelError, match="valid: recognizer, paragraph, lines"):
        bundled_model_path("words")


def test_bundle_meta_errors_name_the_path(tmp_path):
    with pytest.raises(ModelError, match="no lines bundle here"):
        read_bundle_meta(tmp_path / "nowhere", "lines")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "htr.json").write_text(json.dumps({"kind": "paragraph", "format_version": 1}))
    with pytest.raises(ModelError, match="kind is 'paragraph', expected 'lines'"):
        read_bundle_meta(tmp_path / "b", "lines")


def test_machine_paths_are_recognised():
    assert is_machine_path("/work/htrdata/synth-rec") and is_machine_path("~/data/gw")
    assert is_machine_path("C:\\Users\\me\\data")
    assert not is_machine_path("synth-rec") and not is_machine_path("/x") and not is_machine_path(3)
    assert not is_machine_path("htr data synth --pages 800 --seed 1")


def test_provenance_names_the_data_not_where_it_lay(tmp_path, tiny_line_records):
    info = {"data": [{"records": str(tiny_line_records), "split": "train", "weight": 0.5}],
            "validation": {"records": "/gone/elsewhere/gw-rec", "split": "validation"},
            "init": "/home/someone/runs/rec-stride/best", "environment": {"node": "vm", "keras": "3"},
            "epochs": 3, "note": "a/b relative"}
    clean = clean_provenance(info, describe={"gw-rec": "htr data gw-prepare --gw GW"})
    text = json.dumps(clean)
    assert str(tmp_path) not in text and "/gone" not in text and "/home" not in text and "vm" not in text
    assert clean["data"][0]["records"] == tiny_line_records.name
    assert clean["data"][0]["data"] == {"source": "test", "made_by": None, "count": 32}
    assert clean["validation"]["data"] == {"made_by": "htr data gw-prepare --gw GW"}
    assert clean["init"] == "rec-stride/best" and clean["epochs"] == 3 and clean["note"] == "a/b relative"
    assert describe_records(tmp_path / "missing") is None


def test_save_bundle_writes_clean_provenance_and_old_bundles_can_be_rewritten(tmp_path):
    class FakeModel:
        def save(self, path):
            path.write_bytes(b"keras")

    meta = {"kind": "lines", "format_version": 1, "info": {"records": "/work/htrdata/gw-rec", "x": np.int64(3)}}
    save_bundle(tmp_path / "b", FakeModel(), meta)
    saved = json.loads((tmp_path / "b" / "htr.json").read_text())
    assert saved["info"] == {"records": "gw-rec", "x": 3}
    old = tmp_path / "old"
    old.mkdir()
    (old / "htr.json").write_text(json.dumps({"kind": "recognizer", "info": {"init": "/work/runs/a/best"},
                                              "decoding": {"beam+lm": {"tuned": {"data": "/work/htrdata/s"}}}}))
    assert rewrite_bundle_provenance(old) is True
    assert "/work" not in (old / "htr.json").read_text()
    assert rewrite_bundle_provenance(old) is False
