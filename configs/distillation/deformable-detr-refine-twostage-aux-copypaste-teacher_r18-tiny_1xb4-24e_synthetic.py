# The distillation teacher: the `make demo` recipe's training (ATSS aux heads on the
# encoder memory, small-object Copy-Paste; configs/demo/README.md) on the student's own
# inference architecture (the demo model: levels at strides 16, 32, 64, 50 queries),
# trained twice the student's 12 epochs. At inference it is the plain demo model (the
# aux heads do not run), so its forward inside a distilled step costs one demo forward.
# Train it with
#   python tools/train.py configs/distillation/deformable-detr-refine-twostage-aux-copypaste-teacher_r18-tiny_1xb4-24e_synthetic.py \
#       --work-dir work_dirs/distillation_teacher
# (or benchmarks/ablation.py distillation, whose 'teacher' row is this config).
_base_ = '../demo/deformable-detr-refine-twostage-aux-copypaste_r18-tiny_1xb4-12e_synthetic.py'

# Back to the demo model's three levels (the recipe adds a stride-8 one).
num_levels = 3
model = dict(
    num_feature_levels=num_levels,
    backbone=dict(out_indices=(2, 3)),
    neck=dict(in_channels=[128, 256], num_outs=num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=num_levels))),
    aux_head=dict(levels=(16, 32, 64)))

max_epochs = 24
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[20],
         gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=8)
default_hooks = dict(checkpoint=dict(interval=8, max_keep_ckpts=1),
                     visualization=dict(draw=False))
