# The `make demo` recipe: the earlier recipe (./deformable-detr-refine-twostage-aux-copypaste_r18-tiny_1xb4-12e_synthetic.py:
# the demo model with a stride-8 level, auxiliary ATSS heads on the encoder memory and
# small-object Copy-Paste) with DINO's contrastive denoising queries, multi-scale
# batches and bf16 autocast, and the schedule that fits ten minutes on 2 cores.
# Why each choice, with the probes behind it: ./README.md.
_base_ = ['./deformable-detr-refine-twostage-aux-copypaste_r18-tiny_1xb4-12e_synthetic.py']

model = dict(
    # noised ground-truth boxes as extra decoder queries with known targets (training
    # only; the trained detector is the plain model plus one label embedding)
    denoising=dict(num_dn_queries=100),
    # each training batch resized to one random side in 160-256 (multiples of 32):
    # about 0.8x the step on average, and scale jitter; evaluation stays at 256
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchSyncRandomResize', random_size_range=(160, 256), size_divisor=32,
             interval=1)]))

# bf16 autocast on the CPU (convolutions and matrix products in bf16 on AVX-512 BF16,
# weights and optimizer in float32): the same step in about 0.7x the time.
optim_wrapper = dict(type='deform_ext.AutocastOptimWrapper', dtype='bfloat16')

max_epochs = 20
param_scheduler = [_base_.param_scheduler[0],  # the same warmup; the lr drop at epoch 17
                   dict(_base_.param_scheduler[1], end=max_epochs, milestones=[17])]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10), visualization=dict(interval=10))
