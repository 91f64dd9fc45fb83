"""Errors a user can cause. The CLI turns each into one sentence and exit code 2."""


class NacvaeError(Exception):
    """Base class for user-facing errors: the message is one complete sentence."""


class DataError(NacvaeError):
    """Missing, corrupt or unsupported data."""


class ConfigError(NacvaeError):
    """An option value or combination of options that cannot work."""


class CheckpointError(NacvaeError):
    """A checkpoint or run folder that is missing, corrupt or does not match."""


class TrainingError(NacvaeError):
    """Training cannot go on (for example a non-finite loss)."""


class StorageError(NacvaeError):
    """A file cannot be written: the disk is full, or the folder is not writable."""

    errno: int | None = None  # the refused write's OSError.errno


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, so that it stops as for Ctrl-C: the run's
    status becomes "interrupted" and the command exits with 143 (128 + SIGTERM)."""
