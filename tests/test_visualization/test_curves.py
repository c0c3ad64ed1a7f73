"""plot_curves: mmengine's scalars.json of one or several runs to a PNG."""
import json

import numpy as np
import pytest
from PIL import Image

from deform_ext.visualization import load_scalars, plot_curves
from deform_ext.visualization.curves import run_series, scalars_path, smooth


def write_run(work_dir, epochs=3, iters_per_epoch=10, interval=5, offset=0.0):
    """A work dir with one run's scalars.json as mmengine writes it: training records
    every ``interval`` iterations, a COCO evaluation after each epoch."""
    run = work_dir / '20261203_120000' / 'vis_data'
    run.mkdir(parents=True)
    lines, step = [], 0
    for epoch in range(1, epochs + 1):
        for _ in range(iters_per_epoch // interval):
            step += interval
            lines.append(dict(lr=1e-4, loss=10.0 / step + offset, loss_cls=1.0 / step,
                              time=0.3, epoch=epoch, iter=step, step=step))
        lines.append({'coco/bbox_mAP': 0.1 * epoch + offset, 'coco/bbox_mAP_50': 0.2 * epoch,
                      'data_time': 0.01, 'time': 0.1, 'step': epoch})
    (run / 'scalars.json').write_text(''.join(json.dumps(line) + '\n' for line in lines))
    return work_dir


def test_series_and_paths(tmp_path):
    work = write_run(tmp_path / 'ours')
    path = scalars_path(str(work))
    assert path.endswith('20261203_120000/vis_data/scalars.json')
    assert scalars_path(str(work / '20261203_120000')) == path == scalars_path(path)
    records = load_scalars(str(work))
    x, y = run_series(records, 'loss', 'epoch')
    assert np.allclose(x, [0.5, 1, 1.5, 2, 2.5, 3])  # 10 iterations an epoch
    assert np.allclose(run_series(records, 'loss', 'iter')[0], [5, 10, 15, 20, 25, 30])
    x, y = run_series(records, 'coco/bbox_mAP')
    assert x.tolist() == [1, 2, 3] and np.allclose(y, [0.1, 0.2, 0.3])
    assert np.allclose(smooth(np.array([1.0, 3, 5, 7]), 2), [1, 2, 4, 6])


def test_two_runs_overlaid(tmp_path):
    ours = write_run(tmp_path / 'ours')
    theirs = write_run(tmp_path / 'mmdet', epochs=2, iters_per_epoch=20, offset=0.05)
    out = str(tmp_path / 'curves.png')
    result = plot_curves([str(ours), str(theirs)], out, losses=['loss', 'loss_cls'],
                         panel_size=(300, 200))
    assert result['keys'] == ['loss', 'loss_cls', 'coco/bbox_mAP', 'coco/bbox_mAP_50']
    assert result['size'] == (1200, 200)
    assert result['last'] == {'ours': {'coco/bbox_mAP': pytest.approx(0.3),
                                       'coco/bbox_mAP_50': pytest.approx(0.6)},
                              'mmdet': {'coco/bbox_mAP': pytest.approx(0.25),
                                        'coco/bbox_mAP_50': pytest.approx(0.4)}}
    image = Image.open(out)
    assert image.format == 'PNG' and image.size == (1200, 200)
    assert np.asarray(image.convert('L')).std() > 5


def test_tool_and_its_errors(tool, tmp_path, capsys):
    plot_tool = tool('tools/analysis/plot_curves.py')
    ours = write_run(tmp_path / 'ours')
    out = str(tmp_path / 'c.png')
    result = plot_tool.main([str(ours), '--out', out, '--labels', 'deform_ext',
                             '--metrics', 'coco/bbox_mAP', '--smooth', '2'])
    assert Image.open(out).size == result['size'] == (960, 360)
    assert 'deform_ext: coco/bbox_mAP 0.300' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='no scalars.json'):
        plot_tool.main([str(tmp_path / 'nowhere'), '--out', out])
    with pytest.raises(SystemExit, match='none of accuracy is in the logs.*loss_cls'):
        plot_tool.main([str(ours), '--out', out, '--losses', 'accuracy', '--metrics'])
    broken = tmp_path / 'broken.json'
    broken.write_text('{"loss": 1, "iter": 1}\n{"loss": \n')
    with pytest.raises(SystemExit, match=r'broken.json:2: not a JSON record'):
        plot_tool.main([str(broken), '--out', out])
