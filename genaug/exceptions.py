"""Every error and warning class of genaug.

Errors (subclasses of :class:`GenaugError`) mean the user gave bad input or a run cannot go
on; the CLI prints them as one line and exits non-zero. Their messages name Python
parameters in backticks (`` `pixel_check=False` ``); the CLI writes its own flags instead."""


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


class GenaugWarning(UserWarning):
    """Base class of genaug's warnings: something worked, but the result may mislead."""


class ConvergenceWarning(GenaugWarning):
    """Training stopped while the validation loss was still falling: the scores understate
    what the recipe reaches, and differences between recipes may be hidden or reversed."""


class DoubleCorrectionWarning(GenaugWarning):
    """The class imbalance is corrected twice (a balanced loader and class weights)."""


class GenerationError(GenaugError, RuntimeError):
    """Generation cannot go on (e.g. the generator produces noise instead of images)."""


class GateAcceptanceWarning(GenaugWarning):
    """A quality gate rejects almost every generated candidate of a class."""
