"""A two-stage :class:`DeformDETR`'s encoder-proposal weights as an
:class:`EncoderRPNHead`'s state dict.

The detector keeps the first stage in three places; the head holds the same modules
under its own names (``D`` = the detector's decoder layers, which is also the index of
the head's extra proposal branch pair; ``i`` < the head's encoder layers)::

    encoder.layers.<i>.*          -> encoder.layers.<i>.*
    level_embed                   -> level_embed
    memory_trans_fc.*             -> memory_trans_fc.*
    memory_trans_norm.*           -> memory_trans_norm.*
    bbox_head.cls_branches.<D>.*  -> cls_branch.*   (row 0 only: the objectness)
    bbox_head.reg_branches.<D>.*  -> reg_branch.*

With as many encoder layers and levels as the detector, the head then scores every
token of the same features exactly as the detector's first stage does.
"""
import re
from collections import OrderedDict
from typing import Dict

from torch import Tensor


def encoder_rpn_weights(detector_state: Dict[str, Tensor],
                        num_encoder_layers: int) -> 'OrderedDict[str, Tensor]':
    """The head's state dict from a two-stage DeformDETR ``state_dict`` (a leading
    ``module.`` of DDP is accepted); the head's first ``num_encoder_layers`` encoder
    layers take the detector's first ones.

    Raises:
        KeyError: the state dict has no two-stage first stage (names the missing keys),
            or fewer encoder layers than asked for.
    """
    state = {re.sub(r'^module\.', '', k): v for k, v in detector_state.items()}
    proposal_index = _proposal_branch_index(state)
    head = OrderedDict()
    for key, value in state.items():
        match = re.match(r'encoder\.layers\.(\d+)\.', key)
        if match and int(match.group(1)) < num_encoder_layers:
            head[key] = value
        elif key == 'level_embed' or key.startswith(('memory_trans_fc.', 'memory_trans_norm.')):
            head[key] = value
        elif key.startswith(f'bbox_head.cls_branches.{proposal_index}.'):
            head['cls_branch.' + key.rsplit('.', 1)[1]] = value[:1]
        elif key.startswith(f'bbox_head.reg_branches.{proposal_index}.'):
            head['reg_branch.' + key.split('.', 3)[3]] = value
    missing = [k for k in ('memory_trans_fc.weight', 'level_embed', 'cls_branch.weight')
               if k not in head]
    missing += [f'encoder.layers.{i}' for i in range(num_encoder_layers)
                if not any(k.startswith(f'encoder.layers.{i}.') for k in head)]
    if missing:
        raise KeyError(f'not a two-stage Deformable DETR state dict with '
                       f'{num_encoder_layers} encoder layer(s): no {missing}')
    return head


def _proposal_branch_index(state: Dict[str, Tensor]) -> int:
    """The index of the head's last class branch: the first stage's (decoder layers)."""
    indices = [int(m.group(1)) for k in state
               for m in [re.match(r'bbox_head\.cls_branches\.(\d+)\.', k)] if m]
    if not indices:
        raise KeyError('not a two-stage Deformable DETR state dict: no '
                       'bbox_head.cls_branches.<i>.* keys')
    return max(indices)
