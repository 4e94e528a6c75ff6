"""Errors that mean "the input data is wrong", kept import-light so the CLI can catch them."""


class ImageFolderError(ValueError):
    """The input folder does not have the expected layout or holds a bad image; the message names the path."""


class DataAnomaliesError(RuntimeError):
    """The data does not match the schema; the message lists each anomaly."""
