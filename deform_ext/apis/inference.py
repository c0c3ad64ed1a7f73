"""A trained detector from a config and a checkpoint, and images read for it, with
errors that name what is wrong: a missing file, a checkpoint that does not fit the
config (the first mismatched keys and shapes), an image that cannot be decoded.

mmdet's ``init_detector`` loads non-strictly and only logs a mismatch, so a wrong
checkpoint gives a detector that silently predicts nonsense; it also falls back to
COCO's class names when the checkpoint has none, where the config's dataset knows
better. :func:`load_detector` is ``init_detector`` without those two traps; the model
it returns works with mmdet's ``inference_detector``.
"""
import copy
import os
import os.path as osp
from typing import Dict, List, Optional

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from deform_ext.utils import load_config

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
SHOWN_KEYS = 5  # mismatched keys named in an error


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's state dict does not fit the model the config builds."""


def _first(keys, shown: int = SHOWN_KEYS) -> str:
    keys = list(keys)
    more = f', ... ({len(keys) - shown} more)' if len(keys) > shown else ''
    return ', '.join(keys[:shown]) + more


def state_dict_mismatch(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> Dict[str, list]:
    """Keys the model has and the state dict lacks (``missing``), the reverse
    (``unexpected``), and ``(key, checkpoint shape, model shape)`` where both have a
    key with different shapes (``shapes``)."""
    own = model.state_dict()
    return dict(
        missing=[k for k in own if k not in state_dict],
        unexpected=[k for k in state_dict if k not in own],
        shapes=[(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
                if k in own and hasattr(v, 'shape') and v.shape != own[k].shape])


def load_state_dict_strictly(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                             source: str = 'the checkpoint', target: str = 'the model') -> None:
    """``model.load_state_dict(state_dict)`` with an error that names ``source`` and
    ``target`` and the first mismatched keys.

    Modules that adapt a checkpoint while loading (``MSDeformAttn`` grows its
    sampling points to a checkpoint's) are loaded first; only what still does not fit
    afterwards is reported.

    Raises:
        CheckpointMismatchError: missing or unexpected keys, or different shapes.
    """
    try:
        result = model.load_state_dict(state_dict, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
        load_error = None
    except RuntimeError as error:  # shapes: torch stops before reporting keys
        load_error = error
        missing = unexpected = []
    mismatch = state_dict_mismatch(model, state_dict) if load_error else \
        dict(missing=missing, unexpected=unexpected, shapes=[])
    problems = []
    if mismatch['missing']:
        problems.append(f"{len(mismatch['missing'])} keys of the model are missing from it "
                        f"(first: {_first(mismatch['missing'])})")
    if mismatch['unexpected']:
        problems.append(f"{len(mismatch['unexpected'])} of its keys are not in the model "
                        f"(first: {_first(mismatch['unexpected'])})")
    if mismatch['shapes']:
        shown = [f'{k} {tuple(c)} in the checkpoint vs {tuple(m)} in the model'
                 for k, c, m in mismatch['shapes']]
        problems.append(f"{len(shown)} tensors differ in shape (first: {_first(shown)})")
    if load_error is not None and not problems:
        problems.append(str(load_error).strip().splitlines()[0])
    if problems:
        raise CheckpointMismatchError(
            f'{source} does not fit {target}: ' + '; '.join(problems)
            + '. Was it trained with this config?')


def checkpoint_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint (``state_dict`` or the dict itself),
    without a ``module.`` prefix left by a (distributed) model wrapper."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError('the checkpoint holds no state dict')
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state_dict.items()}


def dataset_meta_of(cfg: Config, checkpoint: dict) -> dict:
    """Class names and palette: the checkpoint's ``meta.dataset_meta`` (what training
    saved), else the metainfo of the config's test dataset (built lazily: no files are
    read), else numbered classes."""
    meta = checkpoint.get('meta', {}) if isinstance(checkpoint, dict) else {}
    if isinstance(meta, dict) and meta.get('dataset_meta'):
        return {k.lower(): v for k, v in meta['dataset_meta'].items()}
    dataset_cfg = cfg.get('test_dataloader', {}).get('dataset')
    if dataset_cfg is not None:
        from mmdet.registry import DATASETS
        try:
            dataset_cfg = copy.deepcopy(dataset_cfg)
            dataset_cfg['lazy_init'] = True
            return dict(DATASETS.build(dataset_cfg).metainfo)
        except Exception:  # noqa: BLE001  any dataset that cannot be built lazily
            pass
    return {}


def load_detector(config: str, checkpoint: str, device: str = 'cpu',
                  cfg_options: Optional[dict] = None) -> nn.Module:
    """The detector of ``config`` with the weights of ``checkpoint``, in eval mode on
    ``device``; ``model.cfg`` and ``model.dataset_meta`` set as mmdet's
    ``init_detector`` sets them, so ``mmdet.apis.inference_detector`` takes it.
    The config's default scope (``deform_ext`` for ours) becomes the current one.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
        CheckpointMismatchError: the checkpoint's weights do not fit the model.
    """
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None  # no pretrained download: the checkpoint has it
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    try:
        loaded = _load_checkpoint(checkpoint, map_location='cpu')
    except Exception as error:  # noqa: BLE001  name the file whatever torch says
        raise CheckpointMismatchError(f'cannot read checkpoint {checkpoint}: {error}') from error
    load_state_dict_strictly(model, checkpoint_state_dict(loaded), source=f'checkpoint {checkpoint}',
                             target=f'the model of {config}')
    model.cfg = cfg
    model.dataset_meta = dataset_meta_of(cfg, loaded)
    return model.to(device).eval()


def array_test_pipeline(model: nn.Module):
    """The test pipeline of ``model.cfg`` for BGR arrays, to pass as
    ``inference_detector(model, image, test_pipeline=...)``.

    ``inference_detector`` builds one itself from a shallow copy of ``model.cfg`` and
    switches its first step to ``LoadImageFromNDArray`` in place, so after one call
    with an array the model no longer takes file names; this copy leaves it alone.
    """
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    pipeline = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    pipeline[0] = dict(pipeline[0], type='mmdet.LoadImageFromNDArray')
    return Compose(pipeline)


def read_image(path: str) -> np.ndarray:
    """The image at ``path`` as a BGR uint8 array (as mmcv reads files).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: the file cannot be decoded as an image.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'image {path} does not exist')
    with open(path, 'rb') as f:
        content = f.read()
    try:
        image = mmcv.imfrombytes(content, flag='color')
    except Exception:  # noqa: BLE001  decoders raise all sorts
        image = None
    if image is None or image.size == 0:
        raise ValueError(f'image {path} cannot be read: not an image file, or a damaged one')
    return image


def list_images(path: str) -> List[str]:
    """``path`` if it is a file, else the image files (by extension) in the folder
    ``path``, sorted.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a folder without images.
    """
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path} is neither an image file nor a folder')
    images = sorted(osp.join(path, name) for name in os.listdir(path)
                    if name.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise FileNotFoundError(f'folder {path} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
    return images

