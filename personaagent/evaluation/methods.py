"""The LLM methods compared in the paper, as evaluation Methods, all on one workspace's LM.

Each method prepares a user once (ingest the profile into episodic memory; for persona methods,
seed and align the persona) and then answers that user's queries. The preparation's LM usage is
charged to the user's first query, so per-query cost includes it. Every method works in its own
folder (personas, profiles, traces) but shares the LM, the embedder and the memory store.

| method            | persona          | memory | actions | alignment |
|-------------------|------------------|--------|---------|-----------|
| non-personalized  | generic          | no     | no      | no        |
| RAG               | generic          | top-k  | no      | no        |
| ReAct             | generic          | tool   | ReAct   | no        |
| MemBank           | profile summary  | top-k  | no      | no        |
| PersonaAgent      | yes              | top-k  | yes     | yes       |
| w/o alignment     | seeded only      | top-k  | yes     | no        |
| w/o persona       | generic          | top-k  | yes     | no        |
| w/o memory        | yes              | no     | yes     | yes       |
| w/o action        | yes              | top-k  | no      | yes       |
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import dspy

from personaagent.actions import format_memories, search_memories
from personaagent.agent import PersonaAgent
from personaagent.errors import LM_UNUSABLE_ERRORS, UnknownMethod
from personaagent.evaluation.runner import MethodAnswer
from personaagent.evaluation.tasks import TaskExample, TaskSpec
from personaagent.optimizers import PersonaAlignment
from personaagent.persona import GENERIC_PERSONA
from personaagent.runtime.usage import metered
from personaagent.signatures import response_signature
from personaagent.workspace import Workspace

__all__ = ["LLM_METHODS", "AgentMethod", "ReActMethod", "build_method", "method_slug"]

logger = logging.getLogger(__name__)


class AgentMethod:
    """A PersonaAgent configuration as an evaluation method.

    Args:
        name: the method's name in result tables.
        workspace: this method's own workspace (``Workspace.with_home``).
        spec: the task.
        agent_options: PersonaAgent switches (``use_persona``, ``use_memory``, ``use_actions``, ``k``).
        aligner: the optimizer to align each user's persona with; None skips alignment.
        seed_persona: seed the persona from the user's profile (False keeps the generic one).
    """

    def __init__(
        self,
        name: str,
        workspace: Workspace,
        spec: TaskSpec,
        *,
        agent_options: dict,
        aligner=None,
        seed_persona: bool = True,
    ) -> None:
        self.name = name
        self.workspace = workspace
        self.answer_format = spec.answer_format
        self.agent_options = agent_options
        self.aligner = aligner
        self.seed_persona = seed_persona
        self._agents: dict[str, PersonaAgent] = {}

    def _prepare(self, example: TaskExample) -> PersonaAgent:
        self.workspace.episodic.add(example.profile)
        agent = PersonaAgent(
            example.user_id, workspace=self.workspace, answer_format=self.answer_format, **self.agent_options
        )
        if self.seed_persona:
            agent = agent.seeded()
        if self.aligner is not None:
            agent = self.aligner.compile(agent)  # stores nothing: each method keeps its own files
        return agent

    def predict(self, example: TaskExample) -> MethodAnswer:
        with metered() as meter:
            agent = self._agents.get(example.user_id)
            if agent is None:
                agent = self._agents[example.user_id] = self._prepare(example)
            try:
                answer = agent(example.query).answer
            except LM_UNUSABLE_ERRORS:
                raise  # not a parse failure: no query can be answered
            except Exception as exc:  # an unparseable answer is a parse failure, not a crash
                logger.warning("%s: %s: no answer: %s", self.name, example.example_id, exc)
                answer = ""
        return MethodAnswer(text=str(answer), usage=meter.usage)


class ReActMethod:
    """A ReAct agent (dspy.ReAct) with a generic search tool over the user's history, no persona."""

    def __init__(self, name: str, workspace: Workspace, spec: TaskSpec, *, k: int = 5, max_iters: int = 2) -> None:
        self.name = name
        self.workspace = workspace
        self.answer_format = spec.answer_format
        self.k = k
        self.max_iters = max_iters

    def predict(self, example: TaskExample) -> MethodAnswer:
        workspace, user_id = self.workspace, example.user_id
        workspace.episodic.add(example.profile)

        def search_history(query: str) -> str:
            """Search the user's past interactions."""
            return format_memories(search_memories(workspace.episodic, user_id, query, k=self.k))

        signature = response_signature(self.answer_format).with_instructions(GENERIC_PERSONA)
        react = dspy.ReAct(signature, tools=[search_history], max_iters=self.max_iters)
        with metered() as meter, workspace.lm_context():
            try:
                answer = react(query=example.query, context="(use the tools)").answer
            except LM_UNUSABLE_ERRORS:
                raise
            except Exception as exc:
                logger.warning("%s: %s: no answer: %s", self.name, example.example_id, exc)
                answer = ""
        return MethodAnswer(text=str(answer), usage=meter.usage)


def _aligner(workspace: Workspace, num_recent: int, iterations: int) -> PersonaAlignment:
    return PersonaAlignment(
        num_recent=num_recent, max_iterations=iterations, traces_dir=workspace.settings.traces_dir
    )


MethodFactory = Callable[[Workspace, TaskSpec, int, int], object]

#: Every LLM method by name: ``factory(workspace, spec, num_recent, iterations)``.
LLM_METHODS: dict[str, MethodFactory] = {
    "non-personalized": lambda ws, spec, n, it: AgentMethod(
        "non-personalized", ws, spec, agent_options=dict(use_persona=False, use_memory=False, use_actions=False),
        seed_persona=False,
    ),
    "RAG": lambda ws, spec, n, it: AgentMethod(
        "RAG", ws, spec, agent_options=dict(use_persona=False, use_actions=False), seed_persona=False
    ),
    "ReAct": lambda ws, spec, n, it: ReActMethod("ReAct", ws, spec),
    "MemBank": lambda ws, spec, n, it: AgentMethod("MemBank", ws, spec, agent_options=dict(use_actions=False)),
    "PersonaAgent": lambda ws, spec, n, it: AgentMethod(
        "PersonaAgent", ws, spec, agent_options={}, aligner=_aligner(ws, n, it)
    ),
    "w/o alignment": lambda ws, spec, n, it: AgentMethod("w/o alignment", ws, spec, agent_options={}),
    "w/o persona": lambda ws, spec, n, it: AgentMethod(
        "w/o persona", ws, spec, agent_options=dict(use_persona=False), seed_persona=False
    ),
    "w/o memory": lambda ws, spec, n, it: AgentMethod(
        "w/o memory", ws, spec, agent_options=dict(use_memory=False), aligner=_aligner(ws, n, it)
    ),
    "w/o action": lambda ws, spec, n, it: AgentMethod(
        "w/o action", ws, spec, agent_options=dict(use_actions=False), aligner=_aligner(ws, n, it)
    ),
}


def build_method(name: str, workspace: Workspace, spec: TaskSpec, *, folder: Path, num_recent: int = 3, iterations: int = 1):
    """One LLM method, working in its own subfolder of ``folder``."""
    if name not in LLM_METHODS:
        raise UnknownMethod(f"no method named {name!r}; methods: {', '.join(LLM_METHODS)}")
    return LLM_METHODS[name](workspace.with_home(folder / method_slug(name)), spec, num_recent, iterations)


def method_slug(name: str) -> str:
    """A method's name as a file or folder name ("w/o memory" -> "w-o-memory")."""
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower())

