"""SmallObjectCopyPaste on hand-made data whose geometry is known: the masks and box
paths, occlusion updates and drops, the ground-truth cap, bad input."""
import json
import warnings

import numpy as np
import pytest
from mmdet.structures.mask import BitmapMasks

from deform_ext.datasets.transforms import SmallObjectCopyPaste, small_object_copy_paste
from deform_ext.datasets.transforms.paste_geometry import InstanceVisibility
from tests.test_datasets.copy_paste_data import (SOURCE_COLOUR, TRAIN_ANNOTATIONS,
                                                 TRIANGLE, copy_paste, polygon_mask,
                                                 target, write_coco)

# pycocotools 2.0's mask decoding under numpy 2
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')
BGR = np.array(SOURCE_COLOUR[::-1], np.uint8)
SHAPE_MASK = polygon_mask(TRIANGLE, 32, 32)[12:20, 12:20]  # (8, 8) in its box


def _pasted_box(results) -> np.ndarray:
    """The last instance's box, as ints (x1, y1, x2, y2)."""
    return results['gt_bboxes'].numpy()[-1].round().astype(int)


def test_mask_path_copies_the_masked_pixels_only(handmade_set):
    results = copy_paste(handmade_set, paste_mode='mask')(target(masks=True))
    x1, y1, x2, y2 = _pasted_box(results)
    assert (x2 - x1, y2 - y1) == (8, 8)
    expected = np.zeros((32, 32, 3), np.uint8)
    expected[y1:y2, x1:x2][SHAPE_MASK] = BGR
    np.testing.assert_array_equal(results['img'], expected)
    assert results['gt_masks'].masks.shape == (1, 32, 32)
    np.testing.assert_array_equal(results['gt_masks'].masks[0] != 0, expected[..., 0] != 0)
    assert results['gt_bboxes_labels'].tolist() == [1]
    assert results['gt_ignore_flags'].tolist() == [False]


def test_box_path_feathers_the_edges(handmade_set):
    results = copy_paste(handmade_set, paste_mode='box', feather=2)(target())
    x1, y1, x2, y2 = _pasted_box(results)
    patch = np.full((8, 8, 3), 100, np.uint8)
    patch[SHAPE_MASK] = BGR
    pasted = results['img'][y1:y2, x1:x2].astype(np.float64)
    np.testing.assert_array_equal(pasted[2:6, 2:6], patch[2:6, 2:6])  # alpha 1
    np.testing.assert_allclose(pasted[0, 3], 0.25 * patch[0, 3], atol=0.5)  # alpha 1/4
    np.testing.assert_allclose(pasted[1, 3], 0.75 * patch[1, 3], atol=0.5)  # alpha 3/4
    assert results['img'].sum() == pasted.sum()  # nothing outside the box
    assert 'gt_masks' not in results


def test_auto_mode_pastes_boxes_for_annotations_without_segmentation(handmade_set):
    coco = json.loads((handmade_set / TRAIN_ANNOTATIONS).read_text())
    del coco['annotations'][0]['segmentation']
    (handmade_set / TRAIN_ANNOTATIONS).write_text(json.dumps(coco))
    results = copy_paste(handmade_set, paste_mode='auto', feather=0)(target(masks=True))
    x1, y1, x2, y2 = _pasted_box(results)
    assert (results['img'][y1:y2, x1:x2] != 0).all()  # the whole box went in
    assert results['gt_masks'].masks[-1].sum() == 64


@pytest.mark.parametrize('masks', [True, False])
def test_occluded_instances_lose_pixels_and_are_dropped_beyond_the_limit(handmade_set,
                                                                         masks):
    whole_image = [[0, 0, 32, 32]]
    mode = 'mask' if masks else 'box'
    kept = copy_paste(handmade_set, paste_mode=mode, max_overlap=1.0,
                      max_occluded=0.5)(target(whole_image, masks=masks))
    assert len(kept['gt_bboxes']) == 2
    np.testing.assert_array_equal(kept['gt_bboxes'].numpy()[0], whole_image[0])
    if masks:
        hidden = kept['gt_masks'].masks[1] != 0
        assert hidden.sum() == SHAPE_MASK.sum()
        np.testing.assert_array_equal(kept['gt_masks'].masks[0] != 0, ~hidden)
    dropped = copy_paste(handmade_set, paste_mode=mode, max_overlap=1.0,
                         max_occluded=0.01)(target(whole_image, masks=masks))
    assert len(dropped['gt_bboxes']) == 1 and dropped['gt_bboxes_labels'].tolist() == [1]


def test_boxes_shrink_to_what_stays_visible():
    visibility = InstanceVisibility()
    visibility.add((0, 0), np.ones((32, 10), bool))  # box (0, 0, 10, 32)
    visibility.add((20, 0), np.ones((4, 4), bool))  # untouched
    visibility.occlude((0, 0), np.ones((32, 4), bool))  # hides columns 0-3
    np.testing.assert_allclose(visibility.visible_fractions(), [0.6, 1.0])
    boxes = visibility.shrink(np.array([[0.0, 0, 10, 32], [20.5, 0, 24, 4]]))
    np.testing.assert_array_equal(boxes, [[4, 0, 10, 32], [20.5, 0, 24, 4]])


