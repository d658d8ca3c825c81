"""GET /: the status page for people, rendered here, with no outside assets.

Inline CSS, a meta refresh, one card per probe grouped by the ``group`` label:
level, name, kind and target, last change, latency, a strip of recent runs and
the message.  Cards flow into one column on a phone.  Every name, label and
message is HTML-escaped.  Takes the same ?group= ?label= ?probe= as /status,
and ?refresh=SECONDS (default 10).
"""

from __future__ import annotations

import time
from html import escape
from itertools import groupby

from ..service import Exporter
from ..state import ProbeState
from ..web import Request, Response
from .collate import Selection, collate, group_of, iso, level_of

DEFAULT_REFRESH = 10
STRIP_RUNS = 60

CSS = """
:root{color-scheme:light dark;--ok:#1a7f37;--unknown:#6e7781;--warning:#b58100;--critical:#cf222e;
--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;--muted:#9198a1;
--line:#30363d}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
header{padding:1rem;color:#fff;background:var(--level);display:flex;flex-wrap:wrap;
align-items:baseline;gap:.5rem 1rem}
header h1{margin:0;font-size:1.3rem}
header .overall{font-size:1.3rem;font-weight:700}
header .meta{opacity:.9}
main{padding:0 .75rem 1rem;max-width:90rem;margin:0 auto}
h2{font-size:1.05rem;margin:1.2rem .25rem .5rem;color:var(--muted)}
ul.probes{list-style:none;margin:0;padding:0;display:grid;gap:.6rem;
grid-template-columns:repeat(auto-fill,minmax(min(100%,20rem),1fr))}
li.probe{background:var(--card);border:1px solid var(--line);border-left:.4rem solid var(--level);
border-radius:.4rem;padding:.6rem .75rem;min-width:0}
.head{display:flex;gap:.5rem;align-items:baseline;flex-wrap:wrap}
.badge{font-size:.75rem;font-weight:700;padding:.05rem .4rem;border-radius:.25rem;color:#fff;
background:var(--level)}
.name{font-weight:600;overflow-wrap:anywhere}
.where,.facts{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.facts{display:flex;flex-wrap:wrap;gap:.2rem 1rem;margin:.25rem 0}
.strip{display:flex;gap:1px;height:1.1rem;margin:.35rem 0}
.strip i{flex:1 1 0;max-width:.6rem;border-radius:1px;background:var(--ok)}
.strip i.down{background:var(--critical)}
.message{margin:.25rem 0 0;font-size:.9rem;overflow-wrap:anywhere;white-space:pre-wrap}
.level-OK{--level:var(--ok)}.level-Unknown{--level:var(--unknown)}
.level-Warning{--level:var(--warning)}.level-Critical{--level:var(--critical)}
li.inactive{opacity:.6}
footer{color:var(--muted);font-size:.8rem;padding:1rem;text-align:center}
footer a{color:inherit}
"""


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def latency_text(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def moment(ts: float, now: float) -> str:
    if not ts:
        return "never"
    stamp = escape(iso(ts) or "")
    return f'<time datetime="{stamp}" title="{stamp}">{ago(now - ts)}</time>'


def state_word(state: ProbeState) -> str:
    if not state.spec.active:
        return "inactive"
    if state.up is None:
        return "pending"
    return "up" if state.up else "down"


def strip(state: ProbeState) -> str:
    runs = list(state.recent)[-STRIP_RUNS:]
    cells = []
    for run in runs:
        word = "up" if run.up else "down"
        tip = escape(f"{iso(run.started)} {word} {latency_text(run.latency)} {run.message}".strip())
        cells.append(f'<i class="{word}" title="{tip}"></i>')
    label = f"last {len(runs)} runs, {sum(1 for r in runs if not r.up)} failed"
    return f'<div class="strip" role="img" aria-label="{label}">{"".join(cells)}</div>'


def card(state: ProbeState, now: float) -> str:
    spec, last = state.spec, state.last
    level = level_of(state) if spec.active else "Unknown"
    word = state_word(state)
    badge = level if spec.active else "Inactive"
    labels = ", ".join(f"{k}={v}" for k, v in spec.labels)
    message = last.message if last else ("not run yet" if spec.active else "inactive")
    latency = latency_text(state.last_latency) if last else "-"
    return (
        f'<li class="probe level-{level} {word}" data-probe="{escape(spec.name)}" '
        f'data-state="{word}" data-level="{level}">'
        f'<div class="head"><span class="badge level-{level}">{badge}</span>'
        f'<span class="name">{escape(spec.name)}</span>'
        f'<span class="where">{escape(spec.kind)} {escape(spec.target)}</span></div>'
        f'<div class="facts"><span class="state">{word}</span>'
        f'<span>changed {moment(state.last_change_at, now)}</span>'
        f'<span>latency <span class="latency">{latency}</span></span>'
        f'<span>ran {moment(state.last_run_at, now)}</span></div>'
        f'{strip(state)}'
        + (f'<div class="where labels">{escape(labels)}</div>' if labels else "")
        + f'<p class="message">{escape(message)}</p></li>'
    )


def render(states: list[ProbeState], selection: Selection, refresh: int, now: float) -> str:
    overall = collate(states, selection)
    chosen = selection.select(states)
    down = sum(1 for s in chosen if s.spec.active and s.up is False)
    groups = []
    # Named groups alphabetically, probes without a group last.
    ordered = sorted(chosen, key=lambda s: (not group_of(s.spec), group_of(s.spec), s.spec.name))
    for group, members in groupby(ordered, key=lambda s: group_of(s.spec)):
        cards = "".join(card(s, now) for s in members)
        title = escape(group) if group else "ungrouped"
        groups.append(f'<section class="group" data-group="{escape(group)}"><h2>{title}</h2>'
                      f'<ul class="probes">{cards}</ul></section>')
    body = "".join(groups) or "<p>No probe matches the selection.</p>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}">'
        f"<title>{overall.status} · probewatch</title><style>{CSS}</style></head><body>"
        f'<header class="level-{overall.status}"><h1>probewatch</h1>'
        f'<span class="overall" id="overall" data-status="{overall.status}">{overall.status}</span>'
        f'<span class="meta">{len(chosen)} probes, {down} down · {escape(iso(now) or "")}</span>'
        f"</header><main>{body}</main>"
        f'<footer>Refreshes every {refresh} s · <a href="/status">/status</a> · '
        '<a href="/api/v1/probes">/api/v1/probes</a> · <a href="/metrics">/metrics</a></footer>'
        "</body></html>\n"
    )


class StatusPage:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def get(self, request: Request) -> Response:
        query = dict(request.query)
        refresh_text = (query.pop("refresh", None) or [str(DEFAULT_REFRESH)])[-1]
        digits = refresh_text.isascii() and refresh_text.isdigit()
        if not digits or not 1 <= int(refresh_text) <= 86400:
            return Response.text(f"refresh={refresh_text!r} must be whole seconds "
                                 "from 1 to 86400\n", 400)
        refresh = int(refresh_text)
        try:
            selection = Selection.from_query(query)
        except ValueError as exc:
            return Response.text(f"{exc}\n", 400)
        html = render(self.exporter.scheduler.states(), selection, refresh, time.time())
        return Response(200, html.encode(), "text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
