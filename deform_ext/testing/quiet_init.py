"""``model.init_weights()`` without mmengine's log line per parameter."""
import logging

from torch import nn


def init_weights_quietly(model: nn.Module) -> None:
    """Initialise ``model`` as training does (a freshly built mmdet detector still holds
    uninitialised tensors such as ``level_embed``), with mmengine's logger at WARNING."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