def test_ground_truth_count_is_capped(handmade_set):
    corners = [[0, 0, 2, 2], [62, 0, 64, 2], [0, 62, 2, 64]]
    many = dict(num_objects=(3, 3), copies=(2, 2))
    results = copy_paste(handmade_set, max_gt=4, **many)(target(corners, size=(64, 64)))
    assert len(results['gt_bboxes']) == 4
    transform = copy_paste(handmade_set, max_gt=3, **many)
    untouched = transform(target(corners, size=(64, 64)))
    assert len(untouched['gt_bboxes']) == 3 and not untouched['img'].any()
    assert transform.stats.capped == 1


def test_empty_images_and_boxes_outside_the_image_are_documented_skips(handmade_set):
    empty = copy_paste(handmade_set)(target())
    assert len(empty['gt_bboxes']) == 1
    outside = [[100, 100, 120, 120]]
    results = copy_paste(handmade_set, paste_mode='mask', max_overlap=1.0)(
        target(outside, masks=True))
    np.testing.assert_array_equal(results['gt_bboxes'].numpy()[0], outside[0])
    assert len(results['gt_bboxes']) == 2


def test_same_seed_same_pastes_other_epoch_other_pastes(synthetic_set):
    def pasted_boxes(epoch, seed=0):
        transform = copy_paste(synthetic_set, num_objects=(2, 2), seed=None)
        transform.set_seed_epoch(seed, epoch)
        return [transform(target(size=(96, 96), img_id=i))['gt_bboxes'].numpy()
                for i in range(4)]
    first = pasted_boxes(0)
    assert all(np.array_equal(a, b) for a, b in zip(first, pasted_boxes(0)))
    for other in (pasted_boxes(1), pasted_boxes(0, seed=1)):
        assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_statistics_are_logged(handmade_set, monkeypatch):
    logged = []
    monkeypatch.setattr(small_object_copy_paste, 'print_log',
                        lambda message, logger: logged.append(message))
    transform = copy_paste(handmade_set, log_interval=2)
    for _ in range(2):
        transform(target())
    assert 'object bank of 1 objects' in logged[0]
    assert logged[1].endswith('<32² 0 -> 2, 32²-96² 0 -> 0, >=96² 0 -> 0')
    assert transform.stats.as_dict()['pasted'] == 2


def test_missing_epoch_hook_is_warned_once(handmade_set):
    transform = SmallObjectCopyPaste(TRAIN_ANNOTATIONS, data_root=str(handmade_set),
                                     data_prefix=dict(img='train/'), log_interval=0)
    with pytest.warns(UserWarning, match='PipelineEpochHook'):
        transform(target())
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter('always')
        transform(target())
    assert not [w for w in later if 'PipelineEpochHook' in str(w.message)]


@pytest.mark.parametrize('change, message', [
    (lambda r: r.update(img=np.zeros((0, 32, 3), np.uint8)), r"target.png.*\(0, 32, 3\)"),
    (lambda r: r.pop('gt_bboxes'), "gt_bboxes.*LoadAnnotations"),
    (lambda r: r.update(gt_bboxes_labels=np.zeros(3, np.int64)), r"gt_bboxes_labels.*\(3,\)"),
    (lambda r: r.update(gt_masks=BitmapMasks(np.zeros((0, 32, 32)), 32, 32)),
     r"gt_masks.*0 masks.*for 1 boxes"),
])
def test_malformed_results_name_the_key_and_shape(handmade_set, change, message):
    results = target([[0, 0, 4, 4]], masks=True)
    change(results)
    with pytest.raises(ValueError, match=message):
        copy_paste(handmade_set)(results)


def test_bank_errors_name_the_annotation_file(handmade_set):
    with pytest.raises(FileNotFoundError, match='nowhere.json'):
        copy_paste(handmade_set, ann_file='nowhere.json')(target())
    coco = json.loads((handmade_set / TRAIN_ANNOTATIONS).read_text())
    with pytest.raises(ValueError, match=r'instances_train.json: no annotation can be pasted'):
        copy_paste(handmade_set, area_weights=(0, 0, 1))(target())
    del coco['annotations'][0]['segmentation']
    (handmade_set / TRAIN_ANNOTATIONS).write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"instances_train.json: paste_mode='mask' needs "
                                         r"a 'segmentation'.*annotation id 1"):
        copy_paste(handmade_set, paste_mode='mask')(target())


def test_source_image_of_another_size_is_named(handmade_set):
    write_coco(handmade_set, [('source.png', np.zeros((16, 32, 3), np.uint8))], [])
    coco = json.loads((handmade_set / TRAIN_ANNOTATIONS).read_text())
    coco['images'][0]['height'] = 32
    coco['annotations'] = [dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 4, 4],
                                area=16, iscrowd=0)]
    (handmade_set / TRAIN_ANNOTATIONS).write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r'source.png: image is \(16, 32\)'):
        copy_paste(handmade_set, paste_mode='box')(target())


@pytest.mark.parametrize('argument, value', [
    ('paste_mode', 'polygon'), ('area_weights', (1, 0)), ('area_weights', (1, -1, 0)),
    ('copies', (0, 2)), ('num_objects', (3, 1)), ('prob', 1.5), ('max_occluded', -0.1)])
def test_invalid_arguments_name_the_argument(handmade_set, argument, value):
    with pytest.raises(ValueError, match=argument):
        copy_paste(handmade_set, **{argument: value})
