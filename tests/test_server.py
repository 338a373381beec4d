"""The HTTP API, through the real server (uvicorn on a loopback port) and an HTTP client."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest
from server_helpers import KEYS, LABELS, history, served, wait_for_job, workspace

from personaagent.records import PersonaProvenance
from personaagent.testing import ScriptedLM

#: Every /v1 route, with a body that would be valid (the user and ids need not exist).
V1_ROUTES = [
    ("POST", "/v1/users/alice/interactions", {"interactions": [{"query": "q", "response": "r"}]}),
    ("POST", "/v1/users/alice/ask", {"query": "q"}),
    ("GET", "/v1/users/alice/persona", None),
    ("GET", "/v1/users/alice/persona/versions", None),
    ("POST", "/v1/users/alice/persona/rollback", {"version": 1}),
    ("POST", "/v1/users/alice/compile", {}),
    ("GET", "/v1/jobs/" + "0" * 32, None),
    ("GET", "/v1/runs/run/users/alice/trace", None),
    ("GET", "/v1/runs/run/users/alice/report", None),
]


@pytest.fixture
def ws(tmp_path):
    return workspace(tmp_path / "home")


@pytest.fixture
def client(ws):
    with served(ws) as client:
        yield client


def add(client: httpx.Client, user_id: str, records: list) -> httpx.Response:
    return client.post(f"/v1/users/{quote(user_id, safe='')}/interactions", json={"interactions": records})


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    return error


# --- open routes and the schema --------------------------------------------------------------------


def test_health_docs_and_schema_need_no_key(ws):
    with served(ws) as client:
        anonymous = httpx.Client(base_url=str(client.base_url))
        assert anonymous.get("/healthz").json()["status"] == "ok"
        docs = anonymous.get("/docs").text
        assert "swagger-ui-bundle.js" in docs and "cdn." not in docs  # served offline
        for asset in re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', docs):
            assert anonymous.get(asset).status_code == 200, asset
        paths = anonymous.get("/openapi.json").json()["paths"]
    for method, path, _ in V1_ROUTES:
        template = (path.replace("/alice/", "/{user_id}/").replace("/run/", "/{run_id}/")
                    .replace("0" * 32, "{job_id}"))
        assert method.lower() in paths[template], template


# --- authentication --------------------------------------------------------------------------------


def test_every_v1_route_refuses_a_missing_or_wrong_key(client):
    client.headers.pop("Authorization")
    for method, path, body in V1_ROUTES:
        for authorization in (None, "Bearer wrong-key", f"Basic {KEYS[0]}", "Bearer", f"Bearer {KEYS[0]}x"):
            headers = {"Authorization": authorization} if authorization else {}
            response = client.request(method, path, json=body, headers=headers)
            error = assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in error["message"]
            assert not any(key in response.text for key in KEYS)


def test_every_configured_key_is_accepted(client):
    for key in KEYS:
        response = client.get("/v1/users/nobody/persona", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 404  # authenticated; the user just does not exist


# --- interactions ----------------------------------------------------------------------------------


def test_add_interactions_keeps_valid_records_and_reports_bad_ones_by_index(client, ws):
    good = history("alice", "ALICE")[:3]
    records = [good[0], {"query": "no response"}, good[1], "not an object", good[2],
               {**good[0], "user_id": "bob"}, {"query": "bad time", "response": "x", "timestamp": "yesterday"}]
    body = add(client, "alice", records).json()
    assert body["added"] == 3 and body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == [1, 3, 5, 6]
    assert "response" in body["rejected"][0]["error"]
    assert "does not match the user in the path" in body["rejected"][2]["error"]
    assert [m is None for m in body["memory_ids"]] == [False, True, False, True, False, True, True]
    stored = {m.memory_id for m in ws.episodic.history("alice")}
    assert stored == {m for m in body["memory_ids"] if m}
    assert ws.episodic.count("bob") == 0

    again = add(client, "alice", good).json()
    assert (again["added"], again["duplicates"], again["rejected"]) == (0, 3, [])


def test_add_interactions_with_no_valid_record_is_422_with_every_problem(client, ws):
    error = assert_error(add(client, "alice", [{"query": "q"}, 7]), 422, "invalid_request")
    assert "[0]" in error["message"] and "[1]" in error["message"]
    assert ws.episodic.count("alice") == 0


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, ["body", "interactions"]),
        ({"interactions": []}, ["body", "interactions"]),
        ({"interactions": "q"}, ["body", "interactions"]),
        ({"interactions": [{"query": "q", "response": "r"}], "extra": 1}, ["body", "extra"]),
    ],
)
def test_a_malformed_interactions_body_is_422_naming_the_field(client, body, field):
    error = assert_error(client.post("/v1/users/alice/interactions", json=body), 422, "invalid_request")
    assert [f["loc"] for f in error["fields"]][0] == field


def test_a_body_that_is_not_json_is_422(client):
    response = client.post("/v1/users/alice/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_request")


def test_user_ids_with_slashes_spaces_and_unicode_are_addressable(client, ws):
    user_id = "team/ユーザー 1"
    assert add(client, user_id, history(user_id, "ODD")).json()["added"] == 5
    answer = client.post(f"/v1/users/{quote(user_id, safe='')}/ask", json={"query": "ODD match report 9"}).json()
    assert answer["user_id"] == user_id
    assert ws.episodic.count(user_id) == 5 and ws.episodic.count("team") == 0


# --- ask -------------------------------------------------------------------------------------------


def test_ask_answers_with_tools_retrieved_memory_ids_and_usage(client):
    ids = add(client, "alice", history("alice", "ALICE")).json()["memory_ids"]
    response = client.post("/v1/users/alice/ask",
                           json={"query": "ALICE match report 9", "answer_format": LABELS.model_dump()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "POLITICS"  # the seed persona does not "love SPORTS"
    assert body["persona_version"] is None
    assert [call["name"] for call in body["used_tools"]] == ["memory_search"]
    assert body["retrieved"] and {m["memory_id"] for m in body["retrieved"]} <= set(ids)
    assert body["usage"]["calls"] == 2  # the tool choice and the answer
    assert "lm;dur=" in response.headers["server-timing"]


def test_ask_for_an_unknown_user_is_404(client):
    error = assert_error(client.post("/v1/users/nobody/ask", json={"query": "hi"}), 404, "not_found")
    assert "nobody" in error["message"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, ["body", "query"]),
        ({"query": "   "}, ["body", "query"]),
        ({"query": 3}, ["body", "query"]),
        ({"query": "q", "answer_format": {"kind": "label", "labels": ["only one"]}}, ["body", "answer_format"]),
        ({"query": "q", "answer_format": {"kind": "label", "labels": ["a", "A"]}}, ["body", "answer_format"]),
        ({"query": "q", "answer_format": {"kind": "rating", "min_rating": 5, "max_rating": 1}},
         ["body", "answer_format"]),
        ({"query": "q", "user_id": "bob"}, ["body", "user_id"]),
    ],
)
def test_a_malformed_ask_is_422_naming_the_field(client, body, field):
    add(client, "alice", history("alice", "ALICE"))
    error = assert_error(client.post("/v1/users/alice/ask", json=body), 422, "invalid_request")
    assert error["fields"][0]["loc"][:2] == field


def test_an_unexpected_failure_is_a_json_500_with_a_request_id_and_no_traceback(client, ws, monkeypatch):
    add(client, "alice", history("alice", "ALICE"))

    def broken(user_id):
        raise ZeroDivisionError("internal detail that must stay in the log")

    monkeypatch.setattr(ws.personas, "current", broken)
    response = client.post("/v1/users/alice/ask", json={"query": "q"}, headers={"X-Request-ID": "req-42"})
    error = assert_error(response, 500, "internal_error")
    assert error["request_id"] == "req-42" and "req-42" in error["message"]
    assert "Traceback" not in response.text and "internal detail" not in response.text


@pytest.mark.parametrize("reply", [RuntimeError("provider detail"), {"answer": "BANANA"}])
def test_a_failing_or_unparseable_model_is_a_502(tmp_path, reply):
    def script(request):
        if isinstance(reply, Exception):
            raise reply
        return reply if request.asks_for("answer") else {"tool_name": "finish", "tool_input": ""}

    with served(workspace(tmp_path / "home", lm=ScriptedLM(script))) as client:
        add(client, "alice", history("alice", "ALICE"))
        response = client.post("/v1/users/alice/ask", json={"query": "q", "answer_format": LABELS.model_dump()})
    assert_error(response, 502, "model_error")
    assert "provider detail" not in response.text


def test_an_lm_that_cannot_be_used_is_a_503_naming_no_secret(tmp_path):
    from dspy.utils.exceptions import LMNotConfiguredError

    def script(request):
        raise LMNotConfiguredError("no API key found; set OPENAI_API_KEY=sk-secret-detail")

    with served(workspace(tmp_path / "home", lm=ScriptedLM(script))) as client:
        add(client, "alice", history("alice", "ALICE"))
        response = client.post("/v1/users/alice/ask", json={"query": "q", "answer_format": LABELS.model_dump()})
    error = assert_error(response, 503, "model_unavailable")
    assert "LMNotConfiguredError" in error["message"] and "sk-secret" not in response.text


def test_an_unreadable_stored_persona_is_a_500_that_keeps_the_path_in_the_log(client, ws, caplog):
    add(client, "alice", history("alice", "ALICE"))
    ws.personas.add("alice", "You like politics.", PersonaProvenance(source="manual"))
    [stored] = list(ws.settings.personas_dir.rglob("v1.json"))
    stored.write_bytes(b"\xff\xfe not json")
    for response in (client.get("/v1/users/alice/persona"), client.post("/v1/users/alice/ask", json={"query": "q"})):
        error = assert_error(response, 500, "stored_file_unreadable")
        assert error["request_id"] in error["message"] and str(ws.settings.home) not in response.text
    assert str(stored) in caplog.text
    assert stored.read_bytes() == b"\xff\xfe not json"  # left as it is, for the operator


# --- personas --------------------------------------------------------------------------------------


def test_persona_versions_and_rollback(client, ws):
    for text in ("You like politics.", "You love SPORTS."):
        ws.personas.add("alice", text, PersonaProvenance(source="manual"))
    assert client.get("/v1/users/alice/persona").json()["text"] == "You love SPORTS."
    versions = client.get("/v1/users/alice/persona/versions").json()
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    restored = client.post("/v1/users/alice/persona/rollback", json={"version": 1}).json()
    assert (restored["version"], restored["text"], restored["provenance"]["source"]) == (3, "You like politics.", "rollback")
    assert client.get("/v1/users/alice/persona").json()["version"] == 3


def test_persona_routes_404_and_422(client, ws):
    assert_error(client.get("/v1/users/nobody/persona"), 404, "not_found")
    assert_error(client.get("/v1/users/nobody/persona/versions"), 404, "not_found")
    ws.personas.add("alice", "You like politics.", PersonaProvenance(source="manual"))
    assert_error(client.post("/v1/users/alice/persona/rollback", json={"version": 7}), 404, "not_found")
    assert_error(client.post("/v1/users/alice/persona/rollback", json={"version": 0}), 422, "invalid_request")
    assert_error(client.post("/v1/users/alice/persona/rollback", json={}), 422, "invalid_request")


# --- compiles, jobs and traces ---------------------------------------------------------------------


def test_compile_runs_in_the_background_to_done_and_changes_the_answers(client):
    add(client, "alice", history("alice", "ALICE"))
    response = client.post("/v1/users/alice/compile", json={"answer_format": LABELS.model_dump(), "iterations": 1})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] in ("queued", "running") and job["user_id"] == "alice"
    assert response.headers["location"] == f"/v1/jobs/{job['job_id']}"

    done = wait_for_job(client, job["job_id"])
    assert done["state"] == "done", done
    assert done["attempts"] == 1 and done["result"]["status"] == "edited"
    persona = client.get("/v1/users/alice/persona").json()
    assert "love SPORTS" in persona["text"] and persona["version"] == done["result"]["persona_version"]
    answer = client.post("/v1/users/alice/ask", json={"query": "ALICE match report 9",
                                                      "answer_format": LABELS.model_dump()}).json()
    assert answer["answer"] == "SPORTS" and answer["persona_version"] == persona["version"]

    trace = client.get(f"/v1/runs/{done['run_id']}/users/alice/trace").json()
    kinds = [event["kind"] for event in trace["events"]]
    assert kinds[0] == "compile_started" and "compile_finished" in kinds
    assert {"simulated", "critiqued", "edited", "gated"} <= set(kinds)
    report = client.get(f"/v1/runs/{done['run_id']}/users/alice/report")
    assert report.headers["content-type"].startswith("text/html") and "alice" in report.text


def test_compile_and_job_errors(client):
    assert_error(client.post("/v1/users/nobody/compile", json={}), 404, "not_found")
    add(client, "alice", history("alice", "ALICE"))
    assert_error(client.post("/v1/users/alice/compile", json={"iterations": 0}), 422, "invalid_request")
    assert_error(client.post("/v1/users/alice/compile", json={"threads": 4}), 422, "invalid_request")
    assert_error(client.get("/v1/jobs/" + "f" * 32), 404, "not_found")
    assert_error(client.get("/v1/jobs/..%2F..%2Fconfig"), 404, "not_found")


def test_trace_routes_404_for_unknown_or_unsafe_runs(client):
    for run_id in ("20250101T000000Z-abcdef", "..", "%2E%2E"):
        assert_error(client.get(f"/v1/runs/{run_id}/users/alice/trace"), 404, "not_found")
        assert_error(client.get(f"/v1/runs/{run_id}/users/alice/report"), 404, "not_found")


def test_an_unknown_route_is_a_json_404(client):
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")


# --- isolation: every user-scoped route, reached for another user ------------------------------------


def test_no_route_gives_one_user_anothers_data(client, ws):
    add(client, "alice", history("alice", "ALICE-SECRET"))
    add(client, "bob", history("bob", "BOB"))
    job = wait_for_job(client, client.post("/v1/users/alice/compile", json={}).json()["job_id"])
    alice_versions = client.get("/v1/users/alice/persona/versions").json()["versions"]

    # interactions: a record naming alice, posted for bob, is refused and stored for nobody
    body = add(client, "bob", [{"user_id": "alice", "query": "ALICE-SECRET injected", "response": "x"}])
    assert body.status_code == 422 and ws.episodic.count("alice") == 5 and ws.episodic.count("bob") == 5

    # ask: bob's answer sees only bob's memories, whatever the query says
    lm = ws.lm
    before = len(lm.requests)
    answer = client.post("/v1/users/bob/ask", json={"query": "what did ALICE-SECRET report?"}).json()
    bob_ids = {m.memory_id for m in ws.episodic.history("bob")}
    assert {m["memory_id"] for m in answer["retrieved"]} <= bob_ids
    assert all("ALICE-SECRET" not in call["observation"] for call in answer["used_tools"])
    assert all("ALICE-SECRET match report" not in r.user for r in lm.requests[before:])

    # personas: bob has none, and no path or body reaches alice's
    assert_error(client.get("/v1/users/bob/persona"), 404, "not_found")
    assert_error(client.get("/v1/users/bob/persona/versions"), 404, "not_found")
    assert_error(client.post("/v1/users/bob/persona/rollback", json={"version": 1}), 404, "not_found")
    assert client.get("/v1/users/alice/persona/versions").json()["versions"] == alice_versions

    # compile: bob's compile never touches alice's persona; an unknown user is refused
    assert_error(client.post("/v1/users/carol/compile", json={}), 404, "not_found")
    bob_job = wait_for_job(client, client.post("/v1/users/bob/compile", json={}).json()["job_id"])
    assert bob_job["result"]["user_id"] == "bob"
    assert client.get("/v1/users/alice/persona/versions").json()["versions"] == alice_versions

    # traces: alice's run read with bob's id is not found
    assert_error(client.get(f"/v1/runs/{job['run_id']}/users/bob/trace"), 404, "not_found")
    assert_error(client.get(f"/v1/runs/{job['run_id']}/users/bob/report"), 404, "not_found")
    bob_trace = client.get(f"/v1/runs/{bob_job['run_id']}/users/bob/trace").json()
    assert {event["user_id"] for event in bob_trace["events"]} == {"bob"}
    assert "ALICE-SECRET" not in str(bob_trace)
