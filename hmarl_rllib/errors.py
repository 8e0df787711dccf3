"""Errors that mean "bad input": the CLI prints their one-line message and exits with code 2."""


class InputError(Exception):
    """Bad user input (config, demand file, checkpoint, flag). The message is one line that
    names the field and the fix."""

    exit_code = 2


class ConfigError(InputError):
    """A scenario or experiment YAML holds a value that is not allowed."""


class DemandFileError(InputError):
    """A demand file (CSV or Parquet) is missing columns or holds bad values."""


class CheckpointError(InputError):
    """A checkpoint path is missing, partial, or from a scenario with different spaces."""
