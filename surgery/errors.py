"""Exceptions with messages a user can act on; the CLI prints them as one line and exits 1."""

from __future__ import annotations


class SurgeryError(Exception):
    """Base class: every error surgery raises on purpose."""


class ModelLoadError(SurgeryError):
    """A model file is missing, unreadable, or not a GraphDef."""


class OutputPathError(SurgeryError):
    """An output path that would overwrite the input or cannot be written."""


class GraphError(SurgeryError):
    """An edit that would leave the graph malformed (dangling input, cycle, unknown node)."""


class TensorFlowMissing(SurgeryError):
    """A command needs TensorFlow and it is not installed."""
