"""End to end through the tools: a shortened demo (train, evaluate, draw), the
`make demo` recipe for a few iterations, resume, tools/test.py, and a 2-process run of
tools/dist_train.sh on CPU."""
import glob
import json
import re
import os.path as osp
import sys

import pytest
from PIL import Image

from tests.conftest import DEMO_CONFIG, make_demo_config, run_tool, tiny_training_options
from tests.fixtures.dist_probe import load_checkpoint_file

pytestmark = pytest.mark.slow


def scalars(work_dir):
    """Records of the newest run's scalars.json."""
    run = sorted(glob.glob(osp.join(work_dir, '2*_*')))[-1]
    with open(osp.join(run, 'vis_data', 'scalars.json')) as f:
        return [json.loads(line) for line in f]


def checkpoint_meta(path):
    return load_checkpoint_file(path)['meta']


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_coco):
    """One epoch of the demo config on the tiny dataset (4 iterations), then COCO eval."""
    work_dir = str(tmp_path_factory.mktemp('demo_run'))
    result = run_tool([sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', work_dir,
                       '--cfg-options', *tiny_training_options(tiny_coco, max_epochs=1)])
    return work_dir, result


def test_short_demo_trains_evaluates_and_draws(trained):
    work_dir, _ = trained
    records = scalars(work_dir)
    assert any('loss' in r for r in records)
    evaluated = [r for r in records if 'coco/bbox_mAP' in r]
    assert len(evaluated) == 1 and 0.0 <= evaluated[0]['coco/bbox_mAP'] <= 1.0
    assert checkpoint_meta(osp.join(work_dir, 'epoch_1.pth'))['iter'] == 4
    assert glob.glob(osp.join(work_dir, '2*_*', 'vis_data', 'vis_image', '*.png'))


def test_make_demo_recipe_trains_with_its_tricks(tiny_coco, tmp_path):
    """The Makefile's recipe, shrunk to 4 iterations, trains and evaluates: its
    denoising losses are logged at every iteration (and no auxiliary head's: the recipe
    has none), and the run's config has its bf16 autocast wrapper, multi-scale batches
    and IoU-aware classification loss."""
    work_dir = str(tmp_path / 'recipe')
    root = tiny_coco.rstrip('/') + '/'
    run_tool([sys.executable, 'tools/train.py', make_demo_config(), '--work-dir', work_dir,
              '--cfg-options', *tiny_training_options(tiny_coco, max_epochs=1),
              f'train_dataloader.dataset.pipeline.4.data_root={root}'])
    records = scalars(work_dir)
    losses = [r for r in records if 'loss' in r]
    assert len(losses) == 4
    assert all('dn_loss_cls' in r and not any(k.startswith('loss_aux') for k in r)
               for r in losses)
    evaluated = [r for r in records if 'coco/bbox_mAP' in r]
    assert len(evaluated) == 1
    with open(glob.glob(osp.join(work_dir, '2*_*', '2*_*.log'))[0]) as f:
        log = f.read()
    assert all(name in log for name in ('AutocastOptimWrapper', 'BatchSyncRandomResize',
                                        'QualityFocalLoss'))


def shown(value: float) -> str:
    """A COCO metric as the demo summary prints it (COCO's -1: no such objects)."""
    return f'{value:.3f}' if value >= 0 else 'n/a'


def test_demo_summary_draws_pictures_and_prints_the_coco_table(trained, tiny_coco):
    work_dir, _ = trained
    config = osp.join(work_dir, osp.basename(DEMO_CONFIG))  # as trained (shrunk)
    images = sorted(glob.glob(osp.join(tiny_coco, 'val', '*.png')))[:2]
    summary = run_tool([sys.executable, 'tools/analysis/demo_summary.py', work_dir,
                        '--config', config, '--images', *images]).stdout
    final = [r for r in scalars(work_dir) if 'coco/bbox_mAP' in r][-1]
    table = dict(re.findall(r'^\[demo\] \| ([\w@ ]+) \| (\d\.\d{3}|n/a)\b.*\|$', summary,
                            re.M))
    assert table == {name: shown(final[f'coco/{key}']) for key, name in
                     (('bbox_mAP', 'mAP'), ('bbox_mAP_50', 'mAP@50'), ('bbox_mAP_75', 'mAP@75'),
                      ('bbox_mAP_s', 'AP small'), ('bbox_mAP_m', 'AP medium'),
                      ('bbox_mAP_l', 'AP large'))}
    pictures = re.findall(r'^\[demo\] picture: (.+)$', summary, re.M)
    names = [osp.basename(p) for p in pictures]
    assert names == ['curves.png'] + [f'sampling_{osp.basename(i)}' for i in images]
    for picture in pictures:
        with Image.open(picture) as png:
            assert png.format == 'PNG' and min(png.size) >= 200
    assert re.search(r'^\[demo\] [1-9]\d* images with predicted boxes', summary, re.M)


@pytest.mark.parametrize('resume_arg', ['auto', 'path'])
def test_resume_continues_the_iteration_count(trained, tiny_coco, tmp_path, resume_arg):
    first_dir, _ = trained
    work_dir = str(tmp_path)
    checkpoint = osp.join(first_dir, 'epoch_1.pth')
    if resume_arg == 'auto':  # --resume without a path: the latest in the work dir
        with open(checkpoint, 'rb') as src, open(osp.join(work_dir, 'epoch_1.pth'), 'wb') as dst:
            dst.write(src.read())
        with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
            f.write(osp.join(work_dir, 'epoch_1.pth'))
        resume = ['--resume']
    else:
        resume = ['--resume', checkpoint]
    result = run_tool([sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', work_dir,
                       *resume, '--cfg-options', *tiny_training_options(tiny_coco, max_epochs=2)])
    assert 'resumed epoch: 1, iter: 4' in result.stdout + result.stderr
    meta = checkpoint_meta(osp.join(work_dir, 'epoch_2.pth'))
    assert (meta['epoch'], meta['iter']) == (2, 8)
    iterations = [r['iter'] for r in scalars(work_dir) if 'loss' in r]
    assert iterations == [5, 6, 7, 8]


def test_test_tool_evaluates_and_dumps(trained, tiny_coco, tmp_path):
    work_dir, _ = trained
    out = str(tmp_path / 'predictions.pkl')
    result = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG,
                       osp.join(work_dir, 'epoch_1.pth'), '--work-dir', str(tmp_path),
                       '--out', out, '--cfg-options', *tiny_training_options(tiny_coco)])
    assert 'coco/bbox_mAP' in result.stdout + result.stderr
    assert osp.getsize(out) > 0


def test_dist_train_two_processes_on_cpu(tiny_coco, tmp_path):
    work_dir = str(tmp_path)
    result = run_tool(['bash', 'tools/dist_train.sh', DEMO_CONFIG, '2', '--work-dir', work_dir,
                       '--cfg-options', *tiny_training_options(tiny_coco, max_epochs=1)],
                      env=dict(PORT='29531'))
    log = result.stdout + result.stderr
    assert 'Distributed launcher: pytorch' in log and 'GPU number: 2' in log  # 2 ranks
    # 16 images over 2 ranks of batch 4: 2 iterations per epoch.
    assert checkpoint_meta(osp.join(work_dir, 'epoch_1.pth'))['iter'] == 2
