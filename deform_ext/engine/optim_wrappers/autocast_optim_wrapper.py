"""``AutocastOptimWrapper``: mixed precision on any device, dtype from the config.

mmengine's ``AmpOptimWrapper`` refuses to start without CUDA (or NPU/MLU/MUSA) and
its dtype is float16 unless told. This wrapper runs the forward under
``torch.autocast`` on the model's device type, CPU included:

- ``dtype='bfloat16'``: no loss scaling (bf16 has float32's range); the usual
  choice on CPU and on Ampere or newer GPUs;
- ``dtype='float16'``: dynamic (or static) loss scaling with ``torch.amp.GradScaler``;
- ``dtype=None``: float16 where CUDA is available, else bfloat16.

``tools/train.py --amp`` switches a config's ``OptimWrapper`` to this type with the
config's top-level ``amp_dtype`` (if any) as ``dtype``.
"""
from contextlib import contextmanager
from typing import Optional, Union

import torch
from mmengine.optim import OptimWrapper

from deform_ext.registry import OPTIM_WRAPPERS

DTYPES = {'float16': torch.float16, 'fp16': torch.float16, 'half': torch.float16,
          'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16}


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` whose forward runs under ``torch.autocast``.

    Args:
        dtype (str, optional): 'bfloat16' or 'float16' (aliases 'bf16', 'fp16',
            'half'); None picks float16 with CUDA, else bfloat16.
        loss_scale (str, float or dict): for float16 only: 'dynamic' (default), a
            fixed scale, or GradScaler keyword arguments.
        device_type (str, optional): the autocast device; defaults to 'cuda' when
            available, else 'cpu'.
        **kwargs: ``OptimWrapper``'s (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).
    """

    def __init__(self, dtype: Optional[str] = None,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 device_type: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.device_type = device_type or ('cuda' if torch.cuda.is_available() else 'cpu')
        if dtype is None:
            dtype = 'float16' if self.device_type == 'cuda' else 'bfloat16'
        if dtype not in DTYPES:
            raise ValueError(f'AutocastOptimWrapper dtype must be one of {sorted(DTYPES)}, '
                             f'got {dtype!r}')
        self.cast_dtype = DTYPES[dtype]
        self.loss_scaler = None
        if self.cast_dtype == torch.float16:
            if loss_scale == 'dynamic':
                self.loss_scaler = torch.amp.GradScaler(self.device_type)
            elif isinstance(loss_scale, (int, float)):
                self.loss_scaler = torch.amp.GradScaler(self.device_type, init_scale=loss_scale,
                                                        growth_interval=2**31 - 1)
            elif isinstance(loss_scale, dict):
                self.loss_scaler = torch.amp.GradScaler(self.device_type, **loss_scale)
            else:
                raise ValueError(f'loss_scale must be "dynamic", a number or a dict, '
                                 f'got {loss_scale!r}')

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update()

    def state_dict(self) -> dict:
        state = self.optimizer.state_dict()
        if self.loss_scaler is not None:
            state['loss_scaler'] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop('loss_scaler', None)
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        self.optimizer.load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model):
        """Gradient-accumulation context of ``OptimWrapper``, plus autocast."""
        with super().optim_context(model), \
                torch.autocast(device_type=self.device_type, dtype=self.cast_dtype):
            yield
