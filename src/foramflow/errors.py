"""The one base class of every error foramflow raises on purpose.

A :class:`ForamflowError` is a problem with the user's input or environment (a bad file,
a missing column, a folder that cannot be written); its message names the file and the
problem, and the command line prints it as one line. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class ForamflowError(Exception):
    """A problem the user can fix; the message says which file and what is wrong."""


class OutputError(ForamflowError):
    """An output file or folder cannot be created or written."""


class InvalidInput(ForamflowError, ValueError):
    """An input file or value that cannot be used (a ValueError too, for library callers)."""


class InputNotFound(ForamflowError, FileNotFoundError):
    """A named input file or folder that does not exist or is not what it should be."""


class OutputExists(OutputError, FileExistsError):
    """An output that would replace an existing file or folder."""
