"""A tiny two-stage Deformable DETR with box refinement, trained a few steps, saved as a
config file and a checkpoint, and a few synthetic images: what the tools take."""
import os.path as osp
import importlib.util
import shutil

import pytest
import torch
from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                       'deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py')


def load_tool(relative_path: str):
    """A tool script (``tools/demo.py``) imported as a module named after its path."""
    path = osp.join(REPO_ROOT, relative_path)
    name = 'tool_' + relative_path.replace('/', '_').removesuffix('.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='package')
def tool():
    """``tool('tools/demo.py')``: the script as a module, to call its ``main(argv)``."""
    return load_tool


def tiny_config(**kwargs) -> Config:
    """The demo config with the test-sized model (``kwargs`` go to
    ``tiny_deformable_detr_cfg``)."""
    from deform_ext.datasets.synthetic_dataset import SyntheticCocoDataset
    from deform_ext.testing import tiny_deformable_detr_cfg
    cfg = Config.fromfile(DEMO_CONFIG)
    kwargs.setdefault('num_classes', len(SyntheticCocoDataset.METAINFO['classes']))
    cfg.model = tiny_deformable_detr_cfg('deformable-detr-refine-twostage', **kwargs)
    return cfg


def train_briefly(model, steps: int = 4) -> None:
    """A few AdamW steps on random demo batches: weights that are not the init."""
    from deform_ext.testing import demo_batch, total_loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        batch = demo_batch(model, seed=step)
        optimizer.zero_grad()
        total_loss(model(**batch, mode='loss')).backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope='package')
def tiny_detector(tmp_path_factory):
    """(config path, checkpoint path, Config) of a briefly trained tiny detector."""
    from deform_ext.datasets.synthetic_dataset import SyntheticCocoDataset
    from deform_ext.testing import build_model
    root = tmp_path_factory.mktemp('tiny_detector')
    cfg = tiny_config()
    config = str(root / 'tiny.py')
    cfg.dump(config)
    model = build_model(cfg.model)
    train_briefly(model)
    checkpoint = str(root / 'tiny.pth')
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': dict(SyntheticCocoDataset.METAINFO)}}, checkpoint)
    return config, checkpoint, cfg


@pytest.fixture(scope='package')
def image_dir(tmp_path_factory):
    """Three synthetic images (128 × 96 px) in a folder."""
    from deform_ext.datasets import generate_synthetic_coco
    data = tmp_path_factory.mktemp('synthetic')
    generate_synthetic_coco(str(data), num_train=1, num_val=3, image_size=(96, 128), seed=2)
    images = tmp_path_factory.mktemp('images')
    for path in sorted((data / 'val').iterdir()):
        shutil.copy(path, images / path.name)
    return images
