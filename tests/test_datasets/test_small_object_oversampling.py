"""SmallObjectOversampledDataset around mmdet's CocoDataset on the generator's set:
which images repeat, different pastes per repeat, and the pipeline pass-through that
PipelineSwitchHook relies on."""
import json

import numpy as np
import pytest
from mmcv.transforms import Compose

from deform_ext.engine.hooks.pipeline_epoch_hook import set_pipeline_seed_epoch
from deform_ext.registry import DATASETS, build_in_scope
from tests.test_datasets.copy_paste_data import TRAIN_ANNOTATIONS, copy_paste_dataset

pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')


def _oversampled(root, repeats, **copy_paste_args):
    dataset = build_in_scope(DATASETS, dict(
        type='SmallObjectOversampledDataset', repeats=repeats,
        dataset=copy_paste_dataset(root, build=False, **copy_paste_args)))
    set_pipeline_seed_epoch(dataset, 3, 0)
    return dataset


def _small_image_ids(root) -> set:
    coco = json.loads((root / TRAIN_ANNOTATIONS).read_text())
    return {ann['image_id'] for ann in coco['annotations']
            if ann['bbox'][2] * ann['bbox'][3] < 32 ** 2}


def _sample(dataset, index):
    sample = dataset[index]
    return sample['inputs'].numpy(), sample['data_samples'].gt_instances.bboxes.numpy()


def test_images_with_small_objects_appear_repeats_times(synthetic_set):
    dataset = _oversampled(synthetic_set, repeats=3)
    small = _small_image_ids(synthetic_set)
    images = len(dataset.dataset)
    assert 0 < len(small) < images  # the fixture has both kinds
    assert len(dataset) == images + 2 * len(small)
    assert dataset.small_image_count == len(small)
    seen = {}
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        seen.setdefault(info['img_id'], []).append(info['repeat_index'])
    assert {img_id: sorted(r) for img_id, r in seen.items()} == {
        img_id: [0, 1, 2] if img_id in small else [0] for img_id in seen}


def test_each_repeat_gets_its_own_pastes_and_the_first_is_the_plain_datasets(synthetic_set):
    dataset = _oversampled(synthetic_set, repeats=2, num_objects=(2, 2))
    plain = copy_paste_dataset(synthetic_set, num_objects=(2, 2))
    set_pipeline_seed_epoch(plain, 3, 0)
    first, second = [idx for idx in range(len(dataset))
                     if dataset.get_data_info(idx)['sample_idx'] == 0][:2]
    image_0, boxes_0 = _sample(dataset, first)
    image_1, boxes_1 = _sample(dataset, second)
    assert not np.array_equal(boxes_0, boxes_1)
    assert not np.array_equal(image_0, image_1)
    image, boxes = _sample(plain, 0)
    assert np.array_equal(image, image_0) and np.array_equal(boxes, boxes_0)
    again = _sample(_oversampled(synthetic_set, repeats=2, num_objects=(2, 2)), second)
    assert np.array_equal(again[0], image_1) and np.array_equal(again[1], boxes_1)


def test_pipeline_is_the_wrapped_datasets(synthetic_set):
    dataset = _oversampled(synthetic_set, repeats=2)
    plain = Compose([t for t in dataset.pipeline.transforms
                     if type(t).__name__ != 'SmallObjectCopyPaste'])
    dataset.pipeline = plain  # what PipelineSwitchHook does
    assert dataset.dataset.pipeline is plain and dataset.pipeline is plain
    counts = json.loads((synthetic_set / TRAIN_ANNOTATIONS).read_text())['annotations']
    img_id = dataset.get_data_info(0)['img_id']
    raw = sum(ann['image_id'] == img_id for ann in counts)
    assert len(dataset[0]['data_samples'].gt_instances) == raw  # nothing pasted now
    assert dataset.metainfo['classes'] == dataset.dataset.metainfo['classes']


@pytest.mark.parametrize('repeats', [0, 1.5])
def test_bad_repeats_is_an_error(synthetic_set, repeats):
    with pytest.raises(ValueError, match='repeats must be an int >= 1'):
        _oversampled(synthetic_set, repeats=repeats)
