# The demo model trained with a curriculum: CurriculumSampler orders each epoch from
# easy images (few, large objects) to hard ones (many, small), less strictly every
# epoch, and shuffles uniformly (as DefaultSampler) from epoch 8 of 16 on. Every epoch
# still holds every image once, so the schedule and its length are the demo's.
_base_ = ['../demo/deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py']

train_dataloader = dict(sampler=dict(_delete_=True, type='CurriculumSampler', full_epoch=8))
