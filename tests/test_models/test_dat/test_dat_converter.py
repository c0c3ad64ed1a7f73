"""tools/model_converters/dat_to_deform_ext.py on a checkpoint with the DAT release's
real DAT-T state-dict names and shapes (data/dat_tiny_release_keys.json, random
values): the result loads into DAT('tiny') with strict=True."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from deform_ext.models.backbones import DAT
from tests.conftest import REPO_ROOT

CONVERTER = osp.join(REPO_ROOT, 'tools', 'model_converters', 'dat_to_deform_ext.py')
KEYS = osp.join(osp.dirname(__file__), 'data', 'dat_tiny_release_keys.json')


def load_converter():
    spec = importlib.util.spec_from_file_location('dat_to_deform_ext', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def release_state():
    gen = torch.Generator().manual_seed(0)
    with open(KEYS) as f:
        keys = json.load(f)['keys']
    return {name: torch.randint(0, 169, shape, generator=gen) if dtype == 'int64'
            else torch.randn(shape, generator=gen) for name, shape, dtype in keys}


def test_cli_converts_release_checkpoint_strict(tmp_path, release_state):
    src, dst = tmp_path / 'dat_tiny.pth', tmp_path / 'converted.pth'
    torch.save({'model': release_state}, src)
    subprocess.run([sys.executable, CONVERTER, str(src), str(dst)], check=True, cwd=REPO_ROOT,
                   capture_output=True, timeout=120)
    state = torch.load(dst, map_location='cpu', weights_only=True)['state_dict']
    model = DAT(arch='tiny')
    model.load_state_dict(state, strict=True)
    block = model.stages[2].blocks[1]
    torch.testing.assert_close(block.attn.conv_offset[1].weight,
                               release_state['stages.2.attns.1.conv_offset.1.norm.weight'])
    torch.testing.assert_close(block.norm2.weight,
                               release_state['stages.2.layer_norms.3.norm.weight'])
    torch.testing.assert_close(block.attn.rpe_table, release_state['stages.2.attns.1.rpe_table'])
    torch.testing.assert_close(model.stages[1].blocks[0].mlp.fc2.bias,
                               release_state['stages.1.mlps.0.chunk.linear2.bias'])
    torch.testing.assert_close(model.out_norms['3'].weight, release_state['cls_norm.norm.weight'])
    torch.testing.assert_close(model.out_norms['0'].weight, torch.ones(96))
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 70, 90))
    assert [o.shape[1] for o in outs] == [96, 192, 384, 768]
    # the converted file also works as the backbone's init_cfg
    pretrained = DAT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    pretrained.init_weights()
    torch.testing.assert_close(pretrained.stages[3].blocks[1].attn.proj_q.weight,
                               release_state['stages.3.attns.1.proj_q.weight'])


def test_out_indices_and_bare_state_dict(release_state):
    converted = load_converter().convert_dat(
        {f'module.{k}': v for k, v in release_state.items()}, out_indices=(1, 2, 3))
    DAT(arch='tiny', out_indices=(1, 2, 3)).load_state_dict(converted, strict=True)
    assert not any(k.startswith(('cls_head', 'out_norms.0')) for k in converted)
    assert not any(k.endswith(('relative_position_index', 'attn_mask')) for k in converted)


def test_unknown_keys_are_named(release_state):
    state = dict(release_state)
    state['stages.1.proj.weight'] = torch.zeros(192, 96, 1, 1)
    with pytest.raises(KeyError, match='stages.1.proj.weight'):
        load_converter().convert_dat(state)
