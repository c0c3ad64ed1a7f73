"""The rows of benchmarks/ablation.py, per suite: a config (relative to the repository
root), ``--cfg-options`` on top of it, and what the row is."""
from typing import NamedTuple, Tuple


class Row(NamedTuple):
    config: str
    description: str
    options: Tuple[str, ...] = ()


def _copy_paste_rows() -> dict:
    configs = 'configs/copy_paste/faster-rcnn_r18-tiny_fpn_{}1xb4-12e_synthetic.py'
    rows = {
        'baseline': Row(configs.format(''), 'no pasting'),
        'boxes': Row(configs.format('copy-paste-box_'),
                     'SmallObjectCopyPaste, feathered boxes, 1-3 objects x 1-3 copies'),
        'masks': Row(configs.format('copy-paste-mask_'),
                     'SmallObjectCopyPaste, masks (gt masks loaded), 1-3 objects x 1-3 copies'),
        'mmdet': Row(configs.format('mmdet-copy-paste-box_'),
                     "mmdet's CopyPaste(paste_by_box=True) in MultiImageMixDataset"),
    }
    for repeats in (1, 2, 3):
        for copies in (1, 3):
            rows[f'os{repeats}-c{copies}'] = Row(
                configs.format('copy-paste-oversample_'),
                f'Kisantal: images with a small object x{repeats}, each drawn object '
                f'pasted {copies}x (masks)',
                (f'train_dataloader.dataset.repeats={repeats}',
                 f'train_dataloader.dataset.dataset.pipeline.4.copies=({copies},{copies})'))
    return rows


SUITES = {
    'copy_paste': dict(rows=_copy_paste_rows(), default_rows=('baseline', 'boxes', 'masks', 'mmdet'),
                       epochs=6, lr_steps=(0.75, 0.9)),
}
