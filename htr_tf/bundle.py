"""Model bundles and SavedModel exports on disk: one place for saving, loading and swapping them in.

A *bundle* is a directory holding ``model.keras`` (the Keras model) and ``htr.json`` (its
kind, format version, config and everything needed to use it: charset, geometry, tuned
decoding, provenance).  Every model kind (recogniser, handwritten area, lines) is saved by
:func:`save_bundle` and read by :func:`read_bundle_meta` + :func:`load_keras_model`; SavedModel
exports with named signatures are written by :func:`save_module`.  Whatever is written goes
to a hidden directory beside the target first and is swapped in by :func:`replace_dir`, so a
reader never sees half a bundle.

The provenance a bundle carries (``info``) describes data, never this machine's folders:
:func:`htr_tf.provenance.clean_provenance` runs on every save.

The bundled models live in ``htr_tf/assets/models`` (:func:`bundled_model_path`).

>>> bundled_model_path("recognizer").parts[-3:]
('assets', 'models', 'recognizer')
>>> bundled_model_path("lines", tflite=True).name
'lines.tflite'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from htr_tf.errors import ModelError
from htr_tf.fileio import atomic_write_text

__all__ = ["MODEL_FILE", "META_FILE", "BUNDLE_FORMAT_VERSION", "DECODING_KEY", "MODEL_KINDS",
           "bundled_model_path", "require_bundled", "replace_dir", "staged_dir", "save_bundle",
           "read_bundle_meta", "load_keras_model", "save_module", "plain"]

MODEL_FILE = "model.keras"
META_FILE = "htr.json"
BUNDLE_FORMAT_VERSION = 1
#: The key of ``htr.json`` holding tuned decoder settings per decoder name
#: (see :func:`htr_tf.decode.decoder_defaults`).
DECODING_KEY = "decoding"
MODEL_KINDS = ("recognizer", "paragraph", "lines")

_ASSETS = Path(__file__).resolve().parent / "assets" / "models"


# -- the bundled models ---------------------------------------------------------------------------
def bundled_model_path(kind: str, tflite: bool = False) -> Path:
    """Where the bundled ``kind`` model lives: its bundle directory, or its ``.tflite`` file."""
    if kind not in MODEL_KINDS:
        raise ModelError(f"unknown model kind {kind!r}; valid: {', '.join(MODEL_KINDS)}")
    return _ASSETS / "tflite" / f"{kind}.tflite" if tflite else _ASSETS / kind


def require_bundled(kind: str, tflite: bool = False) -> Path:
    """:func:`bundled_model_path` when it is installed, else a :class:`ModelError` saying what to pass."""
    path = bundled_model_path(kind, tflite)
    if tflite and not path.is_file():
        raise ModelError(f"no bundled TFLite {kind} model in this installation ({path}); make it with "
                         f"`htr tflite all` or pass a .tflite file (htr ocr: --model FILE.tflite)")
    if not tflite and not (path / META_FILE).is_file():
        raise ModelError(f"no bundled {kind} model in this installation ({path}); pass a bundle directory "
                         f"(htr ocr: --model, --paragraph-model, --lines-model)")
    return path


# -- writing directories atomically ---------------------------------------------------------------
def replace_dir(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move the complete directory ``staged`` onto ``final`` (same file system): an existing
    ``final`` is renamed aside first and removed once the new one is in place."""
    staged, final = Path(staged), Path(final)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden directory beside ``final``; on success it replaces ``final``
    (:func:`replace_dir`), on an error it is removed and ``final`` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# -- bundles ---------------------------------------------------------------------------------------
def save_bundle(path: str | os.PathLike, model: Any, meta: dict) -> None:
    """Write ``model.keras`` + ``htr.json`` into the bundle directory ``path`` atomically.

    ``meta["info"]`` (provenance) is cleaned of this machine's paths first.
    """
    from htr_tf.provenance import clean_provenance

    meta = dict(meta)
    if "info" in meta:
        meta["info"] = clean_provenance(meta["info"])
    with staged_dir(path) as tmp:
        model.save(tmp / MODEL_FILE)
        atomic_write_text(tmp / META_FILE, json.dumps(plain(meta), indent=2, ensure_ascii=False))


def read_bundle_meta(path: str | os.PathLike, kind: str, format_version: int = BUNDLE_FORMAT_VERSION) -> dict:
    """A bundle's ``htr.json``, checked for ``kind`` and format version (:class:`ModelError`)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: no {kind} bundle here (expected a directory with {MODEL_FILE} and {META_FILE})")
    meta_path = path / META_FILE
    if not meta_path.exists():
        raise ModelError(f"{path}: not a model bundle ({META_FILE} is missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{meta_path}: corrupt bundle metadata: {e}") from None
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else None
        raise ModelError(f"{path}: bundle kind is {found!r}, expected {kind!r}")
    if meta.get("format_version") != format_version:
        raise ModelError(f"{path}: {kind} bundle format version {meta.get('format_version')!r}; "
                         f"this htr-tf reads version {format_version}")
    return meta


def load_keras_model(path: str | os.PathLike) -> Any:
    """``path/model.keras`` loaded without compiling, or a :class:`ModelError`."""
    import keras

    model_path = Path(path) / MODEL_FILE
    if not model_path.exists():
        raise ModelError(f"{path}: {MODEL_FILE} is missing")
    try:
        return keras.saving.load_model(model_path, compile=False)
    except Exception as e:  # Keras raises many types for a corrupt archive
        raise ModelError(f"{model_path}: cannot load the Keras model: {type(e).__name__}: {e}") from None


# -- SavedModel exports ----------------------------------------------------------------------------
def save_module(module_cls: Callable[[Path], Any], meta_json: str, out_dir: str | os.PathLike,
                signatures: Callable[[Any], dict[str, Any]]) -> Path:
    """Save the SavedModel of ``module_cls(asset)`` with ``signatures(module)`` at ``out_dir`` atomically.

    ``asset`` is a file holding ``meta_json`` (the model's ``htr.json``), which the module
    tracks as ``tf.saved_model.Asset`` so the export carries it as ``assets/htr.json``.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="htr-export-") as staging:
        asset = Path(staging) / META_FILE
        asset.write_text(meta_json, encoding="utf-8")
        module = module_cls(asset)
        sigs = signatures(module)
        with staged_dir(out_dir) as tmp:
            tf.saved_model.save(module, str(tmp), signatures=sigs)
    return Path(out_dir)


def plain(x: Any) -> Any:
    """``x`` with numpy scalars and arrays, tuples and non-string keys made JSON-ready."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x
