"""Text regions of a page: lines grouped into blocks, blocks put in reading order.

A page is not one paragraph: a letter has a date line and a signature, a notebook a marginal
note, a page may have two columns.  The line detector returns lines top to bottom over the
whole handwritten area, which interleaves two columns.  Here lines are grouped into regions
and the regions ordered, so every output (text, PAGE ``ReadingOrder``, ALTO block order)
reads one block after the other:

* two lines belong to one region when they overlap horizontally by at least
  ``min_overlap`` of the narrower one and the vertical gap between them is at most
  ``max_gap`` median line heights or ``pitch_gap`` times the page's usual gap between
  successive lines, whichever is larger (so evenly spaced lines stay together however wide
  the spacing; transitively: a paragraph is a chain of such lines);
* a region comes before another that lies beside it (they overlap vertically) when it is
  to its left (columns and marginalia read left to right), else when its top is higher;
* within a region lines stay in the detector's order (top to bottom);
* a region's outline is the convex hull of its lines' polygons (boxes where a line has none).

>>> groups = group_lines(np.array([[0, 0, 400, 30], [0, 40, 380, 70], [600, 0, 900, 30]], np.float32))
>>> groups
[[0, 1], [2]]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["RegionOptions", "group_lines", "reading_order", "region_outline"]


@dataclass(frozen=True)
class RegionOptions:
    """How lines are grouped into regions (:func:`group_lines`)."""

    #: Lines further apart vertically than this many median line heights start a new region.
    max_gap: float = 1.2
    #: Lines must overlap horizontally by this fraction of the narrower one to share a region.
    min_overlap: float = 0.25
    #: ... or further apart than this many times the median gap between successive lines.
    pitch_gap: float = 1.8


def group_lines(boxes: np.ndarray, options: RegionOptions | None = None) -> list[list[int]]:
    """Indices of ``boxes`` (``[N, 4]`` xyxy, in reading order) grouped into regions, the
    regions in reading order (see the module docstring)."""
    o = options or RegionOptions()
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(b)
    if n == 0:
        return []
    h = np.maximum(b[:, 3] - b[:, 1], 1.0)
    lh = float(np.median(h))
    w = np.maximum(b[:, 2] - b[:, 0], 1.0)
    xo = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    gap = np.maximum(b[:, None, 1], b[None, :, 1]) - np.minimum(b[:, None, 3], b[None, :, 3])
    beside = xo >= o.min_overlap * np.minimum(w[:, None], w[None, :])
    # the usual gap: from each line to the nearest line below it that it overlaps
    below = np.where(beside & (b[None, :, 1] > b[:, None, 1]), gap, np.inf)
    nearest = below.min(axis=1)
    usual = float(np.median(nearest[np.isfinite(nearest)])) if np.isfinite(nearest).any() else 0.0
    link = beside & (gap <= max(o.max_gap * lh, o.pitch_gap * usual))
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(link, 1))):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    regions = list(groups.values())
    ext = np.array([(b[r, 0].min(), b[r, 1].min(), b[r, 2].max(), b[r, 3].max()) for r in regions], np.float32)
    return [regions[k] for k in reading_order(ext, lh)]


def reading_order(extents: np.ndarray, line_height: float) -> list[int]:
    """Indices of regions (``[R, 4]`` xyxy extents) in reading order: a region beside another
    (they overlap vertically) and to its left (by more than half a ``line_height``) comes
    first, otherwise the higher one (see the module docstring).

    >>> reading_order(np.array([[600, 0, 900, 300], [0, 0, 400, 300], [0, 400, 900, 500]]), 30.0)
    [1, 0, 2]
    """
    ext = np.asarray(extents, np.float32).reshape(-1, 4)
    lh = float(line_height)

    def before(i: int, j: int) -> int:
        a, c = ext[i], ext[j]
        beside = min(a[3], c[3]) - max(a[1], c[1]) > 0
        if beside and a[2] <= c[0] + 0.5 * lh:
            return -1
        if beside and c[2] <= a[0] + 0.5 * lh:
            return 1
        return -1 if (a[1], a[0]) < (c[1], c[0]) else 1

    return sorted(range(len(ext)), key=functools.cmp_to_key(before))


def region_outline(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """The convex hull (``[K, 2]`` float32) of the given polygons."""
    import cv2

    pts = np.concatenate([np.asarray(p, np.float32).reshape(-1, 2) for p in polygons])
    return cv2.convexHull(pts).reshape(-1, 2).astype(np.float32)
