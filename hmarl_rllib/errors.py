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


def output_folder(path, flag: str = "--out"):
    """``path`` as a folder that exists and can be written (created if missing), checked before
    any long work; else one :class:`InputError` line naming ``flag``."""
    import os
    from pathlib import Path

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{flag} {out}: a file is in the way; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{flag} {out}: cannot create the folder ({err.strerror or type(err).__name__})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"{flag} {out}: cannot be written; give a writable folder")
    return out
