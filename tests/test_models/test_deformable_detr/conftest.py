"""Fixtures of the Deformable DETR tests."""
import pytest

import deform_ext.models.layers.ms_deform_attn as ms_deform_attn_module


@pytest.fixture
def op_calls(monkeypatch) -> list:
    """The argument tuples of every call that ``MSDeformAttn`` makes to the
    ``ms_deform_attn`` op during the test, in order; the op still runs."""
    calls = []
    original = ms_deform_attn_module.ms_deform_attn
    monkeypatch.setattr(ms_deform_attn_module, 'ms_deform_attn',
                        lambda *args: calls.append(args) or original(*args))
    return calls
