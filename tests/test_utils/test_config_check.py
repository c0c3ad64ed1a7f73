"""A misspelt top-level key or a missing config file is named in the error."""
import pytest
from mmengine.config import Config

from deform_ext.utils import check_top_level_keys, load_config
from deform_ext.utils.config_check import edit_distance, misspelt_runner_keys


@pytest.mark.parametrize('a, b, distance', [
    ('trian_cfg', 'train_cfg', 1), ('train_cfg', 'train_cfg', 0), ('vla_cfg', 'val_cfg', 1),
    ('optim_wraper', 'optim_wrapper', 1), ('abc', 'xyz', 3), ('', 'ab', 2)])
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance


def test_misspelt_key_is_named_with_its_likely_meaning(tmp_path):
    path = tmp_path / 'typo.py'
    path.write_text("trian_cfg = dict(max_epochs=3)\nval_cfg = dict()\nmy_variable = 3\n")
    with pytest.raises(KeyError, match=r"'trian_cfg' \(did you mean 'train_cfg'\?\)"):
        load_config(str(path))


def test_correct_and_user_keys_pass():
    cfg = Config(dict(train_cfg=dict(), default_hooks=dict(), dataset_type='CocoDataset',
                      custom_imports=dict(imports=[]), lang_model_name='bert', img_scale=(1, 1)))
    check_top_level_keys(cfg)
    assert misspelt_runner_keys(['train_dataloader', 'visualiser', 'lanucher']) == {
        'visualiser': 'visualizer', 'lanucher': 'launcher'}


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='no_such_config.py'):
        load_config(str(tmp_path / 'no_such_config.py'))
