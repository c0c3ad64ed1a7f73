"""``SmallObjectCopyPaste``: paste objects of the training set, small ones above all,
into each training image (Kisantal et al. 2019, "Augmentation for small object
detection"), as one ordinary pipeline step of a plain ``CocoDataset``.

Example (a train pipeline; the ablation's rows differ only in this dict)::

    copy_paste = dict(
        type='deform_ext.SmallObjectCopyPaste',  # 'SmallObjectCopyPaste' in our scope
        ann_file='annotations/instances_train.json', data_root=data_root,
        data_prefix=dict(img='train/'),   # the training dataset's own paths
        paste_mode='box',                 # 'mask' | 'box' | 'auto'
        area_weights=(1.0, 0.2, 0.0),     # small, medium, large
        num_objects=(1, 3), copies=(1, 3), max_gt=100)
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),  # with_mask=True: masks updated
        dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        copy_paste,
        dict(type='PackDetInputs')]
    custom_hooks = [
        dict(type='deform_ext.PipelineEpochHook'),  # runner seed + epoch -> transform
        dict(type='PipelineSwitchHook', switch_epoch=max_epochs - 2,  # off at the end
             switch_pipeline=[t for t in train_pipeline if t is not copy_paste])]

Where in the pipeline: after ``LoadAnnotations`` and the geometric transforms
(resize, flip, crop), before ``PackDetInputs`` (and any ``Pad``/``Normalize``). Pasted
objects are then drawn at training resolution and never cut by a later crop; each
is scaled by the image's ``scale_factor`` (1 before any ``Resize``) times a jitter,
so pasted objects keep their size in the dataset's own pixels.

Determinism: every random draw for an image comes from its own generator,
``PCG64(SeedSequence((seed, epoch, img_id, tag[, repeat_index])))``, never from a
worker's stream, so the output is the same bit for bit across runs, worker counts,
``persistent_workers`` and ranks. ``seed`` is the argument, else the runner's ``randomness.seed``; it and
the epoch reach the transform from :class:`~deform_ext.engine.hooks.PipelineEpochHook`
through a shared-memory cell (persistent workers see it). Without that hook the
epoch stays 0 and each image gets the same pastes every epoch (a warning says so).
An image repeated within an epoch by ``RepeatDataset`` gets the same pastes; by
:class:`~deform_ext.datasets.SmallObjectOversampledDataset` (``repeat_index``), new ones.
Other random transforms (``RandomFlip``) draw from the worker's stream, so the whole
pipeline's output depends on the worker count unless they are left out.

Bad input: a missing key or a malformed shape raises ValueError naming the image
file, the key and the shape (raised in a worker, the DataLoader re-raises it with
that message). Documented skips: an image with no ground truth is pasted into like
any other; ground-truth boxes outside the image are kept as they are and never
occluded; source annotations that are crowd, degenerate, outside their image or of
another class are left out of the bank (see :class:`ObjectBank`); an empty bank,
or ``paste_mode='mask'`` with an annotation lacking ``segmentation``, raises
ValueError naming the annotation file.
"""
import warnings
import zlib
from typing import Optional, Sequence

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.structures.bbox import BaseBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.fileio import join_path
from mmengine.logging import print_log
from torch.utils.data import get_worker_info

from deform_ext.registry import TRANSFORMS
from .object_bank import ObjectBank
from .paste_geometry import (InstanceVisibility, choose_position, feathered_alpha,
                             pixel_extent)
from .paste_stats import PasteStats

RNG_TAG = 0x5C0B  # separates this transform's streams from others keyed alike
PASTE_MODES = ('auto', 'mask', 'box')


def _pair(name: str, value, low: float) -> tuple:
    """``value`` (or ``(value, value)``) as a (low, high) pair, else ValueError."""
    pair = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(pair) != 2 or not low <= pair[0] <= pair[1]:
        raise ValueError(f'{name} must be a number >= {low} or a pair (low, high) of '
                         f'them with low <= high, got {value!r}')
    return pair


