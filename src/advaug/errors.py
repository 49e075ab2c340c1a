"""The project's error types.

Every error that a user can cause carries a one-line message that names the problem and the fix.
The CLI prints that line (no traceback unless ``--debug``) and exits with the error's ``exit_code``:
2 for usage errors (bad config or arguments), 1 for runtime failures.
"""

from __future__ import annotations


class AdvaugError(Exception):
    """Base class of every error advaug raises on purpose."""

    exit_code = 1


class ConfigError(AdvaugError):
    """A config value, override or CLI argument is invalid (usage error)."""

    exit_code = 2


class DataError(AdvaugError):
    """A dataset file or folder is missing, malformed or unsafe."""


class DataMissingError(DataError):
    """A dataset's files are not where they were looked for (not: present but damaged)."""


class UnsafePickleError(DataError):
    """A pickle asked for a global that the restricted unpickler does not allow."""


class DownloadError(DataError):
    """A download failed or did not match its checksum."""


class CheckpointError(AdvaugError):
    """A checkpoint is missing, corrupted, or made for another model."""


class NumericalError(AdvaugError):
    """A loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class LockedError(AdvaugError):
    """A run or study folder is in use by another live process."""
