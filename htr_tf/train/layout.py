"""Train the layout models (handwritten area, text lines) with ``keras.fit``.

Recipes are :class:`ParagraphTrainConfig` / :class:`LinesTrainConfig`
(``training/paragraph.yaml``, ``training/lines.yaml``).  The output directory::

    OUT/
      best/              the bundle with the best validation metric so far
      last/              the bundle of the last finished epoch
      epochs/epoch-NNN/  with ``keep_epochs: N``, the bundles of the last N epochs
      train_config.yaml  the config this run used (with command-line overrides applied)
      history.json       one record per epoch: loss, validation metrics, learning rate
      backup/            BackupAndRestore state: re-running the same command resumes here

Data: form records (synthetic IAM forms, GW pages; any record set with ``forms``).  Pages
are decoded once and kept in memory downscaled (``cache_height``; the line detector keeps
each page at the scale where its handwritten area is ``cache_area_width`` wide), because
decoding a 2479 x 3542 PNG costs more than a training step.  Samples are made in numpy/cv2
by a ``keras.utils.PyDataset``: small rotation (targets from the rotated word boxes), crops
(the area cut out with random margins: a page that is not a form), scale and placement
jitter, contrast, brightness, gamma, blur and noise.  This is why the trainer does not use
:func:`htr_tf.data.pipelines.form_dataset`: it decodes the full page every step, has no
area crops or rotation, and the line detector needs crops of the area, not the page.

Validation runs the bundle's own inference (pre/post-processing included) on the cached
validation pages each epoch: ``val_mean_iou`` for the area, ``val_map`` (COCO AP@[.5:.95])
plus recall/precision at IoU 0.5 for lines.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from htr_tf.config import Config
from htr_tf.errors import ConfigError, DataError
from htr_tf.models.layout_common import area_resize, soft_box_mask
from htr_tf.models.lines import LineDetector, LineDetectorConfig, crop_box
from htr_tf.models.paragraph import ParagraphConfig, ParagraphModel
from htr_tf.train.recognizer import DataSpec, attributions

__all__ = ["PageAugmentConfig", "ParagraphTrainConfig", "LinesTrainConfig", "LayoutPage", "load_pages",
           "paragraph_sample", "lines_sample", "band_boxes", "photometric", "layout_sequence",
           "train_paragraph", "train_lines", "LayoutTrainResult"]

TRAIN_CONFIG_VERSION = 1


# -- configs -----------------------------------------------------------------------------------------
@dataclass
class PageAugmentConfig(Config):
    """Augmentation of pages and area crops (probabilities ``p_*`` and ranges)."""

    version: int = 1
    p_rotate: float = 0.5
    rotate_deg: float = 1.5
    #: Area model: cut the page around its handwritten area (margins as fractions of its size).
    p_crop_area: float = 0.3
    crop_margin: tuple = (0.02, 0.3)
    #: Area model: the page is scaled by this times the fitting scale, placed at random.
    scale: tuple = (0.75, 1.0)
    #: Line detector: each side of the area crop moves out by this times the area's width.
    region_jitter: tuple = (-0.005, 0.06)
    #: Line detector: the crop is resized to this fraction of the input width.
    width_scale: tuple = (0.8, 1.0)
    p_photometric: float = 0.9
    contrast: tuple = (0.5, 1.2)
    brightness: tuple = (-40.0, 10.0)
    gamma: tuple = (0.7, 1.4)
    p_blur: float = 0.3
    blur_sigma: tuple = (0.3, 1.2)
    p_noise: float = 0.5
    noise_std: tuple = (1.0, 10.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"PageAugmentConfig: {f.name} must be in [0, 1], got {v}")
            if isinstance(v, (tuple, list)):
                if len(v) != 2 or float(v[0]) > float(v[1]):
                    raise ConfigError(f"PageAugmentConfig: {f.name} must be a [low, high] range, got {v}")
                setattr(self, f.name, (float(v[0]), float(v[1])))


def _specs(value: Any, where: str, default_split: str) -> tuple[DataSpec, ...]:
    out = []
    for v in value or ():
        if isinstance(v, DataSpec):
            out.append(v)
        elif isinstance(v, str):
            out.append(DataSpec.parse(v, default_split))
        elif isinstance(v, dict):
            out.append(DataSpec.from_dict({"split": default_split, **v}))
        else:
            raise ConfigError(f"{where}: expected a mapping {{records, split, weight}} or "
                              f"'RECORDS[:SPLIT[:WEIGHT]]', got {v!r}")
    return tuple(out)


@dataclass
class _LayoutTrainConfig(Config):
    """Fields shared by both layout recipes (see the subclasses)."""

    version: int = TRAIN_CONFIG_VERSION
    #: Training record sets with ``forms``: ``RECORDS[:SPLIT[:WEIGHT]]`` or mappings;
    #: weights are the sampling proportions of the sets.
    data: tuple = ()
    #: Validation record sets (split defaults to ``validation``); empty: the first training
    #: set's ``validation`` split, else ``validation1``, if it has forms there.
    validation: tuple = ()
    batch_size: int = 8
    epochs: int = 20
    steps_per_epoch: int = 100
    learning_rate: float = 2e-3
    min_learning_rate: float = 2e-5
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    clipnorm: float = 5.0
    augment: Any = True
    early_stopping_patience: int = 0
    #: keep the bundles of the last N epochs in ``OUT/epochs`` (to compare on whole pages, or
    #: to average with ``htr train average``)
    keep_epochs: int = 0
    seed: int = 0
    #: Data-loading threads of the PyDataset.
    workers: int = 2

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.version != TRAIN_CONFIG_VERSION:
            raise ConfigError(f"{name}: version {self.version} is not supported (this htr-tf reads "
                              f"{TRAIN_CONFIG_VERSION})")
        self.data = _specs(self.data, f"{name}.data", "train")
        self.validation = _specs(self.validation, f"{name}.validation", "validation")
        for n in ("batch_size", "epochs", "steps_per_epoch", "workers"):
            if int(getattr(self, n)) < 1:
                raise ConfigError(f"{name}: {n} must be >= 1")
        if self.warmup_steps < 0 or self.early_stopping_patience < 0 or self.keep_epochs < 0:
            raise ConfigError(f"{name}: warmup_steps, early_stopping_patience and keep_epochs must be >= 0")
        if not self.learning_rate > 0 or self.min_learning_rate < 0:
            raise ConfigError(f"{name}: learning_rate must be > 0 and min_learning_rate >= 0")
        if isinstance(self.augment, dict):
            self.augment = PageAugmentConfig.from_dict(self.augment)
        elif not isinstance(self.augment, (bool, PageAugmentConfig)):
            raise ConfigError(f"{name}: augment must be true, false or a mapping of PageAugmentConfig "
                              f"fields, got {self.augment!r}")

    def augment_config(self) -> PageAugmentConfig | None:
        if isinstance(self.augment, PageAugmentConfig):
            return self.augment
        return PageAugmentConfig() if self.augment else None


@dataclass
class ParagraphTrainConfig(_LayoutTrainConfig):
    """Recipe of the handwritten-area model."""

    model: ParagraphConfig = field(default_factory=ParagraphConfig)
    batch_size: int = 16
    #: Pages are cached at most this high (2 x the model input is plenty).
    cache_height: int = 768

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ParagraphConfig.from_dict(self.model)
        super().__post_init__()
        if self.cache_height < self.model.input_height:
            raise ConfigError("ParagraphTrainConfig: cache_height must be >= model.input_height")


@dataclass
class LinesTrainConfig(_LayoutTrainConfig):
    """Recipe of the line detector."""

    model: LineDetectorConfig = field(default_factory=LineDetectorConfig)
    #: Height of the training windows cut from the resized area (a multiple of the stride).
    crop_height: int = 384
    #: Pages are cached at the scale where their handwritten area is this wide.
    cache_area_width: int = 720

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = LineDetectorConfig.from_dict(self.model)
        super().__post_init__()
        m = self.model.fcn.total_stride
        if self.crop_height < m or self.crop_height % m:
            raise ConfigError(f"LinesTrainConfig: crop_height must be a positive multiple of {m}")
        if self.cache_area_width < self.model.input_width:
            raise ConfigError("LinesTrainConfig: cache_area_width must be >= model.input_width")


# -- pages in memory -----------------------------------------------------------------------------------
@dataclass
class LayoutPage:
    """A form page kept in memory, downscaled; boxes in its pixels."""

    id: str
    source: str
    image: np.ndarray
    lines: np.ndarray
    words: np.ndarray
    word_line: np.ndarray
    area: np.ndarray
    set_index: int = 0


def load_pages(specs: Sequence[DataSpec], scale_of: Callable[[dict, int, int], float],
               progress: bool = False) -> list[LayoutPage]:
    """Decode the forms of ``specs`` and downscale each by ``scale_of(example, h, w)`` (<= 1)."""
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    pages: list[LayoutPage] = []
    for i, spec in enumerate(specs):
        rs = RecordSet(spec.records)
        if rs.count("forms", spec.split) == 0:
            raise DataError(f"{spec.records}: no forms in split {spec.split!r}; available: {rs.splits('forms')}")
        t0 = time.perf_counter()
        n = 0
        for ex in rs.iter_forms(spec.split):
            img = decode_image(ex["image"], f"{spec.records}:{ex['id']}")
            h, w = img.shape
            s = min(1.0, float(scale_of(ex, h, w)))
            if s < 1.0:
                nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
                img, (sx, sy) = area_resize(img, nh, nw)
            else:
                sx = sy = 1.0
            mul = np.array([sx, sy, sx, sy], np.float32)
            lines = np.asarray(ex["line_boxes"], np.float32).reshape(-1, 4) * mul
            if len(lines) == 0:
                continue
            words = np.asarray(ex["word_boxes"], np.float32).reshape(-1, 4) * mul
            pages.append(LayoutPage(id=ex["id"], source=ex["source"], image=np.ascontiguousarray(img),
                                    lines=lines, words=words, word_line=np.asarray(ex["word_line"], np.int64),
                                    area=np.asarray(ex["paragraph_box"], np.float32) * mul, set_index=i))
            n += 1
        if progress:
            print(f"loaded {n} pages of {spec.records}:{spec.split} ({time.perf_counter() - t0:.1f}s)",
                  file=sys.stderr, flush=True)
    return pages


# -- augmentation ---------------------------------------------------------------------------------------
def _u(rng: np.random.Generator, r: tuple) -> float:
    return float(rng.uniform(r[0], r[1]))


def _paper_level(img: np.ndarray) -> int:
    return int(np.percentile(img[::8, ::8], 90))


def _rotate(page: LayoutPage, img: np.ndarray, lines: np.ndarray, deg: float, center: tuple[float, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the image about ``center``; each line's box becomes the box of its rotated word
    boxes (its own corners when it has no words)."""
    import cv2

    M = cv2.getRotationMatrix2D(center, deg, 1.0)
    h, w = img.shape
    out = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderValue=_paper_level(img))

    def corners(b: np.ndarray) -> np.ndarray:   # [K, 4] -> [K, 4, 2]
        return np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)

    def rot(b: np.ndarray) -> np.ndarray:       # [K, 4] -> [K, 4, 2] rotated corners
        c = corners(b)
        return c @ M[:, :2].T.astype(np.float32) + M[:, 2].astype(np.float32)

    new = np.empty_like(lines)
    rl = rot(lines)
    rw = rot(page.words) if len(page.words) else np.zeros((0, 4, 2), np.float32)
    for k in range(len(lines)):
        pts = rw[page.word_line == k].reshape(-1, 2) if len(rw) else np.zeros((0, 2))
        if len(pts) == 0:
            pts = rl[k]
        new[k] = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
    return out, new


