"""Exceptions personaagent raises on purpose. The CLI turns each into a one-line "Error: ..."."""

from __future__ import annotations

import shlex
from typing import Any

from dspy.utils.exceptions import (
    AdapterParseError,
    LMAuthError,
    LMBillingError,
    LMConfigurationError,
    LMTransportError,
    LMUnsupportedModelError,
)

__all__ = [
    "LM_UNUSABLE_ERRORS",
    "command_hint",
    "first_line",
    "PersonaAgentError",
    "ConfigError",
    "ModelNotAvailable",
    "InvalidRecord",
    "UnknownUser",
    "UnknownJob",
    "EmptyHistory",
    "PersonaConflict",
    "StoreError",
    "UnreadableFile",
    "StoreLocked",
    "EmbeddingMismatch",
    "QueryTooLong",
    "PersonaTooLong",
    "UnparseableAnswer",
    "BudgetExhausted",
    "CompileStopped",
    "UnknownTask",
    "UnknownRun",
    "UnknownMethod",
]

#: DSPy's errors that hold for every call of an LM, not for one prompt: no model configured, no
#: key or a wrong one, an unknown model, a server that cannot be reached. Loops that outlive one
#: item's failure (alignment, compiling many users, evaluation) re-raise these: going on would
#: fail every remaining item the same way and bury the one message the user needs under a
#: failure per item (seen: a traceback per user from `compile --all` with a missing API key).
LM_UNUSABLE_ERRORS: tuple[type[Exception], ...] = (
    LMConfigurationError,
    LMAuthError,
    LMBillingError,
    LMUnsupportedModelError,
    LMTransportError,
)


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an error's message (its type name if it has none).

    DSPy's LM errors go on with "To fix: pass api_key= on dspy.LM(...)": advice for Python code,
    not for a command line or a per-user record, which say their own.
    """
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def command_hint(*words: object) -> str:
    """A command line a message tells the user to run, each word shell-quoted.

    ``words`` are the subcommand and its positional arguments (no options):
    ``command_hint("compile", "Amy Russo")`` is ``personaagent compile 'Amy Russo'``, which, pasted
    into a shell, compiles one user, not ``Amy`` and ``Russo``. An argument that starts with ``-``
    (a user id ``--all``) comes after ``--``, so it is not read as an option.
    """
    quoted = ["personaagent"]
    for word in map(str, words):
        if word.startswith("-") and "--" not in quoted:
            quoted.append("--")
        quoted.append(shlex.quote(word))
    return " ".join(quoted)


class PersonaAgentError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class ConfigError(PersonaAgentError, ValueError):
    """A setting has a value personaagent cannot use."""


class ModelNotAvailable(PersonaAgentError):
    """A model file or package the chosen setting needs is not installed."""


class InvalidRecord(PersonaAgentError, ValueError):
    """An input record (interaction, LaMP item) is malformed."""


class UnknownUser(PersonaAgentError, KeyError):
    """No memory or persona exists for this user id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown user"


class UnknownJob(PersonaAgentError, KeyError):
    """No compile job has this id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown job"


class EmptyHistory(PersonaAgentError):
    """The user has no interactions to learn from."""


class PersonaConflict(PersonaAgentError):
    """The user's persona changed since the one being saved was loaded or derived from it."""


class StoreError(PersonaAgentError):
    """The memory store cannot do what was asked."""


class UnreadableFile(PersonaAgentError):
    """A file personaagent stored (persona version, profile, job, store settings) cannot be read back.

    The message is one line, ``<what> file <path> is unreadable: <short reason>`` (``of`` writes
    it); the file is left as it is, so nothing is lost and it can be repaired or removed by hand.
    """

    @classmethod
    def of(cls, what: str, path: object, reason: str) -> UnreadableFile:
        """The error for ``what`` file at ``path`` (e.g. "persona"), saying why it is unreadable."""
        return cls(f"{what} file {path} is unreadable: {reason}")


class StoreLocked(StoreError):
    """Another process holds the embedded store folder."""


class EmbeddingMismatch(StoreError):
    """The store was built with an embedder of another dimension or name."""


class QueryTooLong(PersonaAgentError, ValueError):
    """A query does not fit in the model's context window."""


class PersonaTooLong(PersonaAgentError, ValueError):
    """A persona text is over the one persona length budget (persona.MAX_PERSONA_CHARS)."""


class UnparseableAnswer(PersonaAgentError, AdapterParseError):
    """The LM's answer or tool choice fits the answer format in no accepted form.

    Also a DSPy ``AdapterParseError``, so code written against DSPy catches it too; ``lm_response``
    holds the raw completion and ``str()`` is one line.
    """

    def __init__(self, message: str, *, signature: Any, lm_response: str = "") -> None:
        AdapterParseError.__init__(self, "PersonaAgent", signature, lm_response, message=message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class BudgetExhausted(PersonaAgentError):
    """A per-user LM call or token budget ran out."""


class CompileStopped(PersonaAgentError):
    """A many-user compile stopped because several users in a row failed (e.g. an LM server
    that cannot be reached, which DSPy reports like any server error)."""


class UnknownTask(PersonaAgentError, KeyError):
    """No evaluation task has this name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown task"


class UnknownRun(PersonaAgentError, KeyError):
    """No alignment trace has this run id (or this user in it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown run"


class UnknownMethod(PersonaAgentError, KeyError):
    """No evaluation method has this name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown method"
