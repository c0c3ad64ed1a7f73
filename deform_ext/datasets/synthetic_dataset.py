"""The synthetic shapes dataset as a registered COCO-format dataset."""
from mmdet.datasets import CocoDataset

from deform_ext.registry import DATASETS

from .synthetic_shapes import CLASSES


@DATASETS.register_module()
class SyntheticCocoDataset(CocoDataset):
    """COCO-format dataset written by :func:`generate_synthetic_coco`.

    Identical to mmdet's ``CocoDataset`` but for its metainfo: the shape classes
    and a palette, so configs need not repeat them.
    """

    METAINFO = dict(
        classes=CLASSES,
        palette=[(220, 20, 60), (0, 130, 200), (60, 180, 75), (245, 130, 48),
                 (145, 30, 180), (70, 240, 240)][:len(CLASSES)])
