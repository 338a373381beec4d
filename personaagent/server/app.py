"""The HTTP API: a thin FastAPI layer over the Python API, for applications in any language.

Every ``/v1`` route needs ``Authorization: Bearer <key>`` (keys from the ``api_keys`` setting)
and reads or writes only the user named in its path. Compiles are queued as jobs and run one at
a time by a background worker (``personaagent.jobs``), never inside a request. Errors are JSON
(``ErrorBody``) with a request id that is also in the server's log and the ``X-Request-ID``
header; a server error never shows a stack trace.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from dspy.utils.exceptions import LMError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from personaagent import telemetry
from personaagent.agent import PersonaAgent
from personaagent.errors import (
    LM_UNUSABLE_ERRORS,
    ConfigError,
    EmptyHistory,
    InvalidRecord,
    ModelNotAvailable,
    PersonaAgentError,
    PersonaConflict,
    PersonaTooLong,
    QueryTooLong,
    StoreLocked,
    UnknownJob,
    UnknownUser,
    UnparseableAnswer,
    UnreadableFile,
)
from personaagent.ingest import MAX_RECORD_CHARS, interaction_from_record
from personaagent.jobs import CompileJob, CompileOptions, JobQueue
from personaagent.records import Interaction, Persona, error_message, validate_user_id
from personaagent.report import render_report
from personaagent.runtime.usage import metered
from personaagent.server.schemas import (
    AddInteractionsRequest,
    AddInteractionsResponse,
    AskRequest,
    AskResponse,
    ErrorBody,
    Health,
    PersonaVersions,
    RejectedItem,
    RetrievedMemory,
    RollbackRequest,
    TraceResponse,
)
from personaagent.traces import RUN_ID, TraceReader
from personaagent.workspace import Workspace

__all__ = ["create_app", "ApiError"]

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: Library errors, first match wins, with the HTTP status and code they become. 4xx: the caller
#: can fix it; 500: the server's stored data (the operator fixes it; the message, which names a
#: server path, goes to the log only); 502: the model's output or provider failed; 503: the
#: server's setup.
_LIBRARY_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (UnknownUser, 404, "not_found"),
    (UnknownJob, 404, "not_found"),
    (EmptyHistory, 409, "empty_history"),
    (PersonaConflict, 409, "conflict"),
    (QueryTooLong, 422, "query_too_long"),
    (PersonaTooLong, 422, "persona_too_long"),
    (InvalidRecord, 422, "invalid_request"),
    (UnparseableAnswer, 502, "model_error"),
    (StoreLocked, 503, "store_locked"),
    (ModelNotAvailable, 503, "model_unavailable"),
    (ConfigError, 503, "server_misconfigured"),
    (UnreadableFile, 500, "stored_file_unreadable"),
    (PersonaAgentError, 400, "bad_request"),
)


class ApiError(Exception):
    """An error response: ``status`` with ``{"error": {"code", "message", "request_id"}}``."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


# --- request ids, errors ---------------------------------------------------------------------------


