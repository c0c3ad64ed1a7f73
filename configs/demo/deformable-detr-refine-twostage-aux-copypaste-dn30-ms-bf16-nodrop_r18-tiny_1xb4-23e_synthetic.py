# The `make demo` recipe: the earlier recipe (./deformable-detr-refine-twostage-aux-copypaste_r18-tiny_1xb4-12e_synthetic.py:
# the demo model with a stride-8 level, auxiliary ATSS heads on the encoder memory and
# small-object Copy-Paste) with DINO's contrastive denoising queries (30 per image),
# multi-scale batches, bf16 autocast and no dropout, and the schedule that fits ten
# minutes on 2 cores.
# Why each choice, with the probes behind it: ./README.md.
_base_ = ['./deformable-detr-refine-twostage-aux-copypaste_r18-tiny_1xb4-12e_synthetic.py']

model = dict(
    # noised ground-truth boxes as extra decoder queries with known targets (training
    # only; the trained detector is the plain model plus one label embedding)
    # (30 rather than DINO's 100: the decoder's queries, 50 + 2 x groups x boxes, stay
    # about 110 instead of 250; 0.88x the step)
    denoising=dict(num_dn_queries=30),
    # no dropout, as DINO: a 23-epoch run from scratch does not overfit (0.96x the step)
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(dropout=0.0), ffn_cfg=dict(ffn_drop=0.0))),
    decoder=dict(layer_cfg=dict(self_attn_cfg=dict(dropout=0.0), cross_attn_cfg=dict(dropout=0.0),
                                ffn_cfg=dict(ffn_drop=0.0))),
    # each training batch resized to one random side in 160-256 (multiples of 32):
    # about 0.8x the step on average, and scale jitter; evaluation stays at 256
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchSyncRandomResize', random_size_range=(160, 256), size_divisor=32,
             interval=1)]))

# bf16 autocast on the CPU (convolutions and matrix products in bf16 on AVX-512 BF16,
# weights and optimizer in float32): the same step in about 0.7x the time.
optim_wrapper = dict(type='deform_ext.AutocastOptimWrapper', dtype='bfloat16')

max_epochs = 23
param_scheduler = [_base_.param_scheduler[0],  # the same warmup; the lr drop at epoch 20
                   dict(_base_.param_scheduler[1], end=max_epochs, milestones=[20])]
train_cfg = dict(max_epochs=max_epochs, val_interval=12)  # evaluated at epochs 12 and 23
default_hooks = dict(checkpoint=dict(interval=12), visualization=dict(interval=10))
