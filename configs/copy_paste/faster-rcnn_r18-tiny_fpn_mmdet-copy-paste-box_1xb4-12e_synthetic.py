# The Copy-Paste ablation's reference row: mmdet's CopyPaste(paste_by_box=True), which
# needs the MultiImageMixDataset wrapper, pastes a whole other training image's objects
# at their own positions (so images are padded to one size) and picks them uniformly.
_base_ = '../../projects/encoder_rpn/configs/_base_/faster-rcnn_r18-tiny_fpn_synthetic.py'

load = _base_.train_pipeline[:2]  # LoadImageFromFile, LoadAnnotations(with_bbox=True)
mix_pipeline = [
    *_base_.train_pipeline[2:-1],  # Resize, RandomFlip
    dict(type='Pad', size=_base_.image_size),
    dict(type='CopyPaste', paste_by_box=True, max_num_pasted=100),
    _base_.train_pipeline[-1]
]
train_dataloader = dict(
    dataset=dict(_delete_=True, type='MultiImageMixDataset',
                 dataset=dict(_base_.train_dataloader.dataset, pipeline=load),
                 pipeline=mix_pipeline))
