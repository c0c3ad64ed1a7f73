# The demo model (configs/demo/) with training-only auxiliary ATSS heads
# (EncoderAuxHeads, docs/aux_losses.md) on every level: the encoder memory's strides
# 16, 32, 64 and two finer levels, strides 4 and 8. The demo's memory has no level
# finer than 16, so those two come from the backbone: ResNet-18 at half width gives
# layer1 (stride 4, 32 channels) and layer2 (stride 8, 64 channels), each through a
# 1x1 conv + GroupNorm to 128 channels and added to the upsampled next coarser level,
# then a 3x3 conv (an FPN top-down step): the loss trains the shallow backbone stages,
# which get no direct signal otherwise, and the encoder memory. Upsampling the stride-16
# memory alone would add anchors but no detail. Inference is the demo's: predict never
# runs the heads, and tools/model_converters/strip_aux_heads.py makes a checkpoint of
# exactly the demo config's keys. All levels weigh 1 (the default level_weights).
_base_ = ['../demo/deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py']

model = dict(
    aux_head=dict(
        type='EncoderAuxHeads',
        levels=(4, 8, 16, 32, 64),
        extra_levels=[
            dict(stride=4, source='backbone.layer1', in_channels=32),
            dict(stride=8, source='backbone.layer2', in_channels=64),
        ]))  # head: EncoderAuxHeads' default, Co-DETR's ATSS head
