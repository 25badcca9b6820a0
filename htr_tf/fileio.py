"""File I/O that never leaves half-written files and reads any image with a clear error.

Images decode through OpenCV (PNG, JPEG, TIFF, BMP, 16-bit, alpha): tensorflow-io is not
usable with TensorFlow >= 2.18, see README.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from htr_tf.errors import DataError

#: Largest image accepted, in pixels (a 30000 x 30000 scan is refused, not decoded).
MAX_IMAGE_PIXELS = 150_000_000


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; finished files get normal modes
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def _check_size(h: int, w: int, name: str) -> None:
    if h * w > MAX_IMAGE_PIXELS:
        raise DataError(f"{name}: image is {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS:,} accepted")
    if h < 1 or w < 1:
        raise DataError(f"{name}: image is empty ({w}x{h})")


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG/JPEG/BMP/TIFF header without decoding, when cheap to get."""
    try:
        from PIL import Image
        import io

        Image.MAX_IMAGE_PIXELS = None
        with Image.open(io.BytesIO(data)) as im:
            return im.height, im.width
    except Exception:
        return None


def to_gray_uint8(img: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA, 16-bit, float in [0, 1]) to 2-D uint8 gray.

    Transparent pixels become white paper.
    """
    import cv2

    a = np.asarray(img)
    if a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif a.dtype in (np.float32, np.float64):
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        rgb = a[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
        a = cv2.cvtColor(rgb.round().astype(np.uint8), cv2.COLOR_BGR2GRAY)
    elif a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    elif a.ndim != 2:
        raise DataError(f"unsupported image shape {a.shape}")
    return np.ascontiguousarray(a)


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes to 2-D uint8 gray, or a :class:`DataError` naming ``name``."""
    import cv2

    if not data:
        raise DataError(f"{name}: file is empty")
    size = _header_size(data)
    if size is not None:
        _check_size(*size, name)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{name}: not a readable image (corrupt, truncated or unsupported format)")
    _check_size(img.shape[0], img.shape[1], name)
    return to_gray_uint8(img)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as 2-D uint8 gray (PNG, JPEG, TIFF, BMP; 8/16-bit; alpha)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an image")
    return decode_image(path.read_bytes(), str(path))


def encode_png(gray: np.ndarray, compression: int = 3) -> bytes:
    """2-D uint8 array to PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", gray, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise DataError("could not encode PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, gray: np.ndarray, compression: int = 3) -> None:
    """Write a PNG atomically."""
    atomic_write_bytes(path, encode_png(gray, compression))
