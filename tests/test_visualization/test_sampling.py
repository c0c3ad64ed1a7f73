"""The sampling recorder and picture: exact records, PNGs of the stated size."""
import numpy as np
import pytest
import torch
from PIL import Image

from deform_ext.apis import load_detector
from deform_ext.models.layers.ms_deform_attn import MSDeformAttn
from deform_ext.visualization import (collect_sampling, default_detections, draw_sampling,
                                      figure_size, level_strides, record_sampling)


@pytest.fixture(scope='module')
def model(tiny_detector):
    config, checkpoint, _ = tiny_detector
    return load_detector(config, checkpoint)


@pytest.fixture(scope='module')
def record(model, image_dir):
    return collect_sampling(model, str(sorted(image_dir.iterdir())[0]), encoder_layer=-1)


def assert_png(path, size):
    image = Image.open(path)
    assert image.format == 'PNG' and image.size == size
    pixels = np.asarray(image.convert('RGB'))
    assert pixels.std() > 10, 'a blank picture'


def test_recording_changes_nothing_and_switches_off():
    torch.manual_seed(0)
    attn = MSDeformAttn(embed_dims=32, num_heads=4, num_levels=2, num_points=3,
                        batch_first=True).eval()
    shapes = torch.tensor([[6, 5], [3, 3]])
    start = torch.tensor([0, 30])
    query, value = torch.randn(2, 7, 32), torch.randn(2, 39, 32)
    for reference in (torch.rand(2, 7, 2, 2), torch.rand(2, 7, 2, 4)):
        kwargs = dict(query=query, value=value, reference_points=reference,
                      spatial_shapes=shapes, level_start_index=start)
        plain = attn(**kwargs)
        with record_sampling([attn]):
            recorded = attn(**kwargs)
        assert torch.equal(plain, recorded) and attn.record_sampling is False
        entry = attn.recorded_sampling[-1]
        assert entry['sampling_locations'].shape == (2, 7, 4, 2, 3, 2)
        assert torch.allclose(entry['attention_weights'].sum((-1, -2)), torch.ones(2, 7, 4))
        assert torch.equal(entry['reference_points'], reference)
        # the op on the recorded locations and weights gives the module's attention
        from deform_ext.ops import ms_deform_attn
        out = ms_deform_attn(attn.value_proj(value).view(2, 39, 4, 8), shapes, start,
                             entry['sampling_locations'], entry['attention_weights'])
        assert torch.allclose(attn.output_proj(out), recorded - query, atol=1e-6)
        attn(**kwargs)
        assert len(attn.recorded_sampling) == 1  # off again: nothing more recorded


def test_level_strides():
    shapes = np.array([[13, 16], [7, 8], [4, 4]])
    assert level_strides(shapes, (100, 128)).tolist() == [8, 16, 32]


def test_record_matches_the_predictions(model, record, image_dir):
    from mmdet.apis import inference_detector
    result = inference_detector(model, str(sorted(image_dir.iterdir())[0]))
    assert np.allclose(record.boxes, result.pred_instances.bboxes.numpy())
    assert record.image.shape[:2] == result.ori_shape
    head_outputs = []
    hook = model.bbox_head.register_forward_hook(lambda m, a, out: head_outputs.append(out))
    inference_detector(model, str(sorted(image_dir.iterdir())[0]))
    hook.remove()
    scores = head_outputs[0][0][-1][0].sigmoid()  # last layer's (queries, classes)
    assert np.allclose(scores[record.queries, record.labels].numpy(), record.scores)
    queries, heads, levels, points, _ = record.decoder.locations.shape
    assert record.decoder.references.shape == (queries, levels, 4)  # refined boxes
    assert np.allclose(record.decoder.weights.sum((-1, -2)), 1, atol=1e-5)
    assert record.encoder.name == 'encoder.layers.1.self_attn'
    assert record.encoder.references.shape[-1] == 2


@pytest.mark.parametrize('source, per, extent', [('decoder', 'level', 'points'),
                                                 ('decoder', 'head', 'image'),
                                                 ('encoder', 'level', 'points')])
def test_draw_writes_a_png_of_the_stated_size(record, tmp_path, source, per, extent):
    out = str(tmp_path / f'{source}_{per}.png')
    size = draw_sampling(record, out, source=source, per=per, boxes=[0, 1], extent=extent,
                         panel_size=200)
    heads, levels = record.decoder.weights.shape[1:3]
    assert size == figure_size(2, levels if per == 'level' else heads, 200)
    assert_png(out, size)


def test_draw_errors(record, tmp_path):
    with pytest.raises(ValueError, match='detection 99 does not exist'):
        draw_sampling(record, str(tmp_path / 'x.png'), boxes=[99])
    with pytest.raises(ValueError, match='query 500 does not exist'):
        draw_sampling(record, str(tmp_path / 'x.png'), queries=[500])
    with pytest.raises(ValueError, match="per must be 'level' or 'head'"):
        draw_sampling(record, str(tmp_path / 'x.png'), per='point')


def test_default_rows_are_distinct_queries(record):
    rows = default_detections(record)
    assert rows[0] == 0 and len(set(record.queries[rows].tolist())) == len(rows) == 3


def test_tool(tool, tiny_detector, image_dir, tmp_path, capsys):
    visualize_sampling = tool('tools/analysis/visualize_sampling.py')
    config, checkpoint, cfg = tiny_detector
    image = str(sorted(image_dir.iterdir())[1])
    out = str(tmp_path / 'sampling.png')
    written = visualize_sampling.main([image, config, checkpoint, '--out', out,
                                       '--boxes', '0', '1', '2', '--encoder-layer', '0',
                                       '--panel-size', '160'])
    levels = cfg.model.num_feature_levels
    assert written == {out: figure_size(3, levels, 160),
                       str(tmp_path / 'sampling_encoder0.png'): figure_size(3, levels, 160)}
    for path, size in written.items():
        assert_png(path, size)
    assert 'detection 0: query' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='encoder layer 7 does not exist'):
        visualize_sampling.main([image, config, checkpoint, '--out', out,
                                 '--encoder-layer', '7'])
    with pytest.raises(SystemExit, match='image .*missing.png does not exist'):
        visualize_sampling.main([str(tmp_path / 'missing.png'), config, checkpoint,
                                 '--out', out])
