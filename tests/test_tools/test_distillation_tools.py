"""Distillation through the tools: a teacher trained by tools/train.py (a real mmengine
checkpoint, loaded weights-only), the distilled config trained by 2 torchrun processes
without find_unused_parameters, and its checkpoint tested with the plain student config
by tools/test.py, no teacher needed."""
import glob
import os.path as osp
import re
import sys

from tests.conftest import DEMO_CONFIG, REPO_ROOT, run_tool, tiny_training_options
from tests.fixtures.dist_probe import SMALL_IMAGES, load_checkpoint_file

DISTILLED = osp.join(REPO_ROOT, 'configs', 'distillation',
                     'deformable-detr-refine-twostage-distilled_r18-tiny_1xb4-12e_synthetic.py')
STUDENT_KEYS_NOTE = re.compile(r'missing keys in source state_dict|unexpected key in source',
                               re.I)


def test_teacher_distilled_by_two_ranks_and_student_tested_alone(tiny_coco, tmp_path):
    options = tiny_training_options(tiny_coco) + SMALL_IMAGES
    teacher_dir = str(tmp_path / 'teacher')
    run_tool([sys.executable, 'tools/train.py',
              DEMO_CONFIG, '--work-dir', teacher_dir, '--cfg-options', *options])
    teacher_ckpt = osp.join(teacher_dir, 'epoch_1.pth')
    student_dir = str(tmp_path / 'distilled')
    teacher_cfg = osp.join(teacher_dir, osp.basename(DEMO_CONFIG))  # as trained, shrunk
    teacher = ['model.teacher_cfg=' + teacher_cfg, 'model.teacher_ckpt=' + teacher_ckpt,
               'model.distill.extra_targets.score_thr=0.0']
    result = run_tool(['bash', 'tools/dist_train.sh', DISTILLED, '2', '--work-dir', student_dir,
                       '--cfg-options', *options, *teacher], env=dict(PORT='29547'))
    log = result.stdout + result.stderr
    for name in ('loss_distill_cls', 'loss_distill_giou', 'loss_teacher_cls',
                 'loss_distill_feat'):
        assert re.search(rf'{name}: \d', log), name
    assert 'find_unused_parameters' not in log
    checkpoint = osp.join(student_dir, 'epoch_1.pth')
    student_state = load_checkpoint_file(checkpoint)['state_dict']
    assert list(student_state) == list(load_checkpoint_file(teacher_ckpt)['state_dict'])
    assert osp.getsize(checkpoint) <= 1.05 * osp.getsize(teacher_ckpt)
    tested = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, checkpoint,
                       '--work-dir', str(tmp_path / 'test'), '--cfg-options', *options])
    output = tested.stdout + tested.stderr
    assert 'coco/bbox_mAP' in output and not STUDENT_KEYS_NOTE.search(output)
    assert glob.glob(str(tmp_path / 'test' / '*' / '*.json'))
