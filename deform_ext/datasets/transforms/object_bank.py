"""The object bank of :class:`SmallObjectCopyPaste`: the objects of a COCO annotation
file that may be pasted, weighted by area, and their pixels on demand.

Why the annotation file and not a cache of the images a worker has seen: a worker's
recent images depend on how the sampler's indices were dealt to the workers, so a
cache would make the pasted objects depend on ``num_workers``; the annotation file is
the same in every process, so a bank built from it is too. The bank holds compact
arrays (no per-object dicts), is built once per process at first use, and reads a
source image only when one of its objects is pasted; it then keeps the crops of all
the image's pasteable objects in an LRU cache of ``cache_mb`` megabytes (speed,
never results, depends on it).
"""
import contextlib
import io
import os.path as osp
from collections import OrderedDict
from typing import Optional, Sequence

import mmcv
import numpy as np
import pycocotools.mask as mask_utils
from mmdet.datasets.api_wrappers import COCO
from mmengine.fileio import get, get_local_path

from .paste_geometry import pixel_extent

BOX_TOLERANCE = 1.0  # pixels a source box may exceed its image by (rounding)


def area_buckets(areas: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """(N,) bucket index of each area: 0 below ``thresholds[0]``, then one per
    threshold passed (COCO's small / medium / large for ``(32**2, 96**2)``)."""
    return np.digitize(areas, thresholds)


class ObjectBank:
    """The pasteable objects of ``ann_file``.

    Kept: annotations that are not crowd, of a category in ``classes`` (all of the
    file's categories when None, in the file's order, as ``CocoDataset`` labels
    them), of an image listed in ``images``, with a box at least one pixel wide and
    high lying inside its image (to ``BOX_TOLERANCE``), whose area weight is
    positive. The others are counted in ``summary['skipped']`` and left out. The
    area is the annotation's ``area`` (its box's when absent), in its image's pixels.

    Args:
        ann_file: COCO annotation file (any mmengine file backend).
        img_dir: folder the images' ``file_name`` are relative to.
        classes: category names to keep; labels follow the file's category order,
            as ``CocoDataset`` numbers them.
        area_thresholds: increasing bucket bounds on the area.
        area_weights: sampling weight of an object in each bucket
            (``len(area_thresholds) + 1`` non-negative numbers).
        segmentation: ``'ignore'``, ``'use'`` (kept where present) or ``'require'``
            (ValueError naming the file when a kept annotation has none).
        backend_args: mmengine file backend arguments.
        cache_mb: megabytes of decoded crops kept per process.
    """

    def __init__(self, ann_file: str, img_dir: str, *, classes: Optional[Sequence[str]],
                 area_thresholds: Sequence[float], area_weights: Sequence[float],
                 segmentation: str = 'use', backend_args: Optional[dict] = None,
                 cache_mb: float = 64):
        self.ann_file, self.backend_args = ann_file, backend_args
        self._cache: OrderedDict = OrderedDict()  # index -> (patch, mask)
        self._cache_bytes, self._cache_limit = 0, cache_mb * 2**20
        with get_local_path(ann_file, backend_args=backend_args) as local_path, \
                contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(local_path)
        cat2label = self._category_labels(coco, classes)
        images = coco.load_imgs(coco.get_img_ids())
        self.image_files = [osp.join(img_dir, image['file_name']) for image in images]
        self.image_sizes = np.array([(image['height'], image['width']) for image in images],
                                    dtype=np.int64).reshape(-1, 2)  # (M, 2) h, w
        image_index = {image['id']: i for i, image in enumerate(images)}
        skipped = dict(crowd=0, other_category=0, unknown_image=0, degenerate=0,
                       outside_image=0, zero_weight=0)
        kept = []
        for ann in coco.dataset.get('annotations', []):
            reason = self._skip_reason(ann, cat2label, image_index)
            if reason:
                skipped[reason] += 1
            else:
                kept.append(ann)
        boxes = np.array([ann['bbox'] for ann in kept], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # (N, 4) x1, y1, x2, y2
        areas = np.array([ann.get('area') or (b[2] - b[0]) * (b[3] - b[1])
                          for ann, b in zip(kept, boxes)], dtype=np.float64)
        weights = np.asarray(area_weights, dtype=np.float64)[
            area_buckets(areas, area_thresholds)]
        skipped['zero_weight'] = int((weights <= 0).sum())
        keep = weights > 0
        kept = [ann for ann, k in zip(kept, keep) if k]
        self.boxes, self.areas = boxes[keep], areas[keep]
        self.labels = np.array([cat2label[ann['category_id']] for ann in kept], np.int64)
        self.ann_ids = np.array([ann['id'] for ann in kept], dtype=np.int64)
        self.image_index = np.array([image_index[ann['image_id']] for ann in kept],
                                    dtype=np.int64)
        self._cdf = np.cumsum(weights[keep])
        self.segmentations = self._segmentations(kept, segmentation)
        self.summary = dict(objects=len(kept), skipped=skipped, buckets=np.bincount(
            area_buckets(self.areas, area_thresholds),
            minlength=len(area_weights)).tolist())
        if not kept:
            raise ValueError(
                f'{ann_file}: no annotation can be pasted (skipped: {skipped}; '
                f'area_thresholds={tuple(area_thresholds)}, area_weights='
                f'{tuple(area_weights)}, classes={classes})')

    @staticmethod
    def _category_labels(coco: COCO, classes: Optional[Sequence[str]]) -> dict:
        """{category id: label}, as ``CocoDataset`` numbers them."""
        if classes is None:
            return {cat_id: i for i, cat_id in enumerate(coco.get_cat_ids())}
        known = {cat['name'] for cat in coco.dataset.get('categories', [])}
        missing = [name for name in classes if name not in known]
        if missing:
            raise ValueError(f'classes {missing} are not categories of the annotation '
                             f'file (it has {sorted(known)})')
        return {cat_id: i for i, cat_id in enumerate(coco.get_cat_ids(cat_names=classes))}

    def _skip_reason(self, ann: dict, cat2label: dict, image_index: dict) -> str:
        """Why ``ann`` is not pasteable ('' when it is), weights aside."""
        if ann.get('iscrowd', 0):
            return 'crowd'
        if ann.get('category_id') not in cat2label:
            return 'other_category'
        if ann.get('image_id') not in image_index:
            return 'unknown_image'
        x, y, w, h = ann['bbox']
        if w < 1 or h < 1:
            return 'degenerate'
        height, width = self.image_sizes[image_index[ann['image_id']]]
        if (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE
                or y + h > height + BOX_TOLERANCE):
            return 'outside_image'
        return ''

    def _segmentations(self, kept: list, segmentation: str) -> Optional[list]:
        """Per kept object its COCO segmentation or None; None for all if ignored."""
        if segmentation == 'ignore':
            return None
        segmentations = [ann.get('segmentation') or None for ann in kept]
        missing = [ann['id'] for ann, s in zip(kept, segmentations) if s is None]
        if missing and segmentation == 'require':
            raise ValueError(
                f"{self.ann_file}: paste_mode='mask' needs a 'segmentation' in every "
                f'pasteable annotation; {len(missing)} of {len(kept)} have none (first: '
                f"annotation id {missing[0]}); use paste_mode='box' or 'auto'")
        return segmentations

    def __len__(self) -> int:
        return len(self.ann_ids)

    def sample(self, rng: np.random.Generator, num: int) -> np.ndarray:
        """(num,) object indices drawn with replacement, probability ∝ area weight."""
        draws = rng.random(num) * self._cdf[-1]
        return np.minimum(np.searchsorted(self._cdf, draws, side='right'), len(self) - 1)

    def extent(self, index: int) -> tuple[int, int, int, int]:
        """x1, y1, x2, y2 of object ``index``'s crop: its box rounded outward."""
        return pixel_extent(self.boxes[index], self.image_sizes[self.image_index[index]])

    def crop(self, index: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Object ``index``'s pixels in its :meth:`extent`: uint8 BGR (h, w, 3) and
        its bool (h, w) mask (None: no segmentation)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        image = self._read_image(int(self.image_index[index]))
        for other in np.flatnonzero(self.image_index == self.image_index[index]):
            if other != index:  # likely drawn later: one decode serves them all
                self._remember(int(other), self._cut(int(other), image))
        crop = self._cut(index, image)
        self._remember(index, crop)
        return crop

    def _cut(self, index: int, image: np.ndarray) -> tuple:
        """(patch, mask) of object ``index`` from its decoded ``image``."""
        x1, y1, x2, y2 = self.extent(index)
        patch = image[y1:y2, x1:x2].copy()
        segmentation = None if self.segmentations is None else self.segmentations[index]
        mask = None if segmentation is None else self._mask(
            segmentation, (x1, y1), patch.shape[:2], image.shape[:2])
        return patch, mask

    def _remember(self, index: int, crop: tuple) -> None:
        """Cache ``crop``, evicting the least recently used beyond the limit."""
        self._cache[index] = crop
        self._cache_bytes += sum(a.nbytes for a in crop if a is not None)
        while self._cache_bytes > self._cache_limit and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= sum(a.nbytes for a in old if a is not None)

    def _read_image(self, image: int) -> np.ndarray:
        """Image number ``image`` as LoadImageFromFile reads it (colour, BGR, cv2);
        ValueError naming the file when its size differs from the annotation's."""
        path = self.image_files[image]
        pixels = mmcv.imfrombytes(get(path, backend_args=self.backend_args),
                                  flag='color', channel_order='bgr')
        if pixels is None:
            raise ValueError(f'{path}: cannot decode this source image of {self.ann_file}')
        if tuple(pixels.shape[:2]) != tuple(self.image_sizes[image]):
            raise ValueError(f'{path}: image is {pixels.shape[:2]} (h, w) but '
                             f'{self.ann_file} says {tuple(self.image_sizes[image])}')
        return pixels

    @staticmethod
    def _mask(segmentation, origin: tuple[int, int], size: tuple[int, int],
              image_size: tuple[int, int]) -> np.ndarray:
        """bool (h, w) mask of ``segmentation`` in the crop at ``origin`` (x, y)."""
        (h, w), (x0, y0) = size, origin
        if isinstance(segmentation, list):  # polygons: rasterise in the crop alone
            shifted = [(np.asarray(poly, np.float64).reshape(-1, 2) - (x0, y0)).ravel()
                       .tolist() for poly in segmentation if len(poly) >= 6]
            rles = mask_utils.frPyObjects(shifted, h, w) if shifted else []
            return (mask_utils.decode(mask_utils.merge(rles)).astype(bool) if rles
                    else np.zeros((h, w), bool))
        if isinstance(segmentation['counts'], list):  # uncompressed RLE
            segmentation = mask_utils.frPyObjects(segmentation, *image_size)
        return mask_utils.decode(segmentation).astype(bool)[y0:y0 + h, x0:x0 + w]
