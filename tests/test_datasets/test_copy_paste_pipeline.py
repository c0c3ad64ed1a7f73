"""SmallObjectCopyPaste in a real mmdet CocoDataset pipeline on the generator's
synthetic set: the object bank, determinism across runs and worker counts, area
weighting, a Runner with PipelineSwitchHook, and the picture tool."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import DataLoader

from deform_ext.datasets.transforms import ObjectBank
from deform_ext.engine.hooks import PipelineEpochHook
from deform_ext.engine.hooks.pipeline_epoch_hook import set_pipeline_seed_epoch
from tests.conftest import REPO_ROOT
from tests.test_datasets.copy_paste_data import (TRAIN_ANNOTATIONS, copy_paste_dataset,
                                                 write_coco)

pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')
CONFIG = f'{REPO_ROOT}/configs/_base_/datasets/synthetic_coco_copy_paste.py'


def _bank(root, **kwargs) -> ObjectBank:
    args = dict(classes=None, area_thresholds=(32**2, 96**2), area_weights=(1, 0.2, 0))
    return ObjectBank(str(root / TRAIN_ANNOTATIONS), str(root / 'train'), **dict(args, **kwargs))


def _epochs(dataset, num_workers: int, epochs: int = 2) -> list:
    """Per epoch, every sample's (image, boxes, labels, masks) as numpy arrays."""
    loader = DataLoader(dataset, batch_size=3, num_workers=num_workers,
                        persistent_workers=num_workers > 0, collate_fn=pseudo_collate)
    seen = []
    for epoch in range(epochs):
        set_pipeline_seed_epoch(dataset, 3, epoch)
        seen.append([])
        for batch in loader:
            for image, sample in zip(batch['inputs'], batch['data_samples']):
                gt = sample.gt_instances
                masks = gt.masks.masks if 'masks' in gt else np.zeros(0)
                seen[-1].append((image.numpy(), gt.bboxes.numpy(), gt.labels.numpy(), masks))
    return seen


