"""Shared fixtures: the repository root, a small synthetic COCO dataset, a tiny config."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                       'deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py')


def make_demo_config() -> str:
    """The config `make demo` trains (the Makefile's DEMO_CONFIG)."""
    with open(osp.join(REPO_ROOT, 'Makefile')) as f:
        for line in f:
            if line.startswith('DEMO_CONFIG ?='):
                return osp.join(REPO_ROOT, line.split('?=')[1].strip())
    raise LookupError('Makefile: no DEMO_CONFIG line')


@pytest.fixture(scope='session')
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    """A synthetic COCO-format dataset of 16 train and 8 val images (128 px)."""
    from deform_ext.datasets import generate_synthetic_coco
    out_dir = tmp_path_factory.mktemp('synthetic_coco')
    generate_synthetic_coco(str(out_dir), num_train=16, num_val=8, image_size=128, seed=1)
    return str(out_dir)


def tiny_training_options(data_root: str, max_epochs: int = 1) -> list:
    """``--cfg-options`` that point the demo config at ``data_root`` and shrink it."""
    root = data_root.rstrip('/') + '/'
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        f'test_evaluator.ann_file={root}annotations/instances_val.json',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.batch_size=4', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        f'train_cfg.max_epochs={max_epochs}', f'train_cfg.val_interval={max_epochs}',
        'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
        'default_hooks.visualization.interval=1',
        'model.num_queries=20', 'model.encoder.num_layers=1', 'model.decoder.num_layers=1',
    ]


def run_tool(args, timeout=600, env=None, check=True):
    """Run a command from the repo root with this interpreter first on PATH."""
    full_env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
                    PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    full_env.update(env or {})
    result = subprocess.run(args, cwd=REPO_ROOT, env=full_env, timeout=timeout,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f'{args} exited {result.returncode}\n--- stdout\n'
                             f'{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}')
    return result
