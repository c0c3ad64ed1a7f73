"""Pictures of a trained model and its training: where deformable attention samples
(:func:`collect_sampling`, :func:`draw_sampling`) and loss / mAP curves from mmengine's
logs (:func:`plot_curves`). matplotlib is imported only when a figure is drawn."""
from .curves import load_scalars, plot_curves
from .sampling import (AttentionSampling, SamplingRecord, collect_sampling, level_strides,
                       record_sampling)
from .sampling_figure import default_detections, draw_sampling, figure_size

__all__ = ['AttentionSampling', 'SamplingRecord', 'collect_sampling', 'default_detections',
           'draw_sampling', 'figure_size', 'level_strides', 'load_scalars', 'plot_curves',
           'record_sampling']
