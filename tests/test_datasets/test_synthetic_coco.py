"""Tests of the synthetic COCO-format generator and its command-line tool."""
import contextlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from deform_ext.datasets import synthetic_coco
from deform_ext.datasets.synthetic_coco import CLASSES, generate_synthetic_coco

REPO_ROOT = Path(__file__).resolve().parents[2]
# pycocotools 2.0's mask decoding under numpy 2
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')
SMALL = dict(num_train=6, num_val=4, image_size=128)
OBJECTS_PER_IMAGE = (2, 12)


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob('*')) if path.is_file()}


def _quiet_coco(annotation_file: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_file))


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """bool (H, W) ``mask`` grown by ``steps`` 8-neighbour steps."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = np.zeros_like(mask)
        for dy in range(3):
            for dx in range(3):
                mask |= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return mask


@pytest.fixture(scope='module')
def small_set(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp('small') / 'synthetic_coco'
    generate_synthetic_coco(out_dir, seed=0, **SMALL)
    return out_dir


@pytest.fixture(scope='module')
def moderate_set(tmp_path_factory) -> Path:
    """40 training images at 256 px: enough for every COCO size bucket."""
    out_dir = tmp_path_factory.mktemp('moderate')
    generate_synthetic_coco(out_dir, num_train=40, num_val=1, image_size=256, seed=3)
    return out_dir


def _annotation_files(*roots: Path) -> list[tuple[Path, Path]]:
    """(annotation file, image directory) of both splits of each of ``roots``."""
    return [(root / 'annotations' / f'instances_{split}.json', root / split)
            for root in roots for split in ('train', 'val')]


def test_same_seed_gives_byte_identical_files(small_set, tmp_path):
    generate_synthetic_coco(tmp_path, seed=0, **SMALL)
    first, second = _files(small_set), _files(tmp_path)
    assert len([name for name in first if name.endswith('.png')]) == 10
    assert first == second


def test_different_seed_gives_different_files(small_set, tmp_path):
    generate_synthetic_coco(tmp_path, seed=1, **SMALL)
    first, second = _files(small_set), _files(tmp_path)
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)


def test_ground_truth_as_detections_scores_ap_one(small_set):
    for annotation_file, _ in _annotation_files(small_set):
        ground_truth = _quiet_coco(annotation_file)
        detections = [dict(image_id=ann['image_id'], category_id=ann['category_id'],
                           bbox=ann['bbox'], score=1.0)
                      for ann in ground_truth.dataset['annotations']]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections),
                                  'bbox')
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0)


def test_schema_and_geometry(small_set, moderate_set):
    for annotation_file, image_dir in _annotation_files(small_set, moderate_set):
        coco = json.loads(annotation_file.read_text())
        assert {'info', 'licenses', 'images', 'annotations',
                'categories'} <= coco.keys()
        assert [c['name'] for c in coco['categories']] == list(CLASSES)
        assert [c['id'] for c in coco['categories']] == list(range(1, 7))
        ann_ids = [ann['id'] for ann in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
        images = {image['id']: image for image in coco['images']}
        per_image = {image_id: 0 for image_id in images}
        for ann in coco['annotations']:
            image = images[ann['image_id']]
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0 and ann['area'] > 0 and ann['iscrowd'] == 0
            assert 0 <= x and x + w <= image['width']
            assert 0 <= y and y + h <= image['height']
            assert 1 <= ann['category_id'] <= len(CLASSES)
            per_image[ann['image_id']] += 1
        assert all(OBJECTS_PER_IMAGE[0] <= n <= OBJECTS_PER_IMAGE[1]
                   for n in per_image.values())
        for image in coco['images']:
            with Image.open(image_dir / image['file_name']) as png:
                assert png.size == (image['width'], image['height'])


def test_sizes_span_all_coco_buckets(moderate_set):
    manifest = json.loads((moderate_set / 'manifest.json').read_text())
    buckets = manifest['splits']['train']['size_buckets']
    assert min(buckets.values()) >= 20, buckets
    areas = [ann['area'] for ann in json.loads(
        (moderate_set / 'annotations/instances_train.json').read_text())['annotations']]
    assert min(areas) < 16**2


def test_annotations_cover_painted_shapes(small_set, moderate_set):
    """Each annotation's decoded polygon fits its box, is at least ~40% visible
    (later annotations of the image cover it), and its visible interior is one
    flat colour that stands out from the background just outside the shapes: this
    fails if boxes, polygons or images were misaligned."""
    checked = total = 0
    for annotation_file, image_dir in _annotation_files(small_set, moderate_set):
        coco = _quiet_coco(annotation_file)
        for image_id in coco.getImgIds():
            info = coco.loadImgs(image_id)[0]
            image = np.asarray(Image.open(image_dir / info['file_name']), np.float64)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            masks = [coco.annToMask(ann).astype(bool) for ann in anns]
            background = ~_dilate(np.any(masks, axis=0), 2)
            for index, (ann, mask) in enumerate(zip(anns, masks)):
                total += 1
                ys, xs = np.nonzero(mask)
                x, y, w, h = ann['bbox']
                assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                   [x, y, x + w, y + h], atol=2)
                assert abs(mask.sum() - ann['area']) <= 0.1 * ann['area'] + 4
                visible = mask & ~np.any(masks[index + 1:], axis=0)
                assert visible.sum() >= 0.35 * mask.sum()
                interior = ~_dilate(~visible, 2)
                band = _dilate(mask, 4) & background
                if interior.sum() < 4 or band.sum() < 4:
                    continue
                colour = np.median(image[interior], axis=0)
                assert np.mean(np.abs(image[interior] - colour).max(axis=1) <= 3) > 0.95
                contrast = np.linalg.norm(colour - np.median(image[band], axis=0))
                assert contrast > 40
                checked += 1
    assert checked > 0.6 * total


def test_image_size_range(tmp_path):
    generate_synthetic_coco(tmp_path, num_train=4, num_val=1, image_size=(64, 96))
    coco = json.loads((tmp_path / 'annotations/instances_train.json').read_text())
    sides = {side for image in coco['images']
             for side in (image['width'], image['height'])}
    assert len(sides) > 1 and all(64 <= side <= 96 for side in sides)


@pytest.mark.parametrize('argument, value', [
    ('out_dir', ''), ('num_train', 0), ('num_val', -1), ('image_size', 16),
    ('image_size', (200, 100)), ('seed', -1), ('objects_per_image', (0, 3)),
    ('object_size', (2, 10)), ('min_visible_fraction', 0)])
def test_invalid_arguments_name_the_argument(tmp_path, argument, value):
    kwargs = dict(SMALL, out_dir=tmp_path)
    kwargs[argument] = value
    with pytest.raises(ValueError, match=argument):
        generate_synthetic_coco(**kwargs)


def test_out_dir_that_is_a_file_is_rejected(tmp_path):
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    with pytest.raises(ValueError, match='out_dir'):
        generate_synthetic_coco(a_file, **SMALL)


def test_interrupted_generation_leaves_no_manifest(tmp_path, monkeypatch):
    generate_synthetic_coco(tmp_path, **SMALL)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_coco, '_generate_split', interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_coco(tmp_path, seed=1, **SMALL)
    assert not (tmp_path / 'manifest.json').exists()


def test_mmdet_coco_dataset_reads_the_annotations(small_set):
    from mmdet.datasets import CocoDataset
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = CocoDataset(
            metainfo=dict(classes=CLASSES), data_root=str(small_set),
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True)])
    coco = _quiet_coco(small_set / 'annotations/instances_train.json')
    assert len(dataset) == len(coco.getImgIds()) == SMALL['num_train']
    for index in range(len(dataset)):
        sample = dataset[index]
        info = coco.loadImgs(sample['img_id'])[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=info['id']))
        png = np.asarray(Image.open(small_set / 'train' / info['file_name']))
        np.testing.assert_array_equal(sample['img'], png[..., ::-1])  # BGR
        expected_boxes = [[x, y, x + w, y + h] for x, y, w, h in
                          (ann['bbox'] for ann in anns)]
        np.testing.assert_allclose(sample['gt_bboxes'].numpy(), expected_boxes,
                                   atol=1e-4)
        np.testing.assert_array_equal(sample['gt_bboxes_labels'],
                                      [ann['category_id'] - 1 for ann in anns])


def _load_cli():
    path = REPO_ROOT / 'tools' / 'data' / 'generate_synthetic_coco.py'
    spec = importlib.util.spec_from_file_location('generate_synthetic_coco', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reuses_matching_output_and_regenerates_otherwise(tmp_path, capsys):
    cli = _load_cli()
    args = ['--out-dir', str(tmp_path), '--num-train', '3', '--num-val', '2',
            '--image-size', '64']
    annotation_file = tmp_path / 'annotations/instances_train.json'

    assert not cli.main(args)['reused']
    assert 'small' in capsys.readouterr().out
    first_json = annotation_file.read_bytes()
    first_mtime = annotation_file.stat().st_mtime_ns

    assert cli.main(args)['reused']
    assert 'up to date' in capsys.readouterr().out
    assert annotation_file.stat().st_mtime_ns == first_mtime

    assert not cli.main(args + ['--seed', '1'])['reused']
    assert annotation_file.read_bytes() != first_json
    manifest = json.loads((tmp_path / 'manifest.json').read_text())
    assert manifest['parameters']['seed'] == 1

    assert not cli.main(args + ['--seed', '1', '--force'])['reused']
