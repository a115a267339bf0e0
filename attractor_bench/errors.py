"""The one domain exception family. Logic modules raise these; only `cli.py` turns them into
printed messages and exit codes (2 for usage/configuration errors, 1 for the rest)."""


class AttractorBenchError(Exception):
    """Base class: a problem a user can fix, with a message that says what and how."""

    exit_code = 1


class ConfigError(AttractorBenchError, ValueError):
    """A suite file or an option is wrong (unknown key, bad type, eps out of range, ...)."""

    exit_code = 2


class DataError(AttractorBenchError):
    """A dataset is missing from the data root and could not be downloaded."""


class CheckpointError(AttractorBenchError):
    """A cached model is corrupt or does not match the architecture."""


class PluginFailure(AttractorBenchError):
    """Outside code (a model builder, defence or attack of a suite) raised during a run; the message
    names the suite key, the plugin and the exception (the cells finished so far stay stored)."""
