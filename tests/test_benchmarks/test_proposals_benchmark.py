"""benchmarks/proposals.py end to end at a tiny size: trains, evaluates the detector and
its first stage alone, writes the table, and does not repeat a finished run."""
import json
import re

from tests.test_benchmarks.benchmark_runs import COCO_NUMBER as NUMBER
from tests.test_benchmarks.benchmark_runs import run_benchmark


def run(*args):
    return run_benchmark('proposals.py', *args)


def test_one_epoch_gives_recall_and_detection_columns_and_is_not_repeated(tiny_coco, tmp_path):
    args = ['--epochs', '1', '--seeds', '0', '--rows', 'o2o', '--jobs', '1', '--image-size',
            '64', '--data-root', tiny_coco, '--work-dir', str(tmp_path)]
    out = run(*args)
    row = re.search(r'^\| Faster R-CNN, EncoderRPNHead one-to-one, 300 proposals \(1 seeds\) '
                    rf'((\| {NUMBER} ){{8}})\|$', out, re.M)
    assert row, out
    results = json.loads((tmp_path / 'o2o_seed0' / 'results.json').read_text())
    assert sorted(results) == sorted(['AR@100', 'AR@300', 'AR@1000', 'AR_s@300', 'AR_s@1000',
                                      'mAP', 'AP_s', 'AP_l'])
    assert 0 < results['AR@100'] <= results['AR@300'] <= results['AR@1000'] <= 1
    again = run(*args)
    assert '+ ' not in again and row.group(0) in again  # nothing trained or tested again


def test_step_time_prints_each_row_and_its_ratio():
    out = run('--step-time', '--rows', 'rpn', 'o2o', '--repeats', '1', '--image-size', '64')
    assert re.search(r'^\| Faster R-CNN, RPNHead .* \| \d+\.\d \| 1\.00 \|$', out, re.M), out
    assert re.search(r'^\| Faster R-CNN, EncoderRPNHead one-to-one.* \| \d+\.\d \| \d+\.\d\d \|$',
                     out, re.M), out
