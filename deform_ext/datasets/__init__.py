"""Datasets, the synthetic COCO-format generator and data transforms."""
from . import transforms  # noqa: F401
from .synthetic_coco import generate_synthetic_coco
from .synthetic_dataset import SyntheticCocoDataset
from .synthetic_shapes import CLASSES as SYNTHETIC_CLASSES

__all__ = ['SYNTHETIC_CLASSES', 'SyntheticCocoDataset', 'generate_synthetic_coco']
