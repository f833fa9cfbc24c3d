"""Errors that mean the user gave bad input; the CLI prints them as one line and exits non-zero."""


class GenaugError(Exception):
    """Base class of user-facing errors."""


class DatasetError(GenaugError, ValueError):
    """The dataset cannot be read or does not fit the request."""


class CacheError(GenaugError, ValueError):
    """A synthetic cache cannot be opened or written."""


class ConfigError(GenaugError, ValueError):
    """An option or configuration file is invalid."""


class OutputError(GenaugError, OSError):
    """An output file or folder cannot be written."""
