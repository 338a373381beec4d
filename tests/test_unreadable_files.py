"""Stored records that cannot be read back give one line naming the file and why, and stay as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, field_validator

from personaagent._files import read_model, user_dirname
from personaagent.errors import UnreadableFile
from personaagent.jobs import CompileJob, JobQueue
from personaagent.memory.edge import EdgeStore
from personaagent.memory.semantic import SemanticMemory
from personaagent.persona import PersonaBook
from personaagent.records import Persona, PersonaProvenance, Profile

USER = "Amy Russo"

#: (file bytes, what the reason must say): the kinds of damage a stored record meets.
DAMAGED = [
    pytest.param(b"\xff\xfe", "not UTF-8 (byte 0xff at offset 0)", id="utf16-bom"),
    pytest.param(b'{"user_id": "Amy Russo", "text": "caf\xe9"}', "not UTF-8 (byte 0xe9", id="latin1"),
    pytest.param(b"", "invalid JSON (EOF while parsing a value at line 1 column 0)", id="empty"),
    pytest.param(b'{"use', "invalid JSON (EOF while parsing a string at line 1 column 5)", id="truncated"),
    pytest.param(b"[1, 2]", "Input should be an object", id="not-an-object"),
    pytest.param(b'{"user_id": "Amy Russo", "version": 1}', "field text: Field required", id="missing-field"),
]


def _one_line_reason(exc: pytest.ExceptionInfo[UnreadableFile], path: Path, what: str) -> str:
    message = str(exc.value)
    assert "\n" not in message and "pydantic" not in message and "errors.pydantic.dev" not in message
    prefix = f"{what} file {path} is unreadable: "
    assert message.startswith(prefix), message
    return message[len(prefix):]


@pytest.mark.parametrize(("data", "reason"), DAMAGED)
def test_read_model_gives_one_short_line(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "v1.json"
    path.write_bytes(data)
    with pytest.raises(UnreadableFile) as exc:
        read_model(path, Persona, "persona")
    assert reason in _one_line_reason(exc, path, "persona")
    assert path.read_bytes() == data  # left as it was


def test_read_model_counts_further_problems_and_reads_a_missing_or_folder_path(tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(UnreadableFile) as exc:
        read_model(path, Persona, "persona")
    assert _one_line_reason(exc, path, "persona").startswith("field user_id: Field required (and ")
    with pytest.raises(UnreadableFile) as exc:
        read_model(tmp_path / "gone.json", Persona, "persona")
    assert _one_line_reason(exc, tmp_path / "gone.json", "persona") == "No such file or directory"
    with pytest.raises(UnreadableFile) as exc:
        read_model(tmp_path, Persona, "persona")
    assert _one_line_reason(exc, tmp_path, "persona") == "Is a directory"


class _Picky(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def _no(cls, value: str) -> str:
        raise ValueError("first line\nsecond line " + "x" * 400)


def test_a_long_or_multi_line_validator_message_is_cut_to_one_short_line(tmp_path: Path) -> None:
    path = tmp_path / "picky.json"
    path.write_text('{"name": "a"}', encoding="utf-8")
    with pytest.raises(UnreadableFile) as exc:
        read_model(path, _Picky, "picky")
    reason = _one_line_reason(exc, path, "picky")
    assert reason.startswith("field name: first line second line xxx") and reason.endswith("...")
    assert len(reason) == 200


def _persona_file(book: PersonaBook, version: int = 1) -> Path:
    return book.folder / user_dirname(USER) / f"v{version}.json"


@pytest.mark.parametrize(("data", "reason"), DAMAGED)
def test_persona_book_reads_raise_one_line_and_never_overwrite(tmp_path: Path, data: bytes, reason: str) -> None:
    book = PersonaBook(tmp_path)
    book.add(USER, "You like sports a great deal.", PersonaProvenance(source="manual"))
    path = _persona_file(book)
    path.write_bytes(data)
    for read in (lambda: book.current(USER), lambda: book.get(USER, 1), book.user_ids, lambda: book.history(USER)):
        with pytest.raises(UnreadableFile) as exc:
            read()
        assert reason in _one_line_reason(exc, path, "persona")
    # A new version goes beside the damaged one (numbered from the file names), never over it.
    assert book.add(USER, "You like politics.", PersonaProvenance(source="manual")).version == 2
    assert book.current(USER).text == "You like politics."
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["v1.json", "v2.json"]


@pytest.mark.parametrize(("data", "reason"), DAMAGED)
def test_profile_get_raises_one_line_and_keeps_the_file(tmp_path: Path, data: bytes, reason: str) -> None:
    memory = SemanticMemory(tmp_path)
    path = memory._path(USER)
    path.write_bytes(data)
    with pytest.raises(UnreadableFile) as exc:
        memory.get(USER)
    assert reason in _one_line_reason(exc, path, "profile")
    with pytest.raises(UnreadableFile):
        memory.needs_refresh(USER, 100)
    assert path.read_bytes() == data


def test_job_get_raises_one_line_and_the_listing_skips_it(tmp_path: Path, make_ws, caplog) -> None:
    jobs = JobQueue(make_ws(lambda request: {}), folder=tmp_path)
    good = CompileJob(job_id="a" * 32, user_id=USER, run_id="r1")
    (tmp_path / f"{good.job_id}.json").write_text(good.model_dump_json(), encoding="utf-8")
    bad = tmp_path / f"{'b' * 32}.json"
    bad.write_bytes(b'{"job_id": "' + b"b" * 32 + b'", "user_id": ')
    with pytest.raises(UnreadableFile) as exc:
        jobs.get("b" * 32)
    assert _one_line_reason(exc, bad, "job").startswith("invalid JSON (")
    assert [job.job_id for job in jobs.jobs()] == [good.job_id]
    assert [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()] == [f"{exc.value}; skipped"]
    assert bad.read_bytes().endswith(b'"user_id": ')


@pytest.mark.parametrize(("data", "reason"), [DAMAGED[0], DAMAGED[3], DAMAGED[5]])
def test_cli_persona_show_prints_one_error_line(invoke, cli_workspace, data: bytes, reason: str) -> None:
    book = cli_workspace.personas
    book.add(USER, "You like sports a great deal.", PersonaProvenance(source="manual"))
    path = _persona_file(book)
    path.write_bytes(data)
    for args in (("persona", "show", USER), ("persona", "history", USER), ("persona", "show", USER, "--version", "1")):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines() == [f"Error: persona file {path} is unreadable: " + result.stderr.split(
            "is unreadable: ", 1)[1].strip()]
        assert reason in result.stderr
    assert path.read_bytes() == data


def test_profile_record_still_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    profile = Profile(user_id=USER, text="Likes sports.", num_interactions=3)
    path.write_text(profile.model_dump_json(), encoding="utf-8")
    assert read_model(path, Profile, "profile") == profile


#: Store settings files (meta.json) that are valid JSON, or not, but no settings object.
DAMAGED_STORE_SETTINGS = [
    pytest.param(b"[]", "Input should be an object", id="list"),
    pytest.param(b"3", "Input should be an object", id="number"),
    pytest.param(b"null", "Input should be an object", id="null"),
    pytest.param(b'"x"', "Input should be an object", id="string"),
    pytest.param(b"{oops", "invalid JSON (key must be a string at line 1 column 2)", id="invalid-json"),
    pytest.param(b'{"schema_version": 1, "dim": 64}', "field embedder: Field required", id="missing-field"),
]


@pytest.mark.parametrize(("data", "reason"), DAMAGED_STORE_SETTINGS)
def test_a_store_settings_file_that_is_no_settings_object_is_one_line_and_kept(
    store_path: Path, hashing_embedder, data: bytes, reason: str
) -> None:
    EdgeStore(store_path, embedder_name=hashing_embedder.name, dim=hashing_embedder.dim).close()
    meta = store_path / EdgeStore.META_FILE
    meta.write_bytes(data)
    with pytest.raises(UnreadableFile) as exc:
        EdgeStore(store_path, embedder_name=hashing_embedder.name, dim=hashing_embedder.dim)
    wanted = f'{{"schema_version": 1, "embedder": "{hashing_embedder.name}", "dim": {hashing_embedder.dim}}}'
    assert _one_line_reason(exc, meta, "memory store settings") == (
        f"{reason}; if the store was built with the embedder now set, write {wanted} into it"
    )
    assert meta.read_bytes() == data
    # The lock was released: once repaired as the message says, the store opens again.
    meta.write_text(wanted, encoding="utf-8")
    EdgeStore(store_path, embedder_name=hashing_embedder.name, dim=hashing_embedder.dim).close()


def test_cli_with_a_store_settings_file_that_is_a_list_prints_one_error_line(
    invoke, cli_workspace, history_file: Path
) -> None:
    assert invoke("ingest", str(history_file)).exit_code == 0
    cli_workspace.close()  # the next command opens the store again, as a new process would
    meta = Path(cli_workspace.settings.store) / EdgeStore.META_FILE
    meta.write_bytes(b"[]")
    result = invoke("ingest", str(history_file))
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: memory store settings file {meta} is unreadable: Input should be an object; ")
    assert meta.read_bytes() == b"[]"


#: Persona files edited by hand into a record that is valid alone but not where it lies.
EDITED_PERSONAS = [
    pytest.param({"version": 5}, 'its "version" is 5, but its name is v1.json; set "version" to 1', id="version"),
    pytest.param({"user_id": "bob"}, f'its "user_id" is \'bob\', but it is in the folder of user {USER!r}; '
                 f'set "user_id" to "{USER}"', id="user"),
    pytest.param({"text": "  \n "}, "field text: a persona must not be blank", id="blank-text"),
]


@pytest.mark.parametrize(("fields", "reason"), EDITED_PERSONAS)
def test_a_persona_file_edited_to_disagree_with_its_place_is_refused_on_every_read(
    tmp_path: Path, fields: dict, reason: str
) -> None:
    book = PersonaBook(tmp_path)
    book.add(USER, "You like sports a great deal.", PersonaProvenance(source="manual"))
    path = _persona_file(book)
    record = Persona.model_validate_json(path.read_bytes()).model_dump(mode="json")
    path.write_text(json.dumps({**record, **fields}), encoding="utf-8")
    data = path.read_bytes()
    for read in (lambda: book.current(USER), lambda: book.get(USER, 1), lambda: book.history(USER)):
        with pytest.raises(UnreadableFile) as exc:
            read()
        assert _one_line_reason(exc, path, "persona") == reason
    assert path.read_bytes() == data


@pytest.mark.parametrize(("fields", "reason"), EDITED_PERSONAS[:1])
def test_cli_ask_with_a_persona_file_of_another_version_prints_one_error_line(
    invoke, cli_workspace, history_file: Path, fields: dict, reason: str
) -> None:
    assert invoke("ingest", str(history_file)).exit_code == 0
    cli_workspace.personas.add("alice", "You like politics.", PersonaProvenance(source="manual"))
    path = cli_workspace.personas._user_folder("alice") / "v1.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **fields}), encoding="utf-8")
    result = invoke("ask", "alice", "Senate vote", "--labels", "politics,sports")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: persona file {path} is unreadable: {reason}"]


def test_only_the_version_file_names_the_book_writes_are_versions(tmp_path: Path) -> None:
    # "v01.json" would have been counted as version 1 and then read as v1.json (or as a second v1).
    book = PersonaBook(tmp_path)
    book.add(USER, "You like sports.", PersonaProvenance(source="manual"))
    folder = _persona_file(book).parent
    for stray in ("v01.json", "v0.json", "v1.json.bak"):
        (folder / stray).write_bytes(_persona_file(book).read_bytes())
    assert [p.version for p in book.history(USER)] == [1]
    assert book.add(USER, "You like politics.", PersonaProvenance(source="manual")).version == 2
