"""Every config's file name says what it trains. In the naming rule
``{algo}-{variant}_{backbone}_{gpus}xb{bs}[-{aug}]-{ep}e_{dataset}.py`` the batch ``bs``
is ``train_dataloader.batch_size`` and ``ep`` is ``train_cfg.max_epochs``; ``gpus`` is
nominal (the number of GPUs the learning rate was set for, see docs/distributed.md).
Optional augmentation tags such as mmdet's ``lsj`` (large-scale jitter) come before the
epochs; an iteration-based schedule (``max_iters``) is named, as mmdet does, by the
epochs its ``max_iters * gpus * bs`` images make of the dataset's training set."""
import os.path as osp
import re

import pytest
from mmengine.config import Config

from deform_ext.testing import shipped_configs
from tests.conftest import REPO_ROOT

SCHEDULE = re.compile(r'_(?P<gpus>\d+)xb(?P<batch_size>\d+)(?:-[a-z][a-z0-9]*)*'
                      r'-(?P<epochs>\d+)e_(?P<dataset>[^_]+)\.py$')
TRAIN_IMAGES = {'coco': 118_287}  # COCO train2017


def test_schedule_pattern_reads_the_naming_rule():
    match = SCHEDULE.search('deformable-detr-refine_r50_16xb2-50e_coco.py')
    assert match.group('gpus', 'batch_size', 'epochs') == ('16', '2', '50')
    match = SCHEDULE.search('mask2former_r50_8xb2-lsj-50e_coco.py')
    assert match.group('gpus', 'batch_size', 'epochs', 'dataset') == ('8', '2', '50', 'coco')
    assert not SCHEDULE.search('deformable-detr_r18-tiny_synthetic.py')


def trained_epochs(cfg: Config, gpus: int, dataset: str) -> int:
    """``train_cfg.max_epochs``, or the epochs of an iteration-based schedule."""
    if 'max_epochs' in cfg.train_cfg:
        return cfg.train_cfg.max_epochs
    assert dataset in TRAIN_IMAGES, f'iteration-based, and the size of {dataset} is unknown'
    images = cfg.train_cfg.max_iters * gpus * cfg.train_dataloader.batch_size
    return round(images / TRAIN_IMAGES[dataset])


@pytest.mark.parametrize('path', shipped_configs(), ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_name_gives_batch_size_and_epochs(path):
    name = osp.basename(path)
    match = SCHEDULE.search(name)
    assert match, f'{name}: no {{gpus}}xb{{bs}}-{{ep}}e_{{dataset}} part in the name'
    cfg = Config.fromfile(path)
    named = int(match.group('batch_size')), int(match.group('epochs'))
    trained = (cfg.train_dataloader.batch_size,
               trained_epochs(cfg, int(match.group('gpus')), match.group('dataset')))
    assert trained == named, (f'{name} names batch {named[0]}, {named[1]} epochs; '
                              f'it trains batch {trained[0]}, {trained[1]} epochs')
