"""Using a trained detector: loading it from a config and a checkpoint with clear
errors, and reading images for it (see ``tools/demo.py``)."""
from .inference import (CheckpointMismatchError, array_test_pipeline, list_images,
                        load_detector, load_state_dict_strictly, read_image)

__all__ = ['CheckpointMismatchError', 'array_test_pipeline', 'list_images', 'load_detector',
           'load_state_dict_strictly', 'read_image']