class _RequestIds:
    """ASGI middleware: give every request an id (the client's ``X-Request-ID`` if it is sane),
    keep it in ``request.state.request_id`` and echo it in the response header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: dict) -> None:
            headers = list(message.get("headers", []))
            if message["type"] == "http.response.start" and not any(k.lower() == b"x-request-id" for k, _ in headers):
                message["headers"] = [*headers, (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or uuid.uuid4().hex


def _error(request: Request, status: int, code: str, message: str, *, fields: list | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    request_id = _request_id(request)
    body = {"error": {"code": code, "message": message, "request_id": request_id, "fields": fields or []}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "X-Request-ID": request_id})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(request, exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"loc": list(err["loc"]), "message": error_message(err)} for err in exc.errors()]
        where = "; ".join(f"{'.'.join(map(str, f['loc']))}: {f['message']}" for f in fields)
        return _error(request, 422, "invalid_request", f"invalid request: {where}", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(request, exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(PersonaAgentError)
    async def library_error(request: Request, exc: PersonaAgentError) -> JSONResponse:
        status, code = next((s, c) for kind, s, c in _LIBRARY_ERRORS if isinstance(exc, kind))
        if status == 500:
            request_id = _request_id(request)
            logger.error("request %s: %s", request_id, exc)
            return _error(request, status, code, f"a file the server stores is unreadable; quote request id {request_id}")
        return _error(request, status, code, str(exc))

    @app.exception_handler(LMError)
    async def model_error(request: Request, exc: LMError) -> JSONResponse:
        logger.warning("request %s: the LM failed: %s", _request_id(request), exc)
        if isinstance(exc, LM_UNUSABLE_ERRORS):  # no key, unknown model, unreachable: the setup
            return _error(request, 503, "model_unavailable",
                          f"the server's language model cannot be used as configured ({type(exc).__name__})")
        # DSPy has already retried rate limits, timeouts and provider errors.
        return _error(request, 502, "model_error", f"the language model failed: {type(exc).__name__}; try again later")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = _request_id(request)
        # The traceback goes to the log under the request id, never to the client.
        logger.error("request %s (%s %s) failed", request_id, request.method, request.url.path, exc_info=exc)
        return _error(request, 500, "internal_error",
                      f"the server failed to handle this request; quote request id {request_id}")


# --- authentication --------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API key from the server's api_keys setting.")


def _authenticated(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    keys: tuple[bytes, ...] | None = request.app.state.api_keys
    if keys is None:
        return  # served with --no-auth on loopback
    given = credentials.credentials.encode("utf-8") if credentials is not None else b""
    # compare_digest against every key (no early exit), so timing tells nothing about which matched.
    matched = [secrets.compare_digest(given, key) for key in keys]
    if credentials is None or not any(matched):
        raise ApiError(401, "unauthorized", "missing or wrong API key; send 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": "Bearer"})


def _user(user_id: str) -> str:
    try:
        return validate_user_id(user_id)
    except InvalidRecord as exc:
        raise ApiError(422, "invalid_request", f"invalid user id: {exc}") from None


def _workspace(request: Request) -> Workspace:
    return request.app.state.workspace


def _jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


def _server_timing(started: float, lm_seconds: float) -> dict[str, str]:
    # Server-Timing lets a client (and the load benchmark) split latency into the LM's share and
    # the service's own.
    total_ms = (time.perf_counter() - started) * 1000
    return {"Server-Timing": f"app;dur={total_ms:.2f}, lm;dur={lm_seconds * 1000:.2f}"}


# --- routes ----------------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 404, 422, 500)}

router = APIRouter(prefix="/v1", dependencies=[Depends(_authenticated)], responses=_ERRORS)


@router.post("/users/{user_id:path}/interactions", response_model=AddInteractionsResponse, tags=["memory"])
def add_interactions(user_id: str, body: AddInteractionsRequest, request: Request) -> JSONResponse:
    """Add interactions to the user's episodic memory.

    Each record is validated on its own, by the same rules as `personaagent ingest`; bad records
    are listed in `rejected` (by index) and the valid ones are stored. A record naming another
    user is rejected. 422 only if no record is valid.
    """
    started = time.perf_counter()
    user_id = _user(user_id)
    valid: list[Interaction] = []
    memory_ids: list[str | None] = []
    rejected: list[RejectedItem] = []
    for index, item in enumerate(body.interactions):
        try:
            size = len(json.dumps(item, ensure_ascii=False))
            if size > MAX_RECORD_CHARS:
                raise ValueError(f"record is {size} characters; the limit is {MAX_RECORD_CHARS}")
            if isinstance(item, dict) and item.get("user_id") not in (None, "", user_id):
                raise ValueError("user_id does not match the user in the path")
            interaction = interaction_from_record(item, default_user_id=user_id)
        except ValueError as exc:
            rejected.append(RejectedItem(index=index, error=str(exc)))
            memory_ids.append(None)
            continue
        valid.append(interaction)
        memory_ids.append(interaction.interaction_id)
    if not valid:
        raise ApiError(422, "invalid_request",
                       "no valid interaction: " + "; ".join(f"[{r.index}] {r.error}" for r in rejected))
    report = _workspace(request).episodic.add(valid)
    response = AddInteractionsResponse(
        added=report.added, duplicates=report.duplicates, memory_ids=memory_ids, rejected=rejected
    )
    return JSONResponse(response.model_dump(mode="json"), headers=_server_timing(started, 0.0))


@router.post("/users/{user_id:path}/ask", response_model=AskResponse, tags=["answers"])
def ask(user_id: str, body: AskRequest, request: Request) -> JSONResponse:
    """Answer a query as the user would, with their current persona and memories.

    404 if the user has neither memories nor a persona.
    """
    started = time.perf_counter()
    agent = PersonaAgent.for_user(_user(user_id), workspace=_workspace(request), answer_format=body.answer_format)
    with metered() as meter:
        prediction = agent(body.query)
    usage = meter.usage
    response = AskResponse(
        user_id=agent.user_id,
        answer=prediction.answer,
        persona_version=agent.persona_version,
        used_tools=list(prediction.used_tools),
        retrieved=[RetrievedMemory(memory_id=m.memory_id, score=m.score) for m in prediction.retrieved],
        usage=usage,
    )
    return JSONResponse(response.model_dump(mode="json"), headers=_server_timing(started, usage.seconds))


def _personas(request: Request):
    return _workspace(request).personas


@router.get("/users/{user_id:path}/persona/versions", response_model=PersonaVersions, tags=["personas"])
def persona_versions(user_id: str, request: Request) -> PersonaVersions:
    """Every persona version of the user, oldest first. 404 if they have none."""
    versions = _personas(request).history(_user(user_id))
    if not versions:
        raise UnknownUser(f"no persona for user {user_id!r}; compile one with POST /v1/users/{{user_id}}/compile")
    return PersonaVersions(user_id=user_id, versions=versions)


@router.post("/users/{user_id:path}/persona/rollback", response_model=Persona, tags=["personas"])
def persona_rollback(user_id: str, body: RollbackRequest, request: Request) -> Persona:
    """Make an earlier version current again; it is saved as a new version, which is returned."""
    return _personas(request).rollback(_user(user_id), body.version)


@router.get("/users/{user_id:path}/persona", response_model=Persona, tags=["personas"])
def persona(user_id: str, request: Request) -> Persona:
    """The user's current persona. 404 if they have none yet."""
    current = _personas(request).current(_user(user_id))
    if current is None:
        raise UnknownUser(f"no persona for user {user_id!r}; compile one with POST /v1/users/{{user_id}}/compile")
    return current


