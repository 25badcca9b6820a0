"""User-facing errors.

Everything the CLI can report as a one-line message derives from :class:`HTRError`;
anything else reaching the top level is a bug and keeps its traceback.
"""

from __future__ import annotations


class HTRError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


class DataError(HTRError):
    """Bad or missing input data (images, XML, records, splits)."""


class ConfigError(HTRError):
    """A configuration file or value that cannot be used."""


class ModelError(HTRError):
    """A model file or export that is missing, corrupt or incompatible."""
