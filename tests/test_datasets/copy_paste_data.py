"""Data for the Copy-Paste tests (fixtures in conftest.py): a tiny synthetic set
written by the project's generator, and a hand-made COCO set whose geometry the
tests know exactly."""
import json
import warnings
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from deform_ext.datasets import SYNTHETIC_CLASSES
from deform_ext.registry import DATASETS, build_in_scope

SOURCE_COLOUR = (200, 40, 90)  # RGB of the hand-made set's objects
TRAIN_ANNOTATIONS = 'annotations/instances_train.json'


def write_coco(root: Path, images: list, annotations: list,
               classes=SYNTHETIC_CLASSES) -> Path:
    """Write ``images`` ([(file name, RGB uint8 (h, w, 3))]) under ``root/train`` and
    their ``annotations`` (COCO dicts; ids and iscrowd filled in) to
    ``root/annotations/instances_train.json``; returns ``root``."""
    (root / 'train').mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(exist_ok=True)
    infos = []
    for image_id, (name, pixels) in enumerate(images, start=1):
        Image.fromarray(pixels).save(root / 'train' / name)
        infos.append(dict(id=image_id, file_name=name, height=pixels.shape[0],
                          width=pixels.shape[1]))
    anns = [dict(dict(iscrowd=0), **ann, id=i) for i, ann in enumerate(annotations, 1)]
    coco = dict(images=infos, annotations=anns,
                categories=[dict(id=i + 1, name=name) for i, name in enumerate(classes)])
    (root / TRAIN_ANNOTATIONS).write_text(json.dumps(coco))
    return root


TRIANGLE = [12, 12, 20, 12, 12, 20]  # the hand-made object's polygon, in its 8 x 8 box


def polygon_mask(polygon: list, height: int, width: int) -> np.ndarray:
    """bool (height, width) mask of one COCO polygon, as pycocotools draws it."""
    rle = mask_utils.frPyObjects([polygon], height, width)
    with warnings.catch_warnings():  # pycocotools 2.0's decoding under numpy 2
        warnings.filterwarnings('ignore', '__array__ implementation', DeprecationWarning)
        return mask_utils.decode(mask_utils.merge(rle)).astype(bool)


def copy_paste_dataset(root, *, masks=False, build=True, **copy_paste_args):
    """mmdet's CocoDataset config on ``root``: load, resize to 96, paste, pack;
    built unless ``build=False``."""
    copy_paste = dict(dict(type='SmallObjectCopyPaste', ann_file=TRAIN_ANNOTATIONS,
                           data_root=str(root), data_prefix=dict(img='train/'),
                           log_interval=0), **copy_paste_args)
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=masks),
                dict(type='Resize', scale=(96, 96), keep_ratio=True), copy_paste,
                dict(type='PackDetInputs')]
    config = dict(type='CocoDataset', metainfo=dict(classes=SYNTHETIC_CLASSES),
                  data_root=str(root), ann_file=TRAIN_ANNOTATIONS,
                  data_prefix=dict(img='train/'), pipeline=pipeline)
    return build_in_scope(DATASETS, config) if build else config


def copy_paste(root: Path, **kwargs):
    """A SmallObjectCopyPaste on ``root``'s training set: by default one copy of one
    object at its own size, seed 0, epoch 0, no logging."""
    from deform_ext.datasets.transforms import SmallObjectCopyPaste
    args = dict(ann_file=TRAIN_ANNOTATIONS, data_root=str(root),
                data_prefix=dict(img='train/'), num_objects=(1, 1), copies=(1, 1),
                scale_jitter=(1, 1), seed=0, log_interval=0)
    transform = SmallObjectCopyPaste(**dict(args, **kwargs))
    transform.set_seed_epoch(0, 0)
    return transform


def target(boxes=(), *, size=(32, 32), masks: bool = False, img_id: int = 1) -> dict:
    """A black (h, w) ``size`` image with ``boxes`` (N, 4) as LoadAnnotations leaves
    them (label 0, not ignored; with ``masks``, each box filled as its mask)."""
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    results = dict(img=np.zeros((*size, 3), np.uint8), img_id=img_id,
                   img_path='target.png', gt_bboxes=HorizontalBoxes(boxes),
                   gt_bboxes_labels=np.zeros(len(boxes), np.int64),
                   gt_ignore_flags=np.zeros(len(boxes), bool))
    if masks:
        bitmaps = np.zeros((len(boxes), *size), np.uint8)
        for bitmap, (x1, y1, x2, y2) in zip(bitmaps, boxes.astype(int)):
            bitmap[y1:y2, x1:x2] = 1
        results['gt_masks'] = BitmapMasks(bitmaps, *size)
    return results
