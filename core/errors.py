"""Errors a user can act on. Each carries the exit code the command line answers with.

Kept import-light so the command line can catch them without loading TensorFlow.
"""


class TwinflowError(Exception):
    """An expected failure: the message says what is wrong and what to do; no traceback is shown."""

    exit_code = 1


class ConfigError(TwinflowError, ValueError):
    """A configuration value or file is unusable; the message names which and why."""

    exit_code = 2


class InputDataError(TwinflowError, ValueError):
    """The input data cannot be used as it is; the message names the files or classes."""

    exit_code = 2


class ImageFolderError(InputDataError):
    """The input folder does not have the expected layout or holds bad images; the message names the paths."""


class DataAnomaliesError(TwinflowError, RuntimeError):
    """The data does not match the schema; the message lists each anomaly."""

    exit_code = 3


class DataDriftError(DataAnomaliesError):
    """The new data's distribution moved past a threshold from what the served model was trained on.

    ``report`` is the drift gate's whole report (drift.json: every feature's distance), which the
    gate's failed execution cannot keep as an artifact; the local runner writes it beside the run's report.
    """

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class ModelCardError(TwinflowError, ValueError):
    """A model.json is missing or malformed; the message names the file and the field."""

    exit_code = 2


class TrainingDivergedError(TwinflowError, RuntimeError):
    """Training produced a non-finite loss; no model is written."""

    exit_code = 4


class RunLockedError(TwinflowError, RuntimeError):
    """Another run holds the metadata store or serving folder; the message says who."""

    exit_code = 5


class RollbackError(ConfigError):
    """A rollback has nothing to go back to, or was asked for a version that is not there; the message lists them."""
