"""Ferry: a node agent and the hub it checks in with.

This package is the top layer: the ``ferry`` command line, the instances it starts and the
demo, which compose the hub, the agent and the service installers. Nothing below imports it;
what every part shares (errors, config loading, logging, paths) is in ``core``.
"""

from core.version import VERSION as __version__

__all__ = ["__version__"]
