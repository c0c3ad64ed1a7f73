"""Fixtures of the dataset tests; the data helpers live in copy_paste_data.py."""
from pathlib import Path

import numpy as np
import pytest

from deform_ext.datasets import generate_synthetic_coco
from tests.test_datasets.copy_paste_data import (SOURCE_COLOUR, TRIANGLE, polygon_mask,
                                                 write_coco)


@pytest.fixture(scope='session')
def synthetic_set(tmp_path_factory) -> Path:
    """12 training images of 128 px (seed 1), with polygons."""
    root = tmp_path_factory.mktemp('copy_paste') / 'synthetic_coco'
    generate_synthetic_coco(root, num_train=12, num_val=1, image_size=128, seed=1)
    return root


@pytest.fixture
def handmade_set(tmp_path) -> Path:
    """One 32 x 32 grey (100) source image; the TRIANGLE painted in SOURCE_COLOUR is
    its one object, annotated with box (12, 12, 8, 8) and that polygon ('square',
    label 1)."""
    pixels = np.full((32, 32, 3), 100, np.uint8)
    pixels[polygon_mask(TRIANGLE, 32, 32)] = SOURCE_COLOUR
    ann = dict(image_id=1, category_id=2, bbox=[12, 12, 8, 8], area=32,
               segmentation=[TRIANGLE])
    return write_coco(tmp_path / 'handmade', [('source.png', pixels)], [ann])
