"""Errors the user can act on: each message names the problem and the fix."""


class UnlearnkitError(Exception):
    """Base class for every error unlearnkit raises on bad input or state."""


class DataError(UnlearnkitError, ValueError):
    """A data file or split is missing, malformed or inconsistent."""


class ModelLoadError(UnlearnkitError, FileNotFoundError):
    """A model path or package cannot be found or loaded."""


class ConfigError(UnlearnkitError, ValueError):
    """A method, option or hyperparameter is unknown or out of range."""


class TrainingDivergedError(UnlearnkitError, RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class OutputError(UnlearnkitError, OSError):
    """An output cannot be written: no space, a read-only or unwritable place, a directory where a file goes."""
