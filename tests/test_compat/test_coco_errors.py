"""An unreadable annotation file is named in the error."""
import pytest
from mmdet.datasets import CocoDataset

import deform_ext  # noqa: F401  installs the fix


@pytest.mark.parametrize('content', ['{"images": [', '{"images": []}', 'not json at all', '[1, 2]'])
def test_corrupt_annotation_file_is_named(tmp_path, content):
    ann_file = tmp_path / 'instances_broken.json'
    ann_file.write_text(content)
    with pytest.raises(ValueError, match='instances_broken.json'):
        CocoDataset(ann_file=str(ann_file), data_prefix=dict(img=''), pipeline=[])


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='instances_missing.json'):
        CocoDataset(ann_file=str(tmp_path / 'instances_missing.json'), pipeline=[])
