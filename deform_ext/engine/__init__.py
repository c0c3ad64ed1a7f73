"""Training-loop components: loops, hooks and optimizer wrappers."""
from . import hooks  # noqa: F401
from . import optim_wrappers  # noqa: F401
from . import runner  # noqa: F401