@TRANSFORMS.register_module()
class SmallObjectCopyPaste(BaseTransform):
    """Paste objects drawn from the training annotations, weighted by area.

    Per image, with probability ``prob``: draw ``num_objects`` objects from the bank
    (probability ∝ ``area_weights`` of their COCO area bucket), paste each ``copies``
    times, scaled by ``scale_factor`` × a uniform ``scale_jitter``, at the first of
    ``placement_tries`` random positions whose box covers no existing box by more
    than ``max_overlap`` of that box's area, until the image holds ``max_gt``
    objects. A copy is cut out by its mask (``paste_mode='mask'``, or ``'auto'``
    where the annotation has a ``segmentation``) or pasted as its box with edges
    feathered over ``feather`` pixels. Pastes hide what they cover: the instances'
    masks (``gt_masks``, when loaded) or boxes lose those pixels, boxes shrink to
    what is left, and an instance with more than ``max_occluded`` of its pixels
    hidden is dropped.

    Required keys: ``img`` (h, w, 3), ``gt_bboxes`` (N, 4), ``gt_bboxes_labels``
    (N,), ``img_id`` (or ``sample_idx``). Optional: ``gt_ignore_flags`` (N,),
    ``gt_masks`` (N masks of (h, w); PolygonMasks come out as BitmapMasks),
    ``scale_factor`` (w, h), ``img_path`` (named in errors). Modified: ``img`` and
    the ``gt_*`` keys, pasted instances appended in pasting order.

    Args:
        ann_file: training annotation file, relative to ``data_root`` unless absolute.
        data_root, data_prefix: as the dataset's (``data_prefix['img']``: images).
        classes: the dataset's class names when it uses a subset of the file's
            categories (labelled as ``CocoDataset`` labels them).
        area_thresholds: COCO area bucket bounds, original pixels.
        area_weights: sampling weight per bucket (one more than thresholds).
        num_objects: (low, high) objects drawn per image.
        copies: (low, high) copies of each drawn object.
        scale_jitter: (low, high) range of the extra scale of each copy.
        prob: probability of pasting into an image.
        paste_mode: 'mask', 'box' or 'auto' (see above).
        feather: width in pixels of the alpha ramp at a pasted box's edge.
        max_overlap: the largest fraction of an existing box a copy may cover.
        placement_tries: random positions tried per copy.
        max_occluded: the largest hidden fraction an instance may keep.
        max_gt: most ground-truth objects per image after pasting (keep it at or
            below a DETR's ``num_queries``); images above it are left as they are.
        seed: fixed seed instead of the runner's.
        cache_mb: megabytes of decoded source crops kept per process.
        log_interval: log the stats every this many images per process (0: never).
        backend_args: mmengine file backend arguments.
    """

    def __init__(self, ann_file: str, data_root: str = '',
                 data_prefix: Optional[dict] = None,
                 classes: Optional[Sequence[str]] = None,
                 area_thresholds: Sequence[float] = (32**2, 96**2),
                 area_weights: Sequence[float] = (1.0, 0.2, 0.0),
                 num_objects=(1, 3), copies=(1, 3), scale_jitter=(0.8, 1.25),
                 prob: float = 1.0, paste_mode: str = 'auto', feather: float = 2.0,
                 max_overlap: float = 0.2, placement_tries: int = 20,
                 max_occluded: float = 0.7, max_gt: int = 100,
                 seed: Optional[int] = None, cache_mb: float = 64,
                 log_interval: int = 1000, backend_args: Optional[dict] = None):
        if paste_mode not in PASTE_MODES:
            raise ValueError(f'paste_mode must be one of {PASTE_MODES}, got {paste_mode!r}')
        if (len(area_weights) != len(area_thresholds) + 1 or min(area_weights) < 0
                or list(area_thresholds) != sorted(area_thresholds)):
            raise ValueError('area_weights needs one non-negative weight per bucket of the '
                             f'increasing area_thresholds {tuple(area_thresholds)}, got '
                             f'{tuple(area_weights)}')
        for name, value in (('prob', prob), ('max_overlap', max_overlap),
                            ('max_occluded', max_occluded)):
            if not 0 <= value <= 1:
                raise ValueError(f'{name} must be in [0, 1], got {value!r}')
        self.num_objects = _pair('num_objects', num_objects, 0)
        self.copies = _pair('copies', copies, 1)
        self.scale_jitter = _pair('scale_jitter', scale_jitter, 1e-3)
        self.ann_file = ann_file if not data_root else join_path(data_root, ann_file)
        self.img_dir = join_path(data_root, (data_prefix or {}).get('img', ''))
        self.classes = None if classes is None else tuple(classes)
        self.area_thresholds, self.area_weights = tuple(area_thresholds), tuple(area_weights)
        self.prob, self.paste_mode, self.feather = prob, paste_mode, feather
        self.max_overlap, self.placement_tries = max_overlap, placement_tries
        self.max_occluded, self.max_gt, self.seed = max_occluded, max_gt, seed
        self.cache_mb, self.log_interval = cache_mb, log_interval
        self.backend_args = backend_args
        # (seed, epoch) from PipelineEpochHook, -1 until set; shared with the workers
        self._seed_epoch = torch.full((2,), -1, dtype=torch.int64).share_memory_()
        self._bank: Optional[ObjectBank] = None
        self._warned = False
        self.stats = PasteStats(self.area_thresholds)

    def set_seed_epoch(self, seed: int, epoch: int) -> None:
        """Called in the main process before each epoch (PipelineEpochHook)."""
        self._seed_epoch.copy_(torch.tensor([int(seed) % 2**63, int(epoch)]))

    @property
    def bank(self) -> ObjectBank:
        """The object bank, built at first use in each process."""
        if self._bank is None:
            segmentation = dict(auto='use', mask='require', box='ignore')[self.paste_mode]
            self._bank = ObjectBank(
                self.ann_file, self.img_dir, classes=self.classes,
                area_thresholds=self.area_thresholds, area_weights=self.area_weights,
                segmentation=segmentation, backend_args=self.backend_args,
                cache_mb=self.cache_mb)
            summary = self._bank.summary
            self._log(f'object bank of {summary["objects"]} objects per area bucket '
                      f'{summary["buckets"]} from {self.ann_file}; skipped '
                      f'{ {k: v for k, v in summary["skipped"].items() if v} }')
        return self._bank

    def _log(self, message: str) -> None:
        worker = get_worker_info()
        where = 'main process' if worker is None else f'worker {worker.id}'
        print_log(f'SmallObjectCopyPaste ({where}): {message}', logger='current')

    def _rng(self, results: dict) -> np.random.Generator:
        """The generator of this image in this epoch (see the module docstring)."""
        hooked_seed, epoch = (int(v) for v in self._seed_epoch)
        if epoch < 0 and not self._warned:
            warnings.warn('SmallObjectCopyPaste: no PipelineEpochHook set the epoch, so '
                          'an image gets the same pastes every epoch; add custom_hooks='
                          "[dict(type='deform_ext.PipelineEpochHook')]")
            self._warned = True
        seed = self.seed if self.seed is not None else max(hooked_seed, 0)
        key = results.get('img_id', results.get('sample_idx'))
        if key is None:
            raise ValueError(f'{results.get("img_path")}: SmallObjectCopyPaste needs '
                             "results['img_id'] or results['sample_idx'] to seed the image")
        if not isinstance(key, (int, np.integer)) or key < 0:
            key = zlib.crc32(str(key).encode())
        entropy = (int(seed) % 2**63, max(epoch, 0), int(key), RNG_TAG)
        repeat = int(results.get('repeat_index', 0))  # SmallObjectOversampledDataset
        entropy += (repeat,) if repeat else ()
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))

    def transform(self, results: dict) -> dict:
        boxes, labels, masks = self._checked_inputs(results)
        scale = results.get('scale_factor', (1.0, 1.0))
        rng = self._rng(results)
        counts = dict(pasted=0, no_place=0, dropped=0, capped=0)
        before = self._areas(results)
        if rng.random() < self.prob:
            if len(boxes) >= self.max_gt:
                counts['capped'] = 1
            else:
                self._paste(results, rng, boxes, labels, masks, scale, counts)
        self.stats.add_image(before, self._areas(results), scale, **counts)
        if self.log_interval and self.stats.images % self.log_interval == 0:
            self._log(self.stats.format())
        return results

    @staticmethod
    def _areas(results: dict) -> np.ndarray:
        """(N,) ground-truth areas: mask pixels when masks are loaded, else boxes'."""
        if 'gt_masks' in results:
            return np.asarray(results['gt_masks'].areas, np.float64)
        boxes = results['gt_bboxes']
        boxes = boxes.numpy() if isinstance(boxes, BaseBoxes) else np.asarray(boxes)
        boxes = boxes.reshape(-1, 4)
        return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)

    def _checked_inputs(self, results: dict) -> tuple:
        """(N, 4) float boxes, (N,) labels and the N masks (BitmapMasks or
        PolygonMasks) or None, after checking the keys and shapes this transform
        relies on."""
        where = results.get('img_path', '<image without img_path>')
        img = results.get('img')
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 \
                or 0 in img.shape:
            shape = getattr(img, 'shape', type(img).__name__)
            raise ValueError(f"{where}: results['img'] is {shape}; SmallObjectCopyPaste "
                             'needs an (h, w, 3) image with h, w > 0')
        for key in ('gt_bboxes', 'gt_bboxes_labels'):
            if key not in results:
                raise ValueError(f"{where}: SmallObjectCopyPaste needs results['{key}']: "
                                 'put LoadAnnotations(with_bbox=True) before it')
        boxes = results['gt_bboxes']
        boxes = boxes.numpy() if isinstance(boxes, BaseBoxes) else np.asarray(boxes)
        boxes = boxes.reshape(-1, 4) if boxes.size == 0 else boxes
        num = len(boxes)
        for key, shape in (('gt_bboxes', (num, 4)), ('gt_bboxes_labels', (num,)),
                           ('gt_ignore_flags', (num,))):
            value = boxes if key == 'gt_bboxes' else results.get(key)
            if value is not None and tuple(np.shape(value)) != shape:
                raise ValueError(f"{where}: results['{key}'] has shape "
                                 f'{tuple(np.shape(value))}, expected {shape}')
        masks = results.get('gt_masks')
        if masks is not None:
            if (len(masks), masks.height, masks.width) != (num, *img.shape[:2]):
                raise ValueError(f"{where}: results['gt_masks'] holds {len(masks)} masks "
                                 f'of {(masks.height, masks.width)} for {num} boxes on an '
                                 f'image of {img.shape[:2]}')
        return boxes.astype(np.float64), np.asarray(results['gt_bboxes_labels']), masks

    def _paste(self, results: dict, rng: np.random.Generator, boxes: np.ndarray,
               labels: np.ndarray, masks, scale, counts: dict) -> None:
        """Paste into ``results`` in place, counting into ``counts``."""
        img, image_size = results['img'], results['img'].shape[:2]
        masks = None if masks is None else masks.to_ndarray() != 0  # (N, h, w) bool
        visibility = InstanceVisibility()
        margin = np.array([-1, -1, 1, 1]) if masks is not None else 0  # mask past box
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = pixel_extent(box + margin, image_size)
            region = (masks[i, y1:y2, x1:x2] if masks is not None  # a view: updated
                      else np.ones((max(y2 - y1, 0), max(x2 - x1, 0)), bool))
            visibility.add((x1, y1), region)
        all_boxes, pasted_labels = list(boxes), []
        for source in self.bank.sample(rng, int(rng.integers(self.num_objects[0],
                                                             self.num_objects[1] + 1))):
            for _ in range(int(rng.integers(self.copies[0], self.copies[1] + 1))):
                if len(all_boxes) >= self.max_gt:
                    break
                pasted = self._paste_copy(rng, int(source), img, np.array(all_boxes)
                                          .reshape(-1, 4), scale, visibility)
                if pasted is None:
                    counts['no_place'] += 1
                    continue
                all_boxes.append(pasted)
                pasted_labels.append(self.bank.labels[source])
                counts['pasted'] += 1
        if not pasted_labels:
            return
        keep = visibility.visible_fractions() >= 1 - self.max_occluded
        counts['dropped'] = int((~keep).sum())
        new_boxes = visibility.shrink(np.array(all_boxes))[keep]
        self._write_instances(results, keep, new_boxes, labels, pasted_labels, masks,
                              visibility)

    def _paste_copy(self, rng: np.random.Generator, source: int, img: np.ndarray,
                    boxes: np.ndarray, scale, visibility: InstanceVisibility):
        """Paste one copy of bank object ``source`` into ``img`` in place and record
        it in ``visibility``; returns its box (4,), or None when it found no place."""
        bank = self.bank
        x1, y1, x2, y2 = bank.extent(source)
        jitter = rng.uniform(*self.scale_jitter)
        fx, fy = float(scale[0]) * jitter, float(scale[1]) * jitter
        w, h = max(1, round((x2 - x1) * fx)), max(1, round((y2 - y1) * fy))
        position = choose_position(rng, (w, h), img.shape[:2], boxes,
                                   max_overlap=self.max_overlap, tries=self.placement_tries)
        if position is None:
            return None
        patch, mask = bank.crop(source)
        patch = mmcv.imresize(patch, (w, h), interpolation='bilinear')
        if mask is not None and self.paste_mode != 'box':
            cover = mmcv.imresize(mask.astype(np.uint8), (w, h), interpolation='nearest') > 0
            if not cover.any():
                return None
            alpha = cover.astype(np.float32)
        else:
            alpha = feathered_alpha(h, w, self.feather)
            cover = alpha >= 0.5
        x, y = position
        region = img[y:y + h, x:x + w]
        blended = alpha[..., None] * patch + (1 - alpha[..., None]) * region
        if img.dtype == np.uint8:
            blended = np.clip(np.rint(blended), 0, 255)
        region[...] = blended.astype(img.dtype)
        visibility.occlude((x, y), cover)
        visibility.add((x, y), cover.copy())
        box = bank.boxes[source]
        return np.array([x + (box[0] - x1) * fx, y + (box[1] - y1) * fy,
                         x + (box[2] - x1) * fx, y + (box[3] - y1) * fy])

    @staticmethod
    def _write_instances(results: dict, keep: np.ndarray, boxes: np.ndarray,
                         labels: np.ndarray, pasted_labels: list,
                         masks: Optional[np.ndarray], visibility: InstanceVisibility):
        """Set the ``gt_*`` keys of ``results`` to the kept instances."""
        num, num_pasted = len(labels), len(pasted_labels)
        box_type = type(results['gt_bboxes'])
        results['gt_bboxes'] = (box_type(boxes.astype(np.float32))
                                if issubclass(box_type, BaseBoxes) else
                                boxes.astype(np.float32))
        results['gt_bboxes_labels'] = np.concatenate(
            [labels, np.array(pasted_labels, dtype=labels.dtype)])[keep]
        if 'gt_ignore_flags' in results:
            results['gt_ignore_flags'] = np.concatenate(
                [results['gt_ignore_flags'], np.zeros(num_pasted, bool)])[keep]
        if masks is not None:
            height, width = masks.shape[1:]
            new = np.zeros((num_pasted, height, width), bool)
            for row, ((x, y), pixels) in enumerate(zip(visibility.origins[num:],
                                                       visibility.pixels[num:])):
                new[row, y:y + pixels.shape[0], x:x + pixels.shape[1]] = pixels
            results['gt_masks'] = BitmapMasks(
                np.concatenate([masks, new])[keep].astype(np.uint8), height, width)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(ann_file={self.ann_file!r}, paste_mode='
                f'{self.paste_mode!r}, area_weights={self.area_weights}, num_objects='
                f'{self.num_objects}, copies={self.copies}, max_gt={self.max_gt})')
