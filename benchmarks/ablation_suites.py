"""The rows of benchmarks/ablation.py, per suite: a config (relative to the repository
root), ``--cfg-options`` on top of it, and what the row is."""
from typing import NamedTuple, Tuple

DEMO_CONFIG = 'configs/demo/deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py'


class Row(NamedTuple):
    """``options`` may name another row's checkpoint (its run with the lowest seed) as
    ``{checkpoint[ROW]}``; that row is then listed in ``needs`` and trained first.
    ``epochs_scale``: the row trains for that many times the suite's N epochs.
    ``one_seed``: the lowest seed only."""
    config: str
    description: str
    options: Tuple[str, ...] = ()
    epochs_scale: int = 1
    needs: Tuple[str, ...] = ()
    one_seed: bool = False


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


def _distillation_rows() -> dict:
    folder = ('configs/distillation/'
              'deformable-detr-refine-twostage-{}_r18-tiny_1xb4-{}e_synthetic.py')
    teacher_config = folder.format('aux-copypaste-teacher', 24)
    teacher = ('model.teacher_cfg=' + teacher_config,
               'model.teacher_ckpt={checkpoint[teacher]}')
    losses = dict(match='matched-query class KL + box L1/GIoU',
                  extra_targets='teacher boxes above 0.3 as extra targets',
                  feature='stride-32 feature imitation (1x1 adapter)',
                  memory='encoder memory imitation, every level (linear adapter)',
                  proposals="the teacher's per-token encoder proposals (objectness KL, box L1)")
    rows = {
        'teacher': Row(teacher_config, 'the student model trained 2N epochs with the demo '
                       "recipe's aux heads and Copy-Paste", epochs_scale=2, one_seed=True),
        'student': Row(DEMO_CONFIG, 'the student alone, N epochs'),
        'student-2N': Row(DEMO_CONFIG, 'the student alone, 2N epochs', epochs_scale=2),
    }
    for name, what in losses.items():
        off = tuple(f'model.distill.{other}=None' for other in losses if other != name)
        rows[f'distill-{name}'] = Row(folder.format('distilled', 12), f'distilled: {what} only',
                                      teacher + off, needs=('teacher',))
    rows['distill-all'] = Row(folder.format('distilled', 12), 'distilled: all five losses',
                              teacher, needs=('teacher',))
    decoder_side = tuple(f'model.distill.{name}=None' for name in ('memory', 'proposals'))
    rows['distill-decoder'] = Row(folder.format('distilled', 12),
                                  'distilled: match, extra_targets and feature (no encoder '
                                  'losses)', teacher + decoder_side, needs=('teacher',))
    return rows


def _aux_losses_rows() -> dict:
    folder = 'configs/aux_losses/deformable-detr-refine-twostage-{}_r18-tiny_1xb4-16e_synthetic.py'
    return {
        'none': Row(DEMO_CONFIG, 'the demo model, no auxiliary heads'),
        'all': Row(folder.format('aux-all'),
                   'ATSS aux heads on strides 4, 8 (backbone + memory) and 16, 32, 64 (memory)'),
        'shallow': Row(folder.format('aux-shallow'),
                       'ATSS aux heads on strides 4 and 8 only (backbone layer1/2 + memory)'),
        'stride8': Row(folder.format('aux-stride8'),
                       'an ATSS aux head on stride 8 only (backbone layer2 + memory)'),
        'stride8-light': Row(folder.format('aux-stride8-light'),
                             'stride8 with a 32-channel ATSS tower instead of 128'),
        'deep': Row(folder.format('aux-deep'),
                    "ATSS aux heads on the memory's strides 16, 32, 64 only (Co-DETR's)"),
        'positive-queries': Row(
            folder.format('aux-deep-positive-queries'),
            "deep + Co-DETR's positive queries: the heads' positive anchors as extra "
            'decoder queries with known targets'),
        'curriculum': Row(folder.format('curriculum'),
                          'no aux heads; CurriculumSampler easy to hard, uniform from epoch 8'),
        'hybrid': Row(folder.format('hybrid'),
                      'no aux heads; hybrid matching: 150 one-to-many queries, targets x5'),
        # memory with denoising and crowded images (not default rows: DINO is slow here)
        'dino': Row('projects/ms_deform_attn_swap/configs/'
                    'dino-4scale-ms-deform-attn_r18-tiny_1xb8-24e_synthetic.py',
                    "mmdet's DINO (denoising) at CPU size, batch 8, no aux heads"),
        'dino-aux-copypaste3x': Row(
            'configs/aux_losses/dino-4scale-aux-copypaste3x_r18-tiny_1xb8-24e_synthetic.py',
            'DINO + ATSS aux heads on strides 4-64 + Copy-Paste at 3.1x the objects '
            '(21.2 per image)'),
    }


def _demo_rows() -> dict:
    demo = 'configs/demo/deformable-detr-refine-twostage'
    return {
        'earlier': Row(f'{demo}-aux-copypaste_r18-tiny_1xb4-12e_synthetic.py',
                       'the earlier make demo recipe: stride-8 level, aux heads, Copy-Paste'),
        'recipe': Row(f'{demo}-copypaste-dn30-qfl-ms-bf16-nodrop_r18-tiny_1xb4-26e_synthetic.py',
                      'the make demo recipe: the earlier one without aux heads, + 30 '
                      'denoising queries, IoU-aware classification (QFL), offsets at the '
                      'full lr, multi-scale batches, bf16 autocast, no dropout'),
    }


SUITES = {
    'copy_paste': dict(rows=_copy_paste_rows(),
                       default_rows=('baseline', 'boxes', 'masks', 'mmdet'),
                       epochs=6, lr_steps=(0.75, 0.9)),
    'distillation': dict(rows=_distillation_rows(),
                         default_rows=('teacher', 'student', 'student-2N', 'distill-match',
                                       'distill-extra_targets', 'distill-feature',
                                       'distill-memory', 'distill-proposals',
                                       'distill-decoder', 'distill-all'),
                         epochs=12, lr_steps=(0.8,)),
    'aux_losses': dict(rows=_aux_losses_rows(),
                       default_rows=('none', 'all', 'shallow', 'stride8', 'stride8-light',
                                     'deep', 'positive-queries', 'curriculum', 'hybrid'),
                       epochs=16, lr_steps=(0.8,)),
    'demo': dict(rows=_demo_rows(), default_rows=('earlier', 'recipe'),
                 epochs=20, lr_steps=(0.85,)),
}
