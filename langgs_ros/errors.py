"""Errors raised by langgs_ros. Every user-facing failure is a :class:`LangGSError`.

The CLI prints the message of a :class:`LangGSError` and exits non-zero without a traceback;
anything else escaping is a bug.
"""

from __future__ import annotations

__all__ = [
    "LangGSError",
    "InputError",
    "BagError",
    "MapFileError",
    "BackendUnavailableError",
    "ConfigError",
    "OutputError",
]


class LangGSError(Exception):
    """Base class of all expected, user-facing errors."""


class InputError(LangGSError):
    """Input data that cannot be used: unknown encoding, missing topic, NaN pose, ..."""


class BagError(InputError):
    """A bag that cannot be opened or read (missing, corrupt, wrong storage)."""


class MapFileError(LangGSError):
    """A map directory that is missing, truncated, corrupt or of an unknown version."""


class BackendUnavailableError(LangGSError):
    """A semantic or rendering backend whose dependencies or weights are not available."""


class ConfigError(LangGSError):
    """An invalid configuration file or value."""


class OutputError(LangGSError):
    """An output path that cannot be written: a file where a directory is expected, a read-only or
    full file system, a missing parent directory."""
