"""Persona versions and their persistence.

A persona is the per-user system prompt. Every version is kept as its own JSON file,
``<folder>/<hash of user id>/v<version>.json``; the current persona is the highest version.
Versions are written create-if-absent and atomically, so a crash leaves either the old set of
versions or the old set plus one complete new file, and rollback is a new version, not a delete.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from personaagent._files import read_model, user_dirname, write_new
from personaagent.errors import PersonaConflict, PersonaTooLong, UnknownUser, UnreadableFile, command_hint
from personaagent.records import Persona, PersonaProvenance, Profile, validate_user_id

__all__ = [
    "PersonaBook",
    "seed_persona_text",
    "place_fact_lines",
    "persona_diff",
    "persona_length_problem",
    "GENERIC_PERSONA",
    "MAX_PERSONA_CHARS",
]

logger = logging.getLogger(__name__)

#: Only the names PersonaBook writes: "v01.json" would be counted as version 1 and read as v1.json.
_VERSION_FILE = re.compile(r"^v([1-9]\d*)\.json$")

#: The instructions used when personalization is switched off (the "w/o persona" ablation).
GENERIC_PERSONA = "You are a helpful assistant."

#: The one length budget of a persona, however it is made (seed, alignment edit, manual save,
#: rollback): every version is saved through PersonaBook.add, which enforces it, and
#: PersonaBook.current checks it again (a file edited by hand). The persona is the system prompt
#: of every answer, and a small local model's whole context is 2k tokens.
MAX_PERSONA_CHARS = 2000

_SEED_INTRO = "You are a personal assistant. You answer the way this user would, following their preferences."
_SEED_PROFILE_LEAD = "\nWhat is known about the user: "


def persona_length_problem(text: str) -> str | None:
    """Why ``text`` is over the persona budget, or None if it fits (measured stripped)."""
    size = len(text.strip())
    if size > MAX_PERSONA_CHARS:
        return f"the persona is {size:,} characters; the limit is {MAX_PERSONA_CHARS:,}"
    return None


def _check_text(user_id: str, text: str) -> None:
    # What every saved persona version must be: not empty, within the one budget.
    if not text.strip():
        raise ValueError("a persona must not be empty")
    problem = persona_length_problem(text)
    if problem is not None:
        raise PersonaTooLong(f"user {user_id!r}: {problem}; shorten it")


def _fit(text: str, room: int) -> str:
    # Cut at the last sentence end that fits (keeping at least half the room), else at a word.
    if len(text) <= room:
        return text
    head = text[:room]
    ends = [head.rfind(mark) for mark in (". ", "! ", "? ", ".\n")]
    end = max(ends)
    if end >= room // 2:
        return head[: end + 1]
    return head[: room - 1].rsplit(None, 1)[0].rstrip() + "…"


def place_fact_lines(text: str, facts: Sequence[str]) -> str:
    """``text`` with the computed ``facts`` lines (``history_facts``) after its opening line.

    The one layout of a persona's facts, for the seed and for every alignment edit, which
    rewrites only the other lines.
    """
    if not facts:
        return text.strip()
    opening, _, rest = text.strip().partition("\n")
    return "\n".join([opening, *facts, *([rest] if rest else [])])


def seed_persona_text(profile: Profile | None) -> str:
    """The first persona of a user: a generic assistant prompt, the facts computed from their
    history, then the LM's summary of them (paper §3.2: the profile seeds the persona).

    The seed is held to half of MAX_PERSONA_CHARS, cutting a long summary at a sentence end, so
    an alignment edit can keep all of the seed and still add to it within the one budget (the
    stored profile itself is kept whole).
    """
    facts = profile.facts.strip() if profile is not None else ""
    text = _SEED_INTRO
    if profile is not None and profile.text.strip():
        about = profile.text.strip()
        room = MAX_PERSONA_CHARS // 2 - len(_SEED_INTRO) - len(facts) - 1 - len(_SEED_PROFILE_LEAD)
        fitted = _fit(about, room)
        if fitted != about:
            logger.info("user %r: profile cut from %d to %d characters to fit the persona", profile.user_id,
                        len(about), len(fitted))
        text += f"{_SEED_PROFILE_LEAD}{fitted}"
    return place_fact_lines(text, facts.splitlines())


def persona_diff(before: str, after: str) -> str:
    """A unified word-wrapped diff of two persona texts (what the trace and CLI show)."""
    return "\n".join(
        difflib.unified_diff(
            before.splitlines(), after.splitlines(), fromfile="before", tofile="after", lineterm=""
        )
    )


def _version_name(version: int | None) -> str:
    return "no stored version" if version is None else f"v{version}"


class PersonaBook:
    """Every persona version of every user, in one folder.

    Args:
        folder: where the per-user version files live.

    Examples:
        >>> book = PersonaBook(tmp_path)  # doctest: +SKIP
        >>> v1 = book.add("u1", "You like sports.", PersonaProvenance(source="manual"))  # doctest: +SKIP
        >>> book.current("u1").text  # doctest: +SKIP
        'You like sports.'
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _user_folder(self, user_id: str) -> Path:
        return self.folder / user_dirname(validate_user_id(user_id))

    def _versions(self, user_id: str) -> list[int]:
        folder = self._user_folder(user_id)
        if not folder.is_dir():
            return []
        found = (_VERSION_FILE.match(p.name) for p in folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def _version_path(self, user_id: str, version: int) -> Path:
        return self._user_folder(user_id) / f"v{version}.json"

    def _read(self, user_id: str, version: int) -> Persona:
        path = self._version_path(user_id, version)
        persona = read_model(path, Persona, "persona")
        # The book numbers, compares and rolls back versions by their file names: a file whose
        # user or version (edited by hand) says otherwise would be taken for another version.
        if persona.user_id != user_id:
            mismatch = f'its "user_id" is {persona.user_id!r}, but it is in the folder of user {user_id!r}'
            fix = f'set "user_id" to {json.dumps(user_id, ensure_ascii=False)}'
        elif persona.version != version:
            mismatch = f'its "version" is {persona.version}, but its name is v{version}.json'
            fix = f'set "version" to {version}'
        else:
            return persona
        raise UnreadableFile.of("persona", path, f"{mismatch}; {fix}")

    def current(self, user_id: str) -> Persona | None:
        """The newest persona version of ``user_id``, or None if they have none.

        Raises:
            UnreadableFile: its file cannot be read, or its text is over MAX_PERSONA_CHARS (an
                edit by hand: every version saved here fits). The current persona is the system
                prompt of every answer, which would otherwise fail later, in the model, for the
                length. Older versions stay readable with ``get`` and ``history``.
        """
        versions = self._versions(user_id)
        if not versions:
            return None
        persona = self._read(user_id, versions[-1])
        problem = persona_length_problem(persona.text)
        if problem is None:
            return persona
        fix = 'shorten its "text"'
        if len(versions) > 1:
            rollback = command_hint("persona", "rollback", user_id, "VERSION")
            fix += f", or make an earlier version current with `{rollback}`"
        path = self._version_path(user_id, persona.version)
        raise UnreadableFile.of("persona", path, f"{problem}; {fix}")

    def get(self, user_id: str, version: int) -> Persona:
        """One version; raises UnknownUser if the user or the version does not exist."""
        versions = self._versions(user_id)
        if not versions:
            raise UnknownUser(f"no persona for user {user_id!r}; compile one with `{command_hint('compile', user_id)}`")
        if version not in versions:
            raise UnknownUser(f"user {user_id!r} has no persona version {version}; versions: {versions}")
        return self._read(user_id, version)

    def history(self, user_id: str) -> list[Persona]:
        """All versions of ``user_id``, oldest first."""
        return [self._read(user_id, v) for v in self._versions(user_id)]

    def add(self, user_id: str, text: str, provenance: PersonaProvenance) -> Persona:
        """Save ``text`` as the user's next persona version and return it.

        Concurrent writers never overwrite each other: a version number already taken by another
        writer is retried with the next one.

        Raises:
            ValueError: ``text`` is empty.
            PersonaTooLong: ``text`` is over MAX_PERSONA_CHARS (every way of making a persona
                ends in ``add`` or ``add_if_current``, so the budget is the same for seed, edit,
                manual save and rollback).
        """
        while True:
            try:
                return self.add_if_current(user_id, text, provenance, parent_version=self._latest(user_id))
            except PersonaConflict:
                continue  # another writer took that version number: go on top of theirs

    def add_if_current(
        self, user_id: str, text: str, provenance: PersonaProvenance, *, parent_version: int | None
    ) -> Persona:
        """Save ``text`` as the next version only if ``parent_version`` is still the current one.

        The compare-and-swap for a persona derived from ``parent_version`` (None: from no stored
        version): if another writer saved a version meanwhile, the derived text must not win over
        it unseen.

        Raises:
            ValueError: ``text`` is empty.
            PersonaTooLong: ``text`` is over MAX_PERSONA_CHARS, as in ``add``.
            PersonaConflict: the current version is no longer ``parent_version``; nothing is written.
        """
        _check_text(user_id, text)
        current = self._latest(user_id)
        persona = Persona(
            user_id=user_id,
            version=(parent_version or 0) + 1,
            parent_version=parent_version,
            text=text.strip(),
            provenance=provenance,
        )
        # write_new creates the file only if absent, so of two writers from one parent only one wins.
        if current != parent_version or not write_new(self._version_path(user_id, persona.version), persona):
            raise PersonaConflict(
                f"user {user_id!r}: the persona changed while this one was derived from "
                f"{_version_name(parent_version)} (now {_version_name(self._latest(user_id))}); nothing was "
                "saved. Load the current persona and derive from it again."
            )
        logger.info("user %r: persona v%d saved (%s)", user_id, persona.version, provenance.source)
        return persona

    def _latest(self, user_id: str) -> int | None:
        versions = self._versions(user_id)
        return versions[-1] if versions else None

    def rollback(self, user_id: str, version: int) -> Persona:
        """Make an old version current again, by saving its text as a new version.

        Raises:
            PersonaTooLong: the old version is over today's budget (made before it existed).
        """
        old = self.get(user_id, version)
        problem = persona_length_problem(old.text)
        if problem is not None:
            raise PersonaTooLong(
                f"user {user_id!r}: v{version} cannot be current again: {problem}; roll back to a shorter version"
            )
        return self.add(
            user_id, old.text, PersonaProvenance(source="rollback", note=f"rollback to v{version}")
        )

    def diff(self, user_id: str, from_version: int, to_version: int) -> str:
        """Unified diff between two versions of one user's persona."""
        return persona_diff(self.get(user_id, from_version).text, self.get(user_id, to_version).text)

    def user_ids(self) -> list[str]:
        """Users who have at least one persona version."""
        if not self.folder.is_dir():
            return []
        users = []
        for folder in sorted(self.folder.iterdir()):
            files = sorted(p for p in folder.iterdir() if _VERSION_FILE.match(p.name)) if folder.is_dir() else []
            if files:
                users.append(read_model(files[0], Persona, "persona").user_id)
        return users
