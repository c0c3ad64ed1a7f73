# The distillation teacher: the demo's two-stage Deformable DETR with refinement
# (configs/demo/, 3 levels, 50 queries, batch 4) trained three times as long, 48
# epochs, lr step at 40. Train it with
#   python tools/train.py configs/distillation/deformable-detr-refine-twostage-teacher_r18-tiny_1xb4-48e_synthetic.py \
#       --work-dir work_dirs/distillation_teacher
# (or benchmarks/ablation.py distillation, whose 'teacher' row is this config).
_base_ = '../demo/deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py'

max_epochs = 48
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[40],
         gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=8)
default_hooks = dict(checkpoint=dict(interval=8, max_keep_ckpts=1))
