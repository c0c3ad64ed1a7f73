"""Datasets, the synthetic COCO-format generator and data transforms."""
from . import samplers, transforms  # noqa: F401
from .small_object_oversampling import SmallObjectOversampledDataset
from .synthetic_coco import generate_synthetic_coco
from .synthetic_dataset import SyntheticCocoDataset
from .synthetic_shapes import CLASSES as SYNTHETIC_CLASSES

__all__ = ['SYNTHETIC_CLASSES', 'SmallObjectOversampledDataset', 'SyntheticCocoDataset', 'generate_synthetic_coco']