@router.post("/users/{user_id:path}/compile", status_code=202, response_model=CompileJob, tags=["compiles"])
def compile_persona(user_id: str, request: Request, body: CompileOptions | None = None) -> JSONResponse:
    """Queue a compile of the user's persona; returns the job at once (202).

    Jobs run one at a time in the background; follow one with `GET /v1/jobs/{job_id}`. 404 if the
    user has no memories.
    """
    job = _jobs(request).submit(_user(user_id), body or CompileOptions())
    return JSONResponse(job.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/jobs/{job.job_id}"})


@router.get("/jobs/{job_id}", response_model=CompileJob, tags=["compiles"])
def get_job(job_id: str, request: Request) -> CompileJob:
    """A compile job: its state (queued, running, done, failed) and, once done, its result."""
    return _jobs(request).get(job_id)


def _trace(request: Request, run_id: str, user_id: str):
    if not RUN_ID.match(run_id):
        raise ApiError(404, "not_found", f"no trace run {run_id!r}")
    reader = TraceReader(_workspace(request).settings.traces_dir)
    try:
        return reader.user(run_id, _user(user_id))
    except KeyError as exc:
        raise ApiError(404, "not_found", str(exc.args[0]) if exc.args else "no such trace") from None


@router.get("/runs/{run_id}/users/{user_id:path}/trace", response_model=TraceResponse, tags=["traces"])
def trace(run_id: str, user_id: str, request: Request) -> TraceResponse:
    """The user's trace events in one compile run (the run id is in the compile job)."""
    found = _trace(request, run_id, user_id)
    return TraceResponse(run_id=run_id, user_id=found.user_id,
                         events=[event.model_dump(mode="json") for event in found.events])


@router.get("/runs/{run_id}/users/{user_id:path}/report", response_class=HTMLResponse, tags=["traces"])
def trace_report(run_id: str, user_id: str, request: Request) -> HTMLResponse:
    """The user's trace in one run as a self-contained HTML page."""
    return HTMLResponse(render_report(run_id, [_trace(request, run_id, user_id)]))


# --- the app ---------------------------------------------------------------------------------------


def create_app(
    workspace: Workspace,
    *,
    api_keys: Sequence[str] | None,
    close_workspace: bool = False,
    job_attempts: int = 3,
) -> FastAPI:
    """The ASGI app serving ``workspace``.

    Args:
        workspace: the users' memories, personas and traces, and the LM that answers.
        api_keys: Bearer keys accepted on ``/v1``; None serves without authentication (only
            `serve` on a loopback host does that, when told to).
        close_workspace: close the workspace (releasing the store's folder lock) on shutdown.
            Defaults to False.
        job_attempts: a compile job interrupted by this many restarts is marked failed.
            Defaults to 3.

    Raises:
        ValueError: ``api_keys`` is given but holds no key.
    """
    if api_keys is not None and not [key for key in api_keys if key]:
        raise ValueError("api_keys holds no key; pass None to serve without authentication")
    telemetry.configure(workspace.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs = JobQueue(workspace, max_attempts=job_attempts)
        jobs.start()
        app.state.jobs = jobs
        try:
            yield
        finally:
            if not jobs.stop(timeout=5.0):
                logger.warning("a compile is still running; its job resumes when the server starts again")
            if close_workspace:
                workspace.close()

    # FastAPI's /docs page loads Swagger UI from a CDN; this one serves the files itself (offline).
    app = FastAPIOffline(
        title="personaagent",
        version=version("personaagent"),
        description="Per-user personas compiled from each user's history (PersonaAgent, arXiv 2506.06254).",
        lifespan=lifespan,
    )
    app.state.workspace = workspace
    app.state.api_keys = tuple(key.encode("utf-8") for key in api_keys if key) if api_keys is not None else None
    app.add_middleware(_RequestIds)
    _install_error_handlers(app)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """Liveness: the process answers (no authentication)."""
        return Health(version=app.version)

    app.include_router(router)
    return app