def _same(a: list, b: list) -> bool:
    return all(np.array_equal(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


@pytest.mark.parametrize('masks', [False, True])
def test_identical_across_runs_and_worker_counts(synthetic_set, masks):
    mode = 'mask' if masks else 'box'
    one_process = _epochs(copy_paste_dataset(synthetic_set, masks=masks, paste_mode=mode), 0)
    again = _epochs(copy_paste_dataset(synthetic_set, masks=masks, paste_mode=mode), 0)
    two_workers = _epochs(copy_paste_dataset(synthetic_set, masks=masks, paste_mode=mode), 2)
    assert _same(one_process[0], again[0]) and _same(one_process[1], again[1])
    assert _same(one_process[0], two_workers[0]) and _same(one_process[1], two_workers[1])
    assert not _same(one_process[0], one_process[1])  # persistent workers saw epoch 1
    plain = _epochs(copy_paste_dataset(synthetic_set, masks=masks, prob=0.0), 0, epochs=1)[0]
    assert sum(len(s[1]) for s in one_process[0]) > sum(len(s[1]) for s in plain)


def test_bad_input_in_a_worker_is_an_error_naming_the_file(synthetic_set, tmp_path):
    coco = json.loads((synthetic_set / TRAIN_ANNOTATIONS).read_text())
    for ann in coco['annotations']:
        del ann['segmentation']
    boxes_only = tmp_path / 'boxes_only.json'
    boxes_only.write_text(json.dumps(coco))
    dataset = copy_paste_dataset(synthetic_set, ann_file=str(boxes_only), paste_mode='mask', seed=0)
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=pseudo_collate)
    with pytest.raises(ValueError, match=r"boxes_only.json: paste_mode='mask' needs a "
                                         r"'segmentation'"):
        next(iter(loader))


def test_bank_keeps_pasteable_objects_and_crops_them(tmp_path):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[2:6, 3:9] = (10, 20, 30)
    keep = dict(image_id=1, category_id=1, bbox=[3, 2, 6, 4], area=24,
                segmentation=[[3, 2, 9, 2, 9, 6, 3, 6]])
    others = [dict(keep, iscrowd=1), dict(keep, category_id=99), dict(keep, image_id=7),
              dict(keep, bbox=[3, 2, 0.5, 4]), dict(keep, bbox=[25, 2, 8, 4]),
              dict(keep, bbox=[0, 0, 30, 20], area=600)]
    root = write_coco(tmp_path, [('a.png', pixels)], [keep, *others])
    bank = _bank(root, area_thresholds=(100,), area_weights=(1, 0))
    assert len(bank) == 1 and bank.labels.tolist() == [0]
    assert bank.summary['skipped'] == dict(crowd=1, other_category=1, unknown_image=1,
                                           degenerate=1, outside_image=1, zero_weight=1)
    patch, mask = bank.crop(0)
    np.testing.assert_array_equal(patch, pixels[2:6, 3:9, ::-1])
    assert mask.shape == (4, 6) and mask.all()


def test_selection_follows_area_weights(synthetic_set):
    bank = _bank(synthetic_set, area_weights=(1, 0.2, 0))
    small = bank.areas < 32**2
    drawn = small[bank.sample(np.random.default_rng(0), 20000)]
    expected = small.sum() / (small.sum() + 0.2 * (~small).sum())
    assert abs(drawn.mean() - expected) < 0.02
    only_small = _bank(synthetic_set, area_weights=(1, 0, 0))
    assert (only_small.areas < 32**2).all() and len(only_small) == small.sum()


def test_area_weighting_adds_more_small_objects_than_uniform(synthetic_set):
    """Counted by mask area, as COCO's evaluation buckets objects."""
    def added(weights):
        dataset = copy_paste_dataset(synthetic_set, masks=True, paste_mode='mask', seed=0,
                           area_weights=weights, max_overlap=0.5)
        set_pipeline_seed_epoch(dataset, 0, 0)
        for index in range(len(dataset)):
            dataset[index]
        stats = dataset.pipeline.transforms[3].stats
        return (stats.after - stats.before) / stats.pasted, stats.pasted
    (small, _, large), pasted = added((1, 0.2, 0))
    assert pasted > 20 and small >= 0.8 and large == 0
    (uniform_small, _, _), _ = added((1, 1, 1))
    assert small > uniform_small + 0.1


class RecordGroundTruth(Hook):
    """Records (epoch, img_id, number of ground-truth boxes) of every trained sample."""

    def __init__(self, seen: list):
        self.seen = seen

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seen += [(runner.epoch, s.img_id, len(s.gt_instances))
                      for s in data_batch['data_samples']]


class NoModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(loss=(self.weight ** 2).sum())


def test_pipeline_switch_hook_turns_it_off_with_persistent_workers(synthetic_set, tmp_path):
    cfg = Config.fromfile(CONFIG)
    root = f'{synthetic_set}/'
    loader = cfg.train_dataloader
    loader.update(num_workers=2, persistent_workers=True, batch_size=4)
    loader.dataset.data_root = root
    next(t for t in loader.dataset.pipeline if t.type == 'SmallObjectCopyPaste').update(
        data_root=root, log_interval=0)
    seen = []
    runner = Runner(
        model=NoModel(), work_dir=str(tmp_path), train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=3), default_scope='deform_ext',
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.0)),
        default_hooks=dict(checkpoint=None), randomness=dict(seed=5),
        custom_hooks=[PipelineEpochHook(), RecordGroundTruth(seen),
                      dict(type='PipelineSwitchHook', switch_epoch=2,
                           switch_pipeline=cfg.train_pipeline_plain)])
    runner.train()
    raw = {image['id']: 0 for image in json.loads(
        (synthetic_set / TRAIN_ANNOTATIONS).read_text())['images']}
    for ann in json.loads((synthetic_set / TRAIN_ANNOTATIONS).read_text())['annotations']:
        raw[ann['image_id']] += 1
    counts = {epoch: {img_id: n for e, img_id, n in seen if e == epoch} for epoch in range(3)}
    assert all(len(c) == len(raw) for c in counts.values())
    for epoch in (0, 1):
        assert sum(counts[epoch].values()) > sum(raw.values())
    assert counts[0] != counts[1]  # new pastes in epoch 1 (persistent workers)
    assert counts[2] == raw  # switched off


def test_browse_tool_writes_a_grid(synthetic_set, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'browse_augmented', f'{REPO_ROOT}/tools/analysis/browse_augmented.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out, root = tmp_path / 'grid.png', f'{synthetic_set}/'
    result = tool.main([CONFIG, '--out', str(out), '--num', '3', '--cols', '2',
                        '--cfg-options', f'train_dataloader.dataset.data_root={root}',
                        f'train_dataloader.dataset.pipeline.4.data_root={root}'])
    with Image.open(out) as grid:
        assert grid.size == (2 * 260 + 4, 2 * 260 + 4)  # 256-px cells, 4-px gaps
    printed = capsys.readouterr().out
    assert 'SmallObjectCopyPaste' in printed and '<32²' in printed
    stats = result['stats']['SmallObjectCopyPaste']
    assert stats['images'] == 3 and stats['pasted'] > 0
    assert sum(stats['after'].values()) == sum(result['counts'])
