"""Input checks of :func:`deform_ext.ops.ms_deform_attn`, with messages that name
the offending tensor and its shape.

The metadata checks (ranks, sizes, devices, dtypes) are free and always run, also
while tracing. The data checks read ``spatial_shapes`` and ``level_start_index``
back to the host; the functional runs them on CPU and, on CUDA, only in debug mode.
"""
import torch

_LAYOUTS = {  # name: (rank, layout)
    'value': (4, '(bs, num_keys, num_heads, head_dims)'),
    'spatial_shapes': (2, '(num_levels, 2)'),
    'level_start_index': (1, '(num_levels,)'),
    'sampling_locations': (6, '(bs, num_queries, num_heads, num_levels, num_points, 2)'),
    'attention_weights': (5, '(bs, num_queries, num_heads, num_levels, num_points)'),
}
_VALUE_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
_REDUCED_DTYPES = (torch.bfloat16, torch.float16)


def _fail(message: str):
    raise ValueError(f'ms_deform_attn: {message}')


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def check_ms_deform_attn_metadata(value, spatial_shapes, level_start_index, sampling_locations,
                                  attention_weights) -> None:
    """Raise ValueError, naming the tensor and its shape, for wrong types, ranks, sizes,
    devices or dtypes (shapes as in :func:`deform_ext.ops.ms_deform_attn`)."""
    tensors = dict(value=value, spatial_shapes=spatial_shapes,
                   level_start_index=level_start_index, sampling_locations=sampling_locations,
                   attention_weights=attention_weights)
    for name, (rank, layout) in _LAYOUTS.items():
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            _fail(f'{name} must be a tensor of shape {layout}, got {type(t).__name__}')
        if t.dim() != rank:
            _fail(f'{name} must have shape {layout}, got {_shape(t)}')
    bs, _, num_heads, _ = value.shape
    num_levels, loc = spatial_shapes.shape[0], sampling_locations
    expected = [  # (name, tensor, dim, size, what the size is)
        ('spatial_shapes', spatial_shapes, 1, 2, '2'),
        ('level_start_index', level_start_index, 0, num_levels,
         'num_levels (spatial_shapes.shape[0])'),
        ('sampling_locations', loc, 0, bs, 'bs (value.shape[0])'),
        ('sampling_locations', loc, 2, num_heads, 'num_heads (value.shape[2])'),
        ('sampling_locations', loc, 3, num_levels, 'num_levels (spatial_shapes.shape[0])'),
        ('sampling_locations', loc, 5, 2, '2'),
    ]
    expected += [('attention_weights', attention_weights, d, loc.shape[d],
                  f'sampling_locations.shape[{d}]') for d in range(5)]
    for name, t, dim, size, what in expected:
        if t.shape[dim] != size:
            _fail(f'{name} has shape {_shape(t)}, but its dim {dim} must equal {what} = {size}')
    for name, t in tensors.items():
        if t.device != value.device:
            _fail(f'{name} of shape {_shape(t)} is on {t.device}, but value is on {value.device}')
    for name in ('spatial_shapes', 'level_start_index'):
        if tensors[name].dtype != torch.int64:
            _fail(f'{name} of shape {_shape(tensors[name])} must be int64, '
                  f'got {tensors[name].dtype}')
    if not (value.dtype in _VALUE_DTYPES or (value.dtype == torch.float16 and value.is_cuda)):
        _fail(f'value of shape {_shape(value)} must be float32, float64 or bfloat16 '
              f'(float16 on CUDA only), got {value.dtype} on {value.device}')
    reduced = value.dtype in _REDUCED_DTYPES
    for name, t in (('sampling_locations', loc), ('attention_weights', attention_weights)):
        if t.dtype != value.dtype and not (reduced and t.dtype == torch.float32):
            allowed = f'{value.dtype} or torch.float32' if reduced else str(value.dtype)
            _fail(f'{name} of shape {_shape(t)} must be {allowed} to go with a {value.dtype} '
                  f'value, got {t.dtype}')


def check_ms_deform_attn_data(value, spatial_shapes, level_start_index) -> None:
    """Raise ValueError when spatial_shapes has a non-positive size, its h * w do not
    add up to value's num_keys, or level_start_index is not their exclusive cumsum.
    Reads both index tensors back to the host (a sync on CUDA)."""
    shapes = spatial_shapes.tolist()
    if any(h < 1 or w < 1 for h, w in shapes):
        _fail(f'spatial_shapes must hold positive (h, w) rows, got {shapes}')
    sizes = [h * w for h, w in shapes]
    if sum(sizes) != value.shape[1]:
        _fail(f'spatial_shapes {shapes} add up to {sum(sizes)} keys, but value has shape '
              f'{_shape(value)} with num_keys = {value.shape[1]}')
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    if level_start_index.tolist() != starts:
        _fail(f'level_start_index {level_start_index.tolist()} of shape '
              f'{_shape(level_start_index)} must be the exclusive cumsum of h * w over '
              f'spatial_shapes, {starts}')