def photometric(img: np.ndarray, rng: np.random.Generator, aug: PageAugmentConfig) -> np.ndarray:
    """Contrast, brightness, gamma, blur and noise on a uint8 page (boxes unaffected)."""
    import cv2

    x = img.astype(np.float32)
    if rng.random() < aug.p_photometric:
        x = 255.0 - (255.0 - x) * _u(rng, aug.contrast) + _u(rng, aug.brightness)
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** _u(rng, aug.gamma)
    if rng.random() < aug.p_blur:
        x = cv2.GaussianBlur(x, (0, 0), _u(rng, aug.blur_sigma))
    if rng.random() < aug.p_noise:
        x = x + rng.normal(0.0, _u(rng, aug.noise_std), x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def paragraph_sample(page: LayoutPage, config: ParagraphConfig, aug: PageAugmentConfig | None,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: (uint8 ``[H, W]`` page canvas, float32 soft union-of-lines target map)."""
    img, lines = page.image, page.lines
    if aug is not None and rng.random() < aug.p_rotate:
        img, lines = _rotate(page, img, lines, _u(rng, (-aug.rotate_deg, aug.rotate_deg)),
                             (img.shape[1] / 2, img.shape[0] / 2))
    if aug is not None and rng.random() < aug.p_crop_area:
        ax0, ay0 = lines[:, 0].min(), lines[:, 1].min()
        ax1, ay1 = lines[:, 2].max(), lines[:, 3].max()
        aw, ah = ax1 - ax0, ay1 - ay0
        m = [_u(rng, aug.crop_margin) for _ in range(4)]
        x0, y0, x1, y1 = crop_box(img.shape, (ax0 - m[0] * aw, ay0 - m[1] * ah, ax1 + m[2] * aw,
                                              ay1 + m[3] * ah), 0.0)
        img = img[y0:y1, x0:x1]
        lines = lines - np.array([x0, y0, x0, y0], np.float32)
    H, W = config.input_height, config.input_width
    h, w = img.shape
    s = min(H / h, W / w) * (_u(rng, aug.scale) if aug is not None else 1.0)
    nh, nw = min(H, max(1, int(round(h * s)))), min(W, max(1, int(round(w * s))))
    small, (sx, sy) = area_resize(img, nh, nw)
    oy = int(rng.integers(0, H - nh + 1)) if aug is not None else 0
    ox = int(rng.integers(0, W - nw + 1)) if aug is not None else 0
    canvas = np.full((H, W), 255, np.uint8)
    canvas[oy:oy + nh, ox:ox + nw] = small
    boxes = lines * np.array([sx, sy, sx, sy], np.float32) + np.array([ox, oy, ox, oy], np.float32)
    if aug is not None:
        canvas = photometric(canvas, rng, aug)
    s_out = config.fcn.out_stride
    return canvas, soft_box_mask(boxes, H // s_out, W // s_out, s_out)


def band_boxes(lines: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of each xyxy line box's height."""
    lines = np.asarray(lines, np.float32).reshape(-1, 4)
    cy = (lines[:, 1] + lines[:, 3]) / 2
    half = (lines[:, 3] - lines[:, 1]) * fraction / 2
    return np.stack([lines[:, 0], cy - half, lines[:, 2], cy + half], axis=1)


def lines_sample(page: LayoutPage, config: LineDetectorConfig, crop_height: int,
                 aug: PageAugmentConfig | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: (uint8 ``[crop_height, input_width]`` area crop, float32 soft band map)."""
    img, lines = page.image, page.lines
    area = np.array([lines[:, 0].min(), lines[:, 1].min(), lines[:, 2].max(), lines[:, 3].max()], np.float32)
    if aug is not None and rng.random() < aug.p_rotate:
        img, lines = _rotate(page, img, lines, _u(rng, (-aug.rotate_deg, aug.rotate_deg)),
                             (float(area[0] + area[2]) / 2, float(area[1] + area[3]) / 2))
        area = np.array([lines[:, 0].min(), lines[:, 1].min(), lines[:, 2].max(), lines[:, 3].max()], np.float32)
    aw = float(area[2] - area[0])
    if aug is not None:
        d = np.array([-1, -1, 1, 1], np.float32) * np.array([_u(rng, aug.region_jitter) for _ in range(4)]) * aw
        x0, y0, x1, y1 = crop_box(img.shape, area + d, 0.0)
    else:
        x0, y0, x1, y1 = crop_box(img.shape, area, config.region_margin)
    crop = img[y0:y1, x0:x1]
    W, s_out = config.input_width, config.fcn.out_stride
    nw = W if aug is None else max(8, int(round(W * _u(rng, aug.width_scale))))
    nh = max(1, int(round(crop.shape[0] * nw / crop.shape[1])))
    small, (sx, sy) = area_resize(crop, nh, nw)
    ox = int(rng.integers(0, W - nw + 1)) if aug is not None else 0
    if nh > crop_height:
        top = int(rng.integers(0, nh - crop_height + 1)) if aug is not None else 0
        small, oy = small[top:top + crop_height], -top
    else:
        oy = int(rng.integers(0, crop_height - nh + 1)) if aug is not None else 0
    canvas = np.full((crop_height, W), 255, np.uint8)
    canvas[max(oy, 0):max(oy, 0) + small.shape[0], ox:ox + nw] = small
    boxes = (lines - np.array([x0, y0, x0, y0], np.float32)) * np.array([sx, sy, sx, sy], np.float32)
    boxes = boxes + np.array([ox, oy, ox, oy], np.float32)
    if aug is not None:
        canvas = photometric(canvas, rng, aug)
    return canvas, soft_box_mask(band_boxes(boxes, config.band_fraction), crop_height // s_out, W // s_out, s_out)


def layout_sequence(pages: list[LayoutPage], weights: Sequence[float], make: Callable, batch_size: int,
                    steps: int, seed: int, workers: int = 1) -> Any:
    """A ``keras.utils.PyDataset`` of ``steps`` batches ``(x [B, H, W, 1], {"mask": [B, h, w, 1]})``.

    Pages are drawn with replacement, each record set (``page.set_index``) with probability
    proportional to its weight; ``make(page, rng)`` gives one ``(uint8 image, target)`` pair.
    Batch ``i`` of epoch ``e`` uses the generator ``default_rng([seed, e, i])``.
    """
    import keras

    counts = np.bincount([p.set_index for p in pages], minlength=len(weights)).astype(np.float64)
    w = np.array([weights[p.set_index] / counts[p.set_index] for p in pages], np.float64)
    prob = w / w.sum()

    class LayoutBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
            self.epoch = 0

        def __len__(self) -> int:
            return steps

        def __getitem__(self, idx: int):
            rng = np.random.default_rng([seed, self.epoch, int(idx)])
            xs, ys = [], []
            for i in rng.choice(len(pages), size=batch_size, p=prob):
                x, y = make(pages[i], rng)
                xs.append(x)
                ys.append(y)
            x = 1.0 - np.stack(xs).astype(np.float32)[..., None] / 255.0
            return x, {"mask": np.stack(ys)[..., None].astype(np.float32)}

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return LayoutBatches()


# -- the run -------------------------------------------------------------------------------------------
@dataclass
class LayoutTrainResult:
    """What a layout training run produced."""

    out: Path
    best: Path | None
    last: Path | None
    history: list[dict]
    params: int


def _open_validation(config: _LayoutTrainConfig) -> tuple[DataSpec, ...]:
    from htr_tf.data.records import RecordSet

    if config.validation:
        return config.validation
    if not config.data:
        return ()
    first = config.data[0]
    rs = RecordSet(first.records)
    for split in ("validation", "validation1"):
        if rs.count("forms", split) > 0:
            return (DataSpec(records=first.records, split=split),)
    return ()


def _optimizer(config: _LayoutTrainConfig, total_steps: int) -> Any:
    import keras

    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    alpha = min(config.min_learning_rate / config.learning_rate, 1.0)
    lr = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * (0.05 if warmup else 1.0), decay_steps=max(total_steps - warmup, 1), alpha=alpha,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    clip = {"clipnorm": config.clipnorm} if config.clipnorm else {}
    return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, **clip)


def _environment() -> dict:
    import keras
    import tensorflow as tf

    from htr_tf import __version__

    return {"htr_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def _metrics_callback(evaluate: Callable[[], dict[str, float]], verbose: int) -> Any:
    import keras

    class LayoutMetrics(keras.callbacks.Callback):
        """Adds ``val_*`` metrics (the bundle's own inference on the validation pages) to the logs."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            t0 = time.perf_counter()
            result = evaluate()
            if logs is not None:
                logs.update({f"val_{k}": v for k, v in result.items()})
            if verbose:
                text = " - ".join(f"val_{k} {v:.4f}" for k, v in result.items())
                print(f"epoch {epoch + 1}: {text} ({time.perf_counter() - t0:.1f}s)", flush=True)

    return LayoutMetrics()


def _train(kind: str, config: _LayoutTrainConfig, out: str | os.PathLike, *, build: Callable[[], Any],
           wrap: Callable[[Any, dict], Any], make_sample: Callable, scale_of: Callable, evaluate: Callable,
           monitor: str, init: Any, callbacks: Sequence[Any], verbose: int) -> LayoutTrainResult:
    import keras

    from htr_tf.train import callbacks as cbs

    out = Path(out)
    if not config.data:
        raise ConfigError("no training data: give form record sets with --data RECORDS[:SPLIT[:WEIGHT]] "
                          "or `data:` in the config")
    keras.utils.set_random_seed(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "train_config.yaml")
    pages = load_pages(config.data, scale_of, progress=bool(verbose))
    val_specs = _open_validation(config)
    val_pages = load_pages(val_specs, scale_of, progress=bool(verbose)) if val_specs else []
    aug = config.augment_config()
    seq = layout_sequence(pages, [s.weight for s in config.data], lambda p, rng: make_sample(p, aug, rng),
                         config.batch_size, config.steps_per_epoch, config.seed, config.workers)

    net = build()
    if init is not None:
        try:
            net.set_weights(init.model.get_weights())
        except ValueError as e:
            raise ConfigError(f"--init: the bundle's weights do not fit `model` of the config (the "
                              f"networks must match): {e}") from None
    net.compile(optimizer=_optimizer(config, config.steps_per_epoch * config.epochs),
                loss={"mask": keras.losses.BinaryCrossentropy()}, jit_compile=False)
    export_net = build()

    def sync() -> Any:
        export_net.set_weights(net.get_weights())
        return export_net

    from htr_tf.data.records import RecordSet

    provenance = {"attribution": attributions([RecordSet(s.records).manifest for s in config.data], init),
                  "data": [dataclasses.asdict(s) for s in config.data],
                  "validation": [dataclasses.asdict(s) for s in val_specs],
                  "train_pages": len(pages), "validation_pages": len(val_pages),
                  "environment": _environment(), "train_config": config.to_dict()}

    def make_bundle(epoch: int, logs: dict) -> Any:
        info = {**provenance, "epoch": epoch + 1, "step": int(net.optimizer.iterations.numpy()),
                "metrics": {k: float(v) for k, v in logs.items() if _is_number(v)},
                "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        return wrap(sync(), info)

    callback_list: list[Any] = []
    if val_pages:
        callback_list.append(_metrics_callback(lambda: evaluate(wrap(sync(), {}), val_pages), verbose))
    else:
        monitor = "loss"
    mode = "min" if monitor == "loss" else "max"
    callback_list += [
        cbs.BundleCheckpoint(make_bundle, out / "best", out / "last", monitor=monitor, mode=mode,
                             verbose=verbose, epochs_dir=out / "epochs", keep_epochs=config.keep_epochs),
        cbs.HistoryFile(out / "history.json", extra={"kind": kind, "monitor": monitor,
                                                    "steps_per_epoch": config.steps_per_epoch,
                                                    "batch_size": config.batch_size}),
    ]
    if config.early_stopping_patience:
        callback_list.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                           patience=config.early_stopping_patience,
                                                           verbose=verbose))
    callback_list += [keras.callbacks.BackupAndRestore(backup_dir=str(out / "backup"), save_freq="epoch",
                                                       delete_checkpoint=False), *callbacks]
    if verbose:
        print(f"training the {kind} model: {net.count_params():,} parameters, {len(pages)} pages "
              f"({len(val_pages)} validation), {config.steps_per_epoch} steps x {config.epochs} epochs of "
              f"{config.batch_size}, output {out}", flush=True)
    net.fit(seq, epochs=config.epochs, callbacks=callback_list, verbose=verbose)
    hist_path = out / "history.json"
    records = json.loads(hist_path.read_text())["epochs"] if hist_path.exists() else []
    return LayoutTrainResult(out=out, best=out / "best" if (out / "best").exists() else None,
                             last=out / "last" if (out / "last").exists() else None, history=records,
                             params=int(net.count_params()))


def _paragraph_eval(model: ParagraphModel, pages: list[LayoutPage]) -> dict[str, float]:
    from htr_tf.geometry import box_iou

    ious = np.array([box_iou(model.predict(p.image), p.area)[0, 0] for p in pages])
    return {"mean_iou": float(ious.mean()), "min_iou": float(ious.min())}


def _lines_eval(det: LineDetector, pages: list[LayoutPage]) -> dict[str, float]:
    from htr_tf.layout_eval import line_metrics

    dets = [det.detect(p.image, p.area) for p in pages]
    m = line_metrics(dets, [p.lines for p in pages])
    return {"map": m["map"], "ap50": m["ap50"], "recall50": m["recall50"], "precision50": m["precision50"]}


def train_paragraph(config: ParagraphTrainConfig, out: str | os.PathLike, *, init: str | os.PathLike | None = None,
                    callbacks: Sequence[Any] = (), verbose: int = 1) -> LayoutTrainResult:
    """Train (or resume: same ``out``) the handwritten-area model.

    ``init``: start from this bundle's weights (its network must match ``config.model.fcn``;
    input size and post-processing come from ``config.model``).
    """
    from htr_tf.models.paragraph import build_paragraph_model

    init_bundle = ParagraphModel.load(init) if init else None
    mc = config.model
    return _train(
        "paragraph", config, out, build=lambda: build_paragraph_model(mc),
        wrap=lambda net, info: ParagraphModel(net, mc, info),
        make_sample=lambda page, aug, rng: paragraph_sample(page, mc, aug, rng),
        scale_of=lambda ex, h, w: config.cache_height / h, evaluate=_paragraph_eval,
        monitor="val_mean_iou", init=init_bundle, callbacks=callbacks, verbose=verbose)


def train_lines(config: LinesTrainConfig, out: str | os.PathLike, *, init: str | os.PathLike | None = None,
                callbacks: Sequence[Any] = (), verbose: int = 1) -> LayoutTrainResult:
    """Train (or resume: same ``out``) the line detector.

    ``init``: start from this bundle's weights (its network must match ``config.model.fcn``;
    the input width and post-processing come from ``config.model``: a fully convolutional
    net can be fine-tuned at another resolution).
    """
    from htr_tf.models.lines import build_line_detector

    init_bundle = LineDetector.load(init) if init else None
    mc = config.model

    def scale_of(ex: dict, h: int, w: int) -> float:
        b = np.asarray(ex["paragraph_box"], np.float32)
        return config.cache_area_width / max(float(b[2] - b[0]), 1.0)

    return _train(
        "lines", config, out, build=lambda: build_line_detector(mc),
        wrap=lambda net, info: LineDetector(net, mc, info),
        make_sample=lambda page, aug, rng: lines_sample(page, mc, config.crop_height, aug, rng),
        scale_of=scale_of, evaluate=_lines_eval, monitor="val_map", init=init_bundle,
        callbacks=callbacks, verbose=verbose)


def _is_number(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
