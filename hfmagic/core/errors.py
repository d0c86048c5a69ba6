"""The exceptions hfmagic raises.

The core raises these; only the magics and the command line turn them into one-line messages
(an IPython ``UsageError`` or ``hfmagic: ...`` on stderr, exit status 2), never a traceback::

    HFMagicError                    anything hfmagic reports to the user
     +-- UsageProblem               the request itself is wrong (arguments, names, values)
     |    +-- ModelSourceError      no model at that path / name, or nothing a model is made of
     |    +-- OfflineError          the hub is needed but cannot be reached
     |    +-- UnsupportedError      a task, architecture, option or backend hfmagic cannot do
     |    +-- DataError             a dataset that is empty, lacks a column, or has bad values
     +-- BuildError                 a step that should have worked did not (export, build, run)
     +-- BackendUnavailable         a backend or provider is not installed or not usable here

Every message says what is wrong and what to do about it.
"""

from __future__ import annotations


class HFMagicError(Exception):
    """Base class: a problem hfmagic explains in one line."""


class UsageProblem(HFMagicError, ValueError):
    """The request is wrong: fix the arguments and run it again."""


class ModelSourceError(UsageProblem):
    """No model could be found at the given source."""


class OfflineError(UsageProblem):
    """The Hugging Face hub (or another remote) is needed but cannot be reached."""


class UnsupportedError(UsageProblem):
    """A task, architecture, option or backend that hfmagic does not support."""


class DataError(UsageProblem):
    """A dataset hfmagic cannot use as given."""


class BuildError(HFMagicError, RuntimeError):
    """A build, export or run step failed for a reason outside the request."""


class BackendUnavailable(HFMagicError, RuntimeError):
    """A backend or execution provider is not installed or not usable on this machine."""
