"""Geometry of :class:`SmallObjectCopyPaste`: feathered box alphas, placement that
avoids existing objects, and which pixels of each instance stay visible as pastes
cover them. Coordinates are pixels, boxes ``(x1, y1, x2, y2)``, origins ``(x, y)``."""
from typing import Optional

import numpy as np


def feathered_alpha(height: int, width: int, feather: float) -> np.ndarray:
    """float32 (height, width) alpha of a pasted box: 1 inside, falling linearly to
    0 over ``feather`` pixels at the edge (sampled at pixel centres); all ones when
    ``feather`` is 0."""
    if feather <= 0:
        return np.ones((height, width), np.float32)
    ys, xs = np.arange(height) + 0.5, np.arange(width) + 0.5
    to_edge = np.minimum(np.minimum(ys, height - ys)[:, None],
                         np.minimum(xs, width - xs)[None, :])
    return np.clip(to_edge / feather, 0, 1).astype(np.float32)


def covered_fractions(candidates: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, M) fraction of each box (M, 4) that each candidate (T, 4) covers (0 for
    empty boxes)."""
    low = np.maximum(candidates[:, None, :2], boxes[None, :, :2])
    high = np.minimum(candidates[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)[None, :]
    return np.divide(inter, areas, out=np.zeros_like(inter), where=areas > 0)


def choose_position(rng: np.random.Generator, size: tuple[int, int],
                    image_size: tuple[int, int], boxes: np.ndarray, *,
                    max_overlap: float, tries: int) -> Optional[tuple[int, int]]:
    """Top-left ``(x, y)`` for a ``size`` (w, h) paste inside an ``image_size``
    (h, w) image: the first of ``tries`` uniform random positions that covers at most
    ``max_overlap`` of each box of ``boxes`` (M, 4): small pastes may lie on large
    objects, not on small ones.
    None when the paste does not fit or no position qualifies. Draws ``tries``
    positions from ``rng`` whenever the paste fits, whatever is found."""
    (w, h), (height, width) = size, image_size
    if w > width or h > height:
        return None
    xy = rng.integers(0, (width - w + 1, height - h + 1), size=(tries, 2))
    if len(boxes) == 0:
        return int(xy[0, 0]), int(xy[0, 1])
    candidates = np.concatenate([xy, xy + (w, h)], axis=1).astype(np.float64)
    fits = np.all(covered_fractions(candidates, boxes) <= max_overlap, axis=1)
    if not fits.any():
        return None
    first = int(np.argmax(fits))
    return int(xy[first, 0]), int(xy[first, 1])


def pixel_extent(box: np.ndarray, image_size: tuple[int, int]) -> tuple[int, ...]:
    """The pixels a box (4,) touches, clipped to the image: x1, y1, x2, y2 ints
    (x2 <= x1 or y2 <= y1 when it lies outside)."""
    height, width = image_size
    x1, y1 = np.floor(box[:2]).astype(int)
    x2, y2 = np.ceil(box[2:]).astype(int)
    return max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)


class InstanceVisibility:
    """The pixels of each instance still visible while pastes cover them.

    Instance ``i`` is a bool array ``pixels[i]`` (h_i, w_i) at ``origins[i]`` in the
    image: its mask cropped to its box, or its whole box for box annotations. The
    arrays may be views into the image-sized masks, which are then updated in place.
    """

    def __init__(self):
        self.origins: list[tuple[int, int]] = []
        self.pixels: list[np.ndarray] = []
        self.initial: list[int] = []
        self.changed: list[bool] = []

    def add(self, origin: tuple[int, int], pixels: np.ndarray) -> None:
        self.origins.append(origin)
        self.pixels.append(pixels)
        self.initial.append(int(pixels.sum()))
        self.changed.append(False)

    def occlude(self, origin: tuple[int, int], cover: np.ndarray) -> None:
        """Remove the pixels of bool (h, w) ``cover`` at ``origin`` from every
        instance added so far."""
        cx, cy = origin
        ch, cw = cover.shape
        for i, ((x, y), pixels) in enumerate(zip(self.origins, self.pixels)):
            h, w = pixels.shape
            x1, y1, x2, y2 = max(x, cx), max(y, cy), min(x + w, cx + cw), min(y + h, cy + ch)
            if x2 <= x1 or y2 <= y1:
                continue
            mine = pixels[y1 - y:y2 - y, x1 - x:x2 - x]
            hidden = mine & cover[y1 - cy:y2 - cy, x1 - cx:x2 - cx]
            if hidden.any():
                mine &= ~hidden
                self.changed[i] = True

    def visible_fractions(self) -> np.ndarray:
        """(M,) visible over initial pixel count; 1 for instances with no pixels."""
        initial = np.array(self.initial, dtype=np.float64)
        visible = np.array([p.sum() for p in self.pixels], dtype=np.float64)
        return np.divide(visible, initial, out=np.ones_like(initial), where=initial > 0)

    def shrink(self, boxes: np.ndarray) -> np.ndarray:
        """``boxes`` (M, 4) of the instances, each changed one cut to the extent of
        its visible pixels (unchanged when none is left: it is dropped anyway)."""
        boxes = boxes.copy()
        for i, ((x, y), pixels) in enumerate(zip(self.origins, self.pixels)):
            if not self.changed[i] or not pixels.any():
                continue
            rows, cols = np.nonzero(pixels.any(axis=1))[0], np.nonzero(pixels.any(axis=0))[0]
            extent = (x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1)
            boxes[i, :2] = np.maximum(boxes[i, :2], extent[:2])
            boxes[i, 2:] = np.minimum(boxes[i, 2:], extent[2:])
        return boxes
