"""mmengine checkpoints load under torch >= 2.6 with weights_only on; code is refused."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

import deform_ext  # noqa: F401  installs the fix


def mmengine_like_checkpoint():
    """What mmengine's Runner saves: weights, optimizer, schedulers and a message hub."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    hub = MessageHub.get_instance('checkpoint-compat-test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', np.float64(1e-3))
    hub.update_info('epoch', 3, resumed=True)
    hub.update_info('dataset_meta', dict(classes=('a', 'b'), palette=[(1, 2, 3)]), resumed=True)
    return dict(
        meta=dict(epoch=3, iter=42, seed=np.int64(7), mmengine_version='0.10.7',
                  dataset_meta=dict(classes=('a', 'b'))),
        state_dict=model.state_dict(),
        optimizer=optimizer.state_dict(),
        message_hub=hub.state_dict(),
        param_schedulers=[dict(base_lrs=[1e-3], last_epoch=3)],
    ), model


def test_message_hub_holds_history_buffers():
    checkpoint, _ = mmengine_like_checkpoint()
    assert isinstance(checkpoint['message_hub']['log_scalars']['train/loss'], HistoryBuffer)


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    checkpoint, model = mmengine_like_checkpoint()
    path = str(tmp_path / 'epoch_3.pth')
    save_checkpoint(checkpoint, path)
    loaded = _load_checkpoint(path, map_location='cpu')
    assert loaded['meta']['iter'] == 42
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 0.5
    target = torch.nn.Linear(3, 2)
    load_checkpoint(target, path, map_location='cpu', strict=True)
    assert torch.equal(target.weight, model.weight)


class _WritesMarker:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    checkpoint, _ = mmengine_like_checkpoint()
    marker = tmp_path / 'pwned'
    checkpoint['meta']['payload'] = _WritesMarker(marker)
    path = str(tmp_path / 'malicious.pth')
    torch.save(checkpoint, path)
    with pytest.raises(pickle.UnpicklingError, match=r'malicious\.pth.*(posix|os)\.system'):
        _load_checkpoint(path, map_location='cpu')
    with pytest.raises(pickle.UnpicklingError, match='system'):
        load_checkpoint(torch.nn.Linear(3, 2), path, map_location='cpu')
    assert not marker.exists()

    del checkpoint['meta']['payload']
    torch.save(checkpoint, path)
    assert _load_checkpoint(path, map_location='cpu')['meta']['iter'] == 42
    assert not marker.exists()


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        _load_checkpoint(str(tmp_path / 'nowhere.pth'))


class _ReachesOs:
    """A payload that uses getattr to climb from an allowed class to a module."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    checkpoint, _ = mmengine_like_checkpoint()
    checkpoint['meta']['payload'] = _ReachesOs()
    path = str(tmp_path / 'climbs.pth')
    torch.save(checkpoint, path)
    with pytest.raises(pickle.UnpicklingError, match=r"getattr\(HistoryBuffer, '__init__'\)"):
        _load_checkpoint(path, map_location='cpu')
