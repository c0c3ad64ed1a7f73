# Kisantal et al.'s recipe in miniature: images that hold a small object seen
# `repeats` times per epoch (SmallObjectOversampledDataset; each repeat gets its own
# pastes), and each drawn object pasted `copies` times by its mask. The ablation's grid
# sets repeats 1/2/3 and copies (1, 1)/(3, 3) from the command line.
_base_ = './faster-rcnn_r18-tiny_fpn_copy-paste-mask_1xb4-12e_synthetic.py'

copy_paste = dict(_base_.copy_paste, copies=(3, 3))
train_pipeline = [*_base_.train_pipeline[:-2], copy_paste, _base_.train_pipeline[-1]]
train_dataloader = dict(
    dataset=dict(_delete_=True, type='SmallObjectOversampledDataset', repeats=2,
                 dataset=dict(_base_.train_dataloader.dataset, pipeline=train_pipeline)))
