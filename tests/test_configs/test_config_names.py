"""Every config's file name says what it trains. In the naming rule
``{algo}-{variant}_{backbone}_{gpus}xb{bs}-{ep}e_{dataset}.py`` the batch ``bs`` is
``train_dataloader.batch_size`` and ``ep`` is ``train_cfg.max_epochs``; ``gpus`` is
nominal (the number of GPUs the learning rate was set for, see docs/distributed.md)."""
import os.path as osp
import re

import pytest
from mmengine.config import Config

from deform_ext.testing import shipped_configs
from tests.conftest import REPO_ROOT

SCHEDULE = re.compile(r'_(?P<gpus>\d+)xb(?P<batch_size>\d+)-(?P<epochs>\d+)e_[^_]+\.py$')


def test_schedule_pattern_reads_the_naming_rule():
    match = SCHEDULE.search('deformable-detr-refine_r50_16xb2-50e_coco.py')
    assert match.group('gpus', 'batch_size', 'epochs') == ('16', '2', '50')
    assert not SCHEDULE.search('deformable-detr_r18-tiny_synthetic.py')


@pytest.mark.parametrize('path', shipped_configs(), ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_name_gives_batch_size_and_epochs(path):
    name = osp.basename(path)
    match = SCHEDULE.search(name)
    assert match, f'{name}: no {{gpus}}xb{{bs}}-{{ep}}e_{{dataset}} part in the name'
    cfg = Config.fromfile(path)
    named = int(match.group('batch_size')), int(match.group('epochs'))
    trained = cfg.train_dataloader.batch_size, cfg.train_cfg.max_epochs
    assert trained == named, (f'{name} names batch {named[0]}, {named[1]} epochs; '
                              f'it trains batch {trained[0]}, {trained[1]} epochs')
