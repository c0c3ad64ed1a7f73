"""Patch: errors from unreadable COCO annotation files name the file.

mmdet's COCO wrapper (used by ``CocoDataset`` and ``CocoMetric``) lets a
``json.JSONDecodeError`` or a ``KeyError`` escape with no file name, so a user with
several datasets in a config cannot tell which file is broken; and a file without
an ``images`` or ``categories`` section loads as an empty dataset. We re-raise with
the path and reject those files.
"""
import functools

from mmdet.datasets.api_wrappers import COCO

from .patch import Patch

REQUIRED_SECTIONS = ('images', 'categories')


def _naming_the_file(init):
    @functools.wraps(init)
    def load(self, annotation_file=None):
        try:
            init(self, annotation_file)
        except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as error:
            raise ValueError(
                f'annotation file {annotation_file} is not a valid COCO-format JSON file '
                f'({type(error).__name__}: {error})') from error
        if annotation_file is None:
            return
        if not isinstance(self.dataset, dict):
            raise ValueError(f'annotation file {annotation_file} holds a '
                             f'{type(self.dataset).__name__}, not a COCO-format dict')
        missing = [key for key in REQUIRED_SECTIONS if key not in self.dataset]
        if missing:
            raise ValueError(f'annotation file {annotation_file} has no {missing} section')

    return load


PATCH = Patch('coco_errors', 'mmdet', '3.3.',
              lambda: [(COCO, '__init__', _naming_the_file(COCO.__init__))],
              purpose='naming the broken annotation file in COCO loading errors')
