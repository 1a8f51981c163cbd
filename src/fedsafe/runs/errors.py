"""The errors of a run directory: each one line naming the file or folder, for the CLI to print as it is."""

from __future__ import annotations

__all__ = ["RunDataChanged", "RunDirRefused", "RunFileError", "RunFileMissing", "RunIncomplete", "RunLockedError"]


class RunFileError(ValueError):
    """A file of a run directory is missing, unreadable, of another run, or fails its content check."""


class RunFileMissing(RunFileError, FileNotFoundError):
    """A file the run should have is not there."""


class RunIncomplete(RunFileError):
    """The run stopped before its last round: its final models do not exist yet."""


class RunDataChanged(RunFileError):
    """The data is not the data the run trained on."""


class RunDirRefused(ValueError):
    """A folder that is neither new, empty, nor a fedsafe run: a run is never written into it."""


class RunLockedError(RuntimeError):
    """Another process is writing the run directory."""
