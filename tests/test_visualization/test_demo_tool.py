"""tools/demo.py: a folder of images to pictures with boxes; clear errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from deform_ext.apis import CheckpointMismatchError, load_detector


@pytest.fixture(scope='module')
def demo(tool):
    return tool('tools/demo.py')


def test_folder_of_images(demo, tiny_detector, image_dir, tmp_path, capsys):
    config, checkpoint, _ = tiny_detector
    out_dir = tmp_path / 'out'
    drawn = demo.main([str(image_dir), config, checkpoint, '--out-dir', str(out_dir),
                       '--score-thr', '0'])
    images = sorted(image_dir.iterdir())
    assert sorted(drawn) == [str(p) for p in images]
    assert all(count > 0 for count in drawn.values())  # score 0 keeps every detection
    for path in images:
        written = Image.open(out_dir / (path.stem + '.png'))
        assert written.format == 'PNG' and written.size == Image.open(path).size
        # boxes were drawn: the picture differs from the image
        assert np.abs(np.asarray(written.convert('RGB'), float)
                      - np.asarray(Image.open(path).convert('RGB'), float)).max() > 50
    printed = capsys.readouterr().out
    assert printed.count('boxes >= 0') == len(images)


def test_unreadable_images(demo, tiny_detector, image_dir, tmp_path, capsys):
    config, checkpoint, _ = tiny_detector
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'not a png')
    with pytest.raises(SystemExit, match=f'image {bad} cannot be read'):
        demo.main([str(bad), config, checkpoint, '--out-dir', str(tmp_path / 'a')])
    folder = tmp_path / 'mixed'
    folder.mkdir()
    good = sorted(image_dir.iterdir())[0]
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / 'broken.jpg').write_bytes(b'\x89PNG junk')
    with pytest.raises(SystemExit, match='1 of 2 images could not be read: .*broken.jpg'):
        demo.main([str(folder), config, checkpoint, '--out-dir', str(tmp_path / 'b')])
    assert (tmp_path / 'b' / (good.stem + '.png')).is_file()  # the good one is written
    assert 'skipped: image' in capsys.readouterr().err
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SystemExit, match=f'folder {empty} holds no images'):
        demo.main([str(empty), config, checkpoint])


def test_missing_files(demo, tiny_detector, image_dir, tmp_path):
    config, checkpoint, _ = tiny_detector
    missing = tmp_path / 'epoch_12.pth'
    with pytest.raises(SystemExit, match=f'checkpoint {missing} does not exist'):
        demo.main([str(image_dir), config, str(missing)])
    with pytest.raises(SystemExit, match='nowhere.py'):
        demo.main([str(image_dir), str(tmp_path / 'nowhere.py'), checkpoint])
    with pytest.raises(SystemExit, match='neither an image file nor a folder'):
        demo.main([str(tmp_path / 'no_images'), config, checkpoint])


def test_config_checkpoint_mismatch(demo, tiny_detector, image_dir, tmp_path):
    config, checkpoint, cfg = tiny_detector
    from deform_ext.testing import build_model
    other = tmp_path / 'other.pth'
    wider = dict(cfg.model.to_dict(), bbox_head=dict(cfg.model.bbox_head, num_classes=9))
    torch.save({'state_dict': build_model(wider).state_dict()}, other)
    with pytest.raises(SystemExit, match=(
            rf'checkpoint {other} does not fit the model of {config}: .*tensors differ in '
            r'shape \(first: bbox_head.cls_branches.0.weight \(9, 32\) in the checkpoint vs '
            r'\(\d+, 32\) in the model')):
        demo.main([str(image_dir), config, str(other)])
    state = torch.load(checkpoint)['state_dict']
    del state['decoder.layers.1.cross_attn.value_proj.weight']
    state['module.extra.weight'] = torch.zeros(1)
    torch.save({'state_dict': state}, other)
    with pytest.raises(CheckpointMismatchError, match=(
            r'1 keys of the model are missing from it \(first: decoder.layers.1.cross_attn.'
            r'value_proj.weight\); 1 of its keys are not in the model \(first: extra.weight\)')):
        load_detector(config, str(other))
