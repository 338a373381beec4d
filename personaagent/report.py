"""A self-contained HTML report of one alignment run: a score plot and every user's iterations.

The page works offline: the plot is inline SVG and the styles are inline, with no script and no
external file. Every piece of user or model text is HTML-escaped, since queries, answers,
critiques and personas are arbitrary text.
"""

from __future__ import annotations

from html import escape
from importlib import resources
from string import Template

from personaagent.traces import IterationView, UserTrace

__all__ = ["render_report", "score_plot"]

#: Line colours of the users in the plot (cycled when there are more users).
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"
)
_WIDTH, _HEIGHT = 720, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 50, 170, 20, 40  # margins; the right one holds the legend


def score_plot(traces: list[UserTrace]) -> str:
    """An inline SVG line chart of each user's score (0 to 1) after each iteration."""
    curves = [(trace.user_id, trace.score_curve()) for trace in traces]
    last = max((x for _, points in curves for x, _ in points), default=1) or 1
    inner_w, inner_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return _LEFT + inner_w * x / last, _TOP + inner_h * (1 - y)

    parts = [
        f'<svg id="score-plot" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="score per iteration per user">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, y = at(0, tick)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + inner_w}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for iteration in range(last + 1):
        x, _ = at(iteration, 0)
        parts.append(f'<text x="{x:.1f}" y="{_TOP + inner_h + 18}" text-anchor="middle">{iteration}</text>')
    parts.append(
        f'<line x1="{_LEFT}" y1="{_TOP + inner_h}" x2="{_LEFT + inner_w}" y2="{_TOP + inner_h}" stroke="#999"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + inner_h}" stroke="#999"/>'
        f'<text x="{_LEFT + inner_w / 2:.1f}" y="{_HEIGHT - 4}" text-anchor="middle">iteration</text>'
    )
    for index, (user_id, points) in enumerate(curves):
        colour = _PALETTE[index % len(_PALETTE)]
        coords = [at(x, y) for x, y in points]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline class="curve" points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (x, y), (iteration, score) in zip(coords, points):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                f"<title>{escape(user_id)}: iteration {iteration}, score {score:.3f}</title></circle>"
            )
        legend_y = _TOP + 10 + 18 * index
        parts.append(
            f'<rect x="{_WIDTH - _RIGHT + 15}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{_WIDTH - _RIGHT + 30}" y="{legend_y}">{escape(_clip(user_id, 22))}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "@@")):
            css = "hunk"
        else:
            css = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        lines.append(f'<span class="{css}">{escape(line)}</span>' if css else escape(line))
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _iteration_html(view: IterationView) -> str:
    critiques = {c.interaction_id: c.critique for c in view.critiques}
    rows = "".join(
        f"<tr><td>{escape(_clip(sim.query, 200))}</td><td>{escape(sim.simulated)}</td><td>{escape(sim.truth)}</td>"
        f"<td>{sim.score:.2f}</td><td>{escape(critiques.get(sim.interaction_id, ''))}</td></tr>"
        for sim in view.answers
    )
    parts = [f"<h3>Iteration {view.number}</h3>"]
    if rows:
        parts.append(
            "<table><tr><th>query</th><th>simulated</th><th>user's answer</th><th>score</th><th>critique</th></tr>"
            f"{rows}</table>"
        )
    if view.gradient is not None:
        parts.append(f"<p>Aggregated gradient ({view.gradient.num_critiques} critiques):</p>"
                     f"<pre>{escape(view.gradient.gradient)}</pre>")
    if view.edit is not None:
        parts.append("<p>Persona diff:</p>" + _diff_html(view.edit.diff))
    if view.gate is not None:
        verdict = "accepted" if view.gate.accepted else "rejected"
        parts.append(
            f'<p>Gate: <span class="{verdict}">{verdict}</span> ({escape(view.gate.reason)}); score '
            f"{view.gate.score_before:.3f} → {view.gate.score_after:.3f}</p>"
        )
    for skipped in view.skipped:
        parts.append(f'<p class="muted">Skipped {escape(skipped.step)}: {escape(skipped.error)}</p>')
    parts.append(
        f'<p class="muted">LM: {view.usage.calls} calls, {view.usage.tokens} tokens, {view.usage.seconds:.1f} s</p>'
    )
    return "\n".join(parts)


def _user_html(trace: UserTrace) -> str:
    parts = [f"<h2>{escape(trace.user_id)}</h2>"]
    finished = trace.finished
    if finished is not None:
        version = f"v{trace.persona_version}" if trace.persona_version else "none stored"
        parts.append(
            f"<p>{escape(finished.status)}: score {finished.score_initial:.3f} → {finished.score_final:.3f}, "
            f"persona {version}, {finished.usage.calls} LM calls, {finished.usage.tokens} tokens, "
            f"{finished.usage.seconds:.1f} s</p>"
        )
    else:
        parts.append('<p class="muted">No finish event: the run was interrupted or is still going.</p>')
    if trace.started is not None:
        parts.append(f"<p>Starting persona:</p><pre>{escape(trace.started.persona_text)}</pre>")
    parts.extend(_iteration_html(view) for view in trace.iteration_views())
    return "\n".join(parts)


def render_report(run_id: str, traces: list[UserTrace]) -> str:
    """The HTML page of one run's traces.

    Args:
        run_id: the run the traces belong to (the page title).
        traces: the users' traces, e.g. ``TraceReader(...).run(run_id)``.
    """
    template = Template((resources.files("personaagent") / "templates" / "report.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=escape(f"PersonaAgent alignment run {run_id}"),
        subtitle=escape(f"{len(traces)} user(s)"),
        plot=score_plot(traces),
        body="\n".join(_user_html(trace) for trace in traces),
    )
