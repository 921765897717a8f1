"""Ferry: a node agent and the hub it checks in with.

This package holds what every part shares at run time: the exception root,
config loading, logging, the OS folders of an instance, and the ``ferry``
command line. It imports neither ``hub`` nor ``agent`` at module level; only
the command line and the demo, which compose them, do.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ferry")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"
