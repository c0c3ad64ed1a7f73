"""deform_ext's registries: children of mmdet's, scope ``deform_ext``.

Under ``default_scope='deform_ext'`` (our configs) a bare name is looked up here
first and then in mmdet's and mmengine's registries. Under mmdet's scope a config
reaches our components with the scoped name ``type='deform_ext.Name'`` after
``custom_imports=dict(imports=['deform_ext'])``.
"""
import copy
from typing import Any, Optional

from mmdet import registry as mmdet_registry
from mmengine.registry import DefaultScope, Registry

SCOPE = 'deform_ext'


def _child(parent: Registry, *locations: str) -> Registry:
    """A registry named like ``parent`` under our scope.

    On first use it imports ``locations`` and the parent's own locations: a child
    looks names up in its parent's table without triggering the parent's lazy import,
    so mmdet's modules must be imported for bare mmdet names to resolve here.
    """
    return Registry(parent.name, parent=parent, scope=SCOPE,
                    locations=[*parent._locations, *locations])


RUNNERS = _child(mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmdet_registry.LOOPS, 'deform_ext.engine.runner')
HOOKS = _child(mmdet_registry.HOOKS, 'deform_ext.engine.hooks')
DATASETS = _child(mmdet_registry.DATASETS, 'deform_ext.datasets')
DATA_SAMPLERS = _child(mmdet_registry.DATA_SAMPLERS, 'deform_ext.engine.runner')
TRANSFORMS = _child(mmdet_registry.TRANSFORMS, 'deform_ext.datasets.transforms')
MODELS = _child(mmdet_registry.MODELS, 'deform_ext.models')
MODEL_WRAPPERS = _child(mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmdet_registry.OPTIM_WRAPPERS, 'deform_ext.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child(mmdet_registry.METRICS)
EVALUATOR = _child(mmdet_registry.EVALUATOR)
TASK_UTILS = _child(mmdet_registry.TASK_UTILS)
VISUALIZERS = _child(mmdet_registry.VISUALIZERS)
VISBACKENDS = _child(mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmdet_registry.LOG_PROCESSORS)


def build_in_scope(registry: Registry, cfg: dict, *, default_type=None,
                   default_args: Optional[dict] = None) -> Any:
    """Build ``cfg`` from ``registry`` with ``deform_ext`` as the default scope.

    A bare string ``type`` then resolves in our registry and, through it, in mmdet's
    and mmengine's, whatever the caller's default scope (under mmdet's, a bare name
    of ours would not be found). ``default_type`` (a name or a class) is used when
    ``cfg`` has no ``type``; ``default_args`` fill keys that ``cfg`` lacks. ``cfg``
    is deep-copied, so the built object never shares or changes the caller's dicts.
    """
    cfg = copy.deepcopy(dict(cfg))
    if default_type is not None:
        cfg.setdefault('type', default_type)
    with DefaultScope.overwrite_default_scope(SCOPE):
        return registry.build(cfg, default_args=default_args)


def register_all_modules() -> None:
    """Import every module that registers components, so that they are found
    even before a registry's lazy ``locations`` import has run."""
    import deform_ext.datasets  # noqa: F401
    import deform_ext.engine  # noqa: F401
    import deform_ext.models  # noqa: F401
