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


class RuleSyntaxError(SurgeryError):
    """A rule file that does not parse; the message starts with file:line:col."""


class RuleError(SurgeryError):
    """A rule that parses but is wrong (unknown op/plugin/field, bad type); names file:line:col."""


class RewriteRefused(SurgeryError):
    """A rewrite that would leave a dangling input, a cycle, or delete a tensor still in use."""


class UsageError(SurgeryError):
    """A command-line value that cannot be used (`--set` of an unknown param); exit status 2."""
