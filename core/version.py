"""Ferry's version: the installed distribution's, or ``0.0.0+src`` in a source tree."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("ferry")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0+src"
