"""``SmallObjectOversampledDataset``: Kisantal et al.'s oversampling, each image that
holds a small object seen ``repeats`` times per epoch.

Each appearance of an image carries ``results['repeat_index']`` (0 for the first),
which :class:`SmallObjectCopyPaste` mixes into its seed, so the copies of an
oversampled image get different pastes (with a plain ``RepeatDataset`` they would
be identical). ``pipeline`` reads and writes the wrapped dataset's, so mmdet's
``PipelineSwitchHook`` switches it as it would on the dataset itself.
"""
import copy
from typing import List, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset

from deform_ext.registry import DATASETS


@DATASETS.register_module()
class SmallObjectOversampledDataset:
    """Repeat each image with an object of area below ``small_area`` ``repeats`` times.

    Args:
        dataset: an mmdet detection dataset (or its config) whose data infos hold
            ``instances`` with ``bbox`` (x1, y1, x2, y2) in original pixels.
        repeats: appearances per epoch of an image with a small object (others: 1).
        small_area: area bound of a small object in original pixels (COCO: 32²),
            of the instance's box (mmdet's data infos keep no mask area).
        max_refetch: other images tried, in index order, when the pipeline drops one.
    """

    def __init__(self, dataset: Union[BaseDataset, dict], repeats: int = 2,
                 small_area: float = 32 ** 2, max_refetch: int = 100):
        if not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f'SmallObjectOversampledDataset: repeats must be an int >= 1, '
                             f'got {repeats!r}')
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.repeats = repeats
        self.small_area = small_area
        self.max_refetch = max_refetch
        self._appearances: List[Tuple[int, int]] = []
        self._small_images: List[int] = []
        self._fully_initialized = False

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    @property
    def pipeline(self):
        return self.dataset.pipeline

    @pipeline.setter
    def pipeline(self, pipeline) -> None:
        self.dataset.pipeline = pipeline

    def full_init(self) -> None:
        """Index the appearances: (dataset index, repeat index), in dataset order."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        for index in range(len(self.dataset)):
            small = self._has_small_object(index)
            if small:
                self._small_images.append(index)
            times = self.repeats if small else 1
            self._appearances.extend((index, repeat) for repeat in range(times))
        self._fully_initialized = True

    def _has_small_object(self, index: int) -> bool:
        boxes = [instance['bbox'] for instance in
                 self.dataset.get_data_info(index).get('instances', [])]
        if not boxes:
            return False
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
        return bool((areas < self.small_area).any())

    @property
    def small_image_count(self) -> int:
        """Images holding a small object (those repeated when ``repeats > 1``)."""
        self.full_init()
        return len(self._small_images)

    def __len__(self) -> int:
        self.full_init()
        return len(self._appearances)

    def get_data_info(self, idx: int) -> dict:
        """The wrapped dataset's data info of appearance ``idx``, with its
        ``repeat_index``."""
        self.full_init()
        index, repeat = self._appearances[idx]
        info = self.dataset.get_data_info(index)
        info['repeat_index'] = repeat
        return info

    def __getitem__(self, idx: int) -> dict:
        for attempt in range(self.max_refetch + 1):
            data = self.dataset.pipeline(self.get_data_info((idx + attempt) % len(self)))
            if data is not None:
                return data
        raise RuntimeError(f'SmallObjectOversampledDataset: the pipeline dropped '
                           f'{self.max_refetch + 1} images in a row from appearance {idx}; '
                           'check the pipeline\'s filters')
