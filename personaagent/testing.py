"""Fakes for testing and benchmarking programs built on personaagent, without a real model.

``ScriptedLM`` is a ``dspy.utils.DummyLM`` whose reply is computed by a function of the request:
which signature is being asked (by its output field) and the system and user text. Tests use it
to make answers depend on the persona, so the alignment gate can be exercised for real.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dspy.utils import DummyLM

__all__ = ["ScriptedLM", "LMRequest"]

_OUTPUT_SECTION = re.compile(r"Your output fields are:\n(.*?)(?:\n[A-Z]|\Z)", re.DOTALL)
_FIELD_NAME = re.compile(r"^\d+\. `(\w+)`", re.MULTILINE)


@dataclass(frozen=True)
class LMRequest:
    """What a ScriptedLM's script sees of one call."""

    output_fields: tuple[str, ...]
    system: str
    user: str

    def asks_for(self, field: str) -> bool:
        return field in self.output_fields


class ScriptedLM(DummyLM):
    """A DummyLM that answers with ``script(request) -> {output field: value}``.

    Args:
        script: called for every LM call with an LMRequest; returns the output fields' values.
            It may raise to simulate a provider failure.

    Examples:
        >>> lm = ScriptedLM(lambda r: {"answer": "SPORTS"} if r.asks_for("answer") else {})  # doctest: +SKIP
    """

    def __init__(self, script: Callable[[LMRequest], dict[str, Any]]) -> None:
        super().__init__([], follow_examples=True)
        self.script = script
        self.requests: list[LMRequest] = []
        self._lock = threading.Lock()

    def _use_example(self, messages: list[dict[str, Any]]) -> str:
        system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
        user = messages[-1]["content"] if messages else ""
        # DSPy's adapters describe the signature in the system message: "Your output fields are: ..."
        section = _OUTPUT_SECTION.search(system)
        outputs = tuple(_FIELD_NAME.findall(section.group(1))) if section else ()
        request = LMRequest(output_fields=outputs, system=system, user=user)
        with self._lock:
            self.requests.append(request)
        return self._format_answer_fields(self.script(request))
