"""benchmarks/ablation.py end to end at a tiny size: two Copy-Paste rows (the baseline and
Kisantal's oversampling with copies, whose dataset wrapper and pipeline index the
--cfg-options reach) train on another data root at another image size, the table holds
each row's metrics, times and memory, and a finished run is not repeated; a distilled row
trains its teacher first, once; ``--step-time`` times rows in one process."""
import json
import re
import subprocess
import sys

from mmengine.config import Config

from tests.conftest import REPO_ROOT
from tests.test_benchmarks.benchmark_runs import COCO_NUMBER as NUMBER
from tests.test_benchmarks.benchmark_runs import run_benchmark


def run(*args):
    return run_benchmark('ablation.py', *args)


def test_rows_train_on_another_root_and_are_not_repeated(tiny_coco, tmp_path):
    args = ['copy_paste', '--rows', 'baseline', 'os2-c3', '--epochs', '1', '--seeds', '0',
            '--jobs', '1', '--data-root', tiny_coco, '--image-size', '96',
            '--work-dir', str(tmp_path)]
    out = run(*args)
    for row in ('baseline', 'os2-c3'):
        line = re.search(rf'^\| {row} \| 1 \| 1 ((\| {NUMBER} ){{6}})\| \d+\.\d\d \| \d\.\d{{3}} '
                         r'\| \d+ \|$', out, re.M)
        assert line, out
        results = json.loads((tmp_path / f'{row}_seed0' / 'results.json').read_text())
        assert results['peak_mib'] > 100 and results['step_s'] > 0
        dumped = next((tmp_path / f'{row}_seed0').glob('2*/vis_data/*.py'))
        config = dumped.read_text()
        assert tiny_coco in config and 'data/synthetic_coco' not in config
        assert tuple(Config.fromfile(dumped).val_dataloader.dataset.pipeline[1].scale) == (96, 96)
    dataset = Config.fromfile(next((tmp_path / 'os2-c3_seed0').glob('2*/vis_data/*.py'))
                              ).train_dataloader.dataset
    assert dataset.repeats == 2 and tuple(dataset.dataset.pipeline[4].copies) == (3, 3)
    again = run(*args)
    assert '+ ' not in again and line.group(0) in again


def test_unknown_row_is_named():
    result = subprocess.run([sys.executable, f'{REPO_ROOT}/benchmarks/ablation.py', 'copy_paste',
                             '--rows', 'nope'],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode != 0 and "copy_paste has no rows ['nope']" in result.stderr


def test_step_time_prints_each_row_and_its_ratio_and_refuses_teacher_and_option_rows():
    out = run('aux_losses', '--step-time', '--rows', 'none', 'positive-queries',
              '--repeats', '1', '--image-size', '64')
    assert re.search(r'^\| none \| \d+\.\d \| 1\.00 \|$', out, re.M), out
    assert re.search(r'^\| positive-queries \| \d+\.\d \| \d+\.\d\d \|$', out, re.M), out
    result = subprocess.run([sys.executable, f'{REPO_ROOT}/benchmarks/ablation.py',
                             'distillation', '--step-time', '--rows', 'distill-all'],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode != 0 and "rows ['distill-all'] need a trained row" in result.stderr
    result = subprocess.run([sys.executable, f'{REPO_ROOT}/benchmarks/ablation.py',
                             'copy_paste', '--step-time', '--rows', 'baseline', 'os2-c3'],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode != 0 and "rows ['os2-c3'] change their config" in result.stderr


def test_step_time_takes_a_recipe_with_autocast_and_batch_augments():
    """The demo suite's recipe row has bf16 autocast in its optim_wrapper and
    multi-scale batch augments in its data preprocessor: both rows are timed."""
    out = run('demo', '--step-time', '--repeats', '1', '--image-size', '64')
    assert re.search(r'^\| earlier \| \d+\.\d \| 1\.00 \|$', out, re.M), out
    assert re.search(r'^\| recipe \| \d+\.\d \| \d+\.\d\d \|$', out, re.M), out


def test_a_distilled_row_trains_its_teacher_first_and_once(tiny_coco, tmp_path):
    """With the lowest seed's teacher, whatever the order of --seeds."""
    args = ['distillation', '--rows', 'distill-all', '--epochs', '1', '--seeds', '1', '0',
            '--jobs', '2', '--data-root', tiny_coco, '--work-dir', str(tmp_path)]
    out = run(*args)
    assert re.search(rf'^\| distill-all \| 1 \| 2 ((\| {NUMBER} ± \d\.\d{{3}} ){{6}})', out,
                     re.M), out
    assert [p.name for p in tmp_path.glob('teacher_seed*') if p.is_dir()] == ['teacher_seed0']
    teacher = json.loads((tmp_path / 'teacher_seed0' / 'results.json').read_text())
    assert teacher['mAP'] >= 0
    teacher_ckpt = (tmp_path / 'teacher_seed0' / 'last_checkpoint').read_text().strip()
    assert teacher_ckpt.endswith('epoch_2.pth')  # 2N epochs
    dumped = Config.fromfile(next((tmp_path / 'distill-all_seed1').glob('2*/vis_data/*.py')))
    assert dumped.model.teacher_ckpt == teacher_ckpt
