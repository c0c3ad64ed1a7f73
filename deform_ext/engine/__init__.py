"""Training-loop components: hooks and optimizer wrappers."""
from . import hooks  # noqa: F401
