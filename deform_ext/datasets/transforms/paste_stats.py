"""What :class:`SmallObjectCopyPaste` did in one process: counts and the histogram of
ground-truth areas before and after (mask pixels when masks are loaded, else box
areas, which exceed the mask area of non-rectangular objects), in the image's
original pixels (the area in the current image over the resize's ``scale_factor``),
bucketed like COCO's small / medium / large."""
from typing import Sequence

import numpy as np

from .object_bank import area_buckets


def bucket_names(thresholds: Sequence[float]) -> list[str]:
    """Readable names of the buckets, e.g. ``['<32²', '32²-96²', '>=96²']``."""
    def side(area):
        root = float(np.sqrt(area))
        return f'{root:g}²' if root.is_integer() else f'{area:g}'
    sides = [side(t) for t in thresholds]
    return ([f'<{sides[0]}'] + [f'{a}-{b}' for a, b in zip(sides, sides[1:])]
            + [f'>={sides[-1]}'])


class PasteStats:
    """Running counts of one transform in one process.

    ``before`` and ``after`` are (len(thresholds) + 1,) int64 histograms of the
    ground truth entering and leaving the transform; ``pasted`` copies went in,
    ``no_place`` copies found no position (or vanished when scaled), ``dropped``
    instances were occluded beyond the limit, ``capped`` images were already at
    ``max_gt``.
    """

    COUNTS = ('images', 'pasted', 'no_place', 'dropped', 'capped')

    def __init__(self, thresholds: Sequence[float]):
        self.thresholds = tuple(thresholds)
        self.before = np.zeros(len(self.thresholds) + 1, np.int64)
        self.after = np.zeros_like(self.before)
        for name in self.COUNTS:
            setattr(self, name, 0)

    def histogram(self, areas: np.ndarray, scale: Sequence[float]) -> np.ndarray:
        """Bucket counts of ``areas`` (N,) in an image resized by ``scale`` (w, h)."""
        original = np.asarray(areas, np.float64) / (float(scale[0]) * float(scale[1]))
        return np.bincount(area_buckets(original, self.thresholds),
                           minlength=len(self.before))

    def add_image(self, before: np.ndarray, after: np.ndarray, scale: Sequence[float],
                  **counts: int) -> None:
        """Count one image whose ground-truth areas went from ``before`` to ``after``."""
        self.images += 1
        self.before += self.histogram(before, scale)
        self.after += self.histogram(after, scale)
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict:
        names = bucket_names(self.thresholds)
        return dict({name: getattr(self, name) for name in self.COUNTS},
                    before=dict(zip(names, self.before.tolist())),
                    after=dict(zip(names, self.after.tolist())))

    def format(self) -> str:
        """One line: the counts and the area histogram before -> after."""
        names = bucket_names(self.thresholds)
        buckets = ', '.join(f'{name} {b} -> {a}'
                            for name, b, a in zip(names, self.before, self.after))
        return (f'{self.images} images, {self.pasted} copies pasted, {self.no_place} '
                f'without a place, {self.dropped} occluded objects dropped, '
                f'{self.capped} images at max_gt; ground truth per area: {buckets}')
