"""Detectors with ``aux_head``: training adds ``loss_aux_*`` to the detector's own
losses (unchanged, DINO's denoising included); inference is the plain detector's
(same outputs, same FLOPs); the strip tool gives the plain detector's checkpoint."""
import os.path as osp
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from deform_ext.compat.checkpoint_loading import load_from_local
from deform_ext.testing import build_model, demo_batch, mmdet_twin, total_loss
from tests.conftest import REPO_ROOT
from tests.test_models.test_aux_heads.conftest import aux_head, tiny_mmdet, tiny_ours

sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'model_converters'))
import strip_aux_heads  # noqa: E402

LEVELS = (4, 8, 16, 32, 64)  # a stride-4 level from backbone.layer1 and the memory's


def plain_and_aux(cfg: dict, aux_type: str, scope: str = 'deform_ext'):
    """The detector of ``cfg`` and the same with ``aux_head`` as ``aux_type``, with the
    plain one's weights (the heads keep their initialisation)."""
    plain = build_model(cfg, scope=scope)
    aux = build_model(dict(cfg, type=aux_type, aux_head=aux_head(LEVELS)), scope=scope)
    missing, unexpected = aux.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith('aux_head.') for k in missing)
    return plain, aux


CASES = {
    'DeformDETR': lambda: plain_and_aux(tiny_ours('deformable-detr-refine-twostage'),
                                        'DeformDETR'),
    'DeformableDETR': lambda: plain_and_aux(tiny_mmdet('DeformableDETR'),
                                            'deform_ext.DeformableDETRWithAux', 'mmdet'),
    'DINO': lambda: plain_and_aux(tiny_mmdet('DINO'), 'deform_ext.DINOWithAux', 'mmdet'),
}


@pytest.mark.parametrize('name', list(CASES))
def test_training_adds_aux_losses_to_the_detectors_own(name):
    plain, aux = CASES[name]()
    plain.train(), aux.train()
    # demo_batch seeds torch: DINO draws the same denoising queries on both sides
    own = plain(**demo_batch(plain), mode='loss')
    losses = aux(**demo_batch(aux), mode='loss')
    assert {'loss_aux_cls', 'loss_aux_bbox', 'loss_aux_centerness'} == set(losses) - set(own)
    if name == 'DINO':
        assert any(key.startswith('dn_') for key in own)
    for key, value in own.items():
        assert torch.equal(losses[key], value), key
    total_loss(losses).backward()
    assert aux.aux_head.heads[0].atss_cls.weight.grad.abs().sum() > 0


def predict(model, data):
    with torch.no_grad():
        return model.predict(data['inputs'], data['data_samples'])


@pytest.mark.parametrize('name', list(CASES))
def test_inference_is_the_plain_detectors(name):
    plain, aux = (model.eval() for model in CASES[name]())
    data = demo_batch(plain)
    for ours, theirs in zip(predict(aux, data), predict(plain, data)):
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(ours.pred_instances[key], theirs.pred_instances[key]), key
    with torch.no_grad():
        for ours, theirs in zip(aux._forward(data['inputs'], data['data_samples']),
                                plain._forward(data['inputs'], data['data_samples'])):
            assert torch.equal(ours, theirs)


def flops(model, data, mode):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(**data, mode=mode)
    return counter.get_total_flops()


def test_inference_flops_are_the_plain_detectors():
    plain, aux = CASES['DeformDETR']()
    data = demo_batch(plain)
    plain.eval(), aux.eval()
    assert flops(aux, data, 'predict') == flops(plain, data, 'predict') > 0
    assert flops(aux, data, 'tensor') == flops(plain, data, 'tensor') > 0
    plain.train(), aux.train()  # the counter does see the heads where they run
    assert flops(aux, demo_batch(aux), 'loss') > flops(plain, demo_batch(plain), 'loss')


def test_stripped_checkpoint_is_the_plain_detectors(tmp_path):
    plain, aux = CASES['DeformDETR']()
    src, dst = str(tmp_path / 'aux.pth'), str(tmp_path / 'stripped.pth')
    torch.save(dict(state_dict=aux.state_dict(), meta=dict(dataset_meta=dict(classes=('a',))),
                    optimizer=dict(state={})), src)
    strip_aux_heads.main([src, dst])
    stripped = load_from_local(dst, map_location='cpu')
    assert set(stripped) == {'state_dict', 'meta'}
    assert stripped['meta'] == dict(dataset_meta=dict(classes=('a',)))
    result = plain.load_state_dict(stripped['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    numel = sum(t.numel() for k, t in stripped['state_dict'].items()
                if k in dict(plain.named_parameters()))
    assert numel == sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in aux.parameters()) > numel
    # the full checkpoint still loads strictly into the config with the heads
    assert not aux.load_state_dict(load_from_local(src)['state_dict'], strict=True).missing_keys


def test_stripped_checkpoint_drops_the_denoising_embedding_too(tmp_path):
    cfg = tiny_ours('deformable-detr-refine-twostage')
    plain = build_model(cfg)
    trained = build_model(dict(cfg, aux_head=aux_head(LEVELS), denoising=dict(num_dn_queries=10)))
    src, dst = str(tmp_path / 'trained.pth'), str(tmp_path / 'stripped.pth')
    torch.save(dict(state_dict=trained.state_dict()), src)
    strip_aux_heads.main([src, dst])
    result = plain.load_state_dict(load_from_local(dst)['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_strip_refuses_a_checkpoint_without_heads(tmp_path):
    plain, _ = CASES['DeformDETR']()
    src = str(tmp_path / 'plain.pth')
    torch.save(dict(state_dict=plain.state_dict()), src)
    with pytest.raises(SystemExit, match=r'plain.pth: no aux_head.\* or dn_queries.\* keys'):
        strip_aux_heads.main([src, str(tmp_path / 'out.pth')])
    with pytest.raises(SystemExit, match='missing.pth: no such file'):
        strip_aux_heads.main([str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth')])


def test_deform_detr_with_heads_off_is_mmdets_twin():
    """aux_head=None adds no parameter: the state dict still loads into mmdet's twin."""
    cfg = tiny_ours('deformable-detr-refine')
    ours, twin = build_model(cfg), build_model(mmdet_twin(cfg))
    assert ours.aux_head is None
    assert ours.state_dict().keys() == twin.state_dict().keys()
