"""HTML of the status page: header with summary bar, filter form, group sections, cards.

Every name, label, message and URL is HTML-escaped here; nothing else builds
markup.  The facts a card shows from the kept history (uptime, median latency,
failures within the alert window) come from one pass over at most 100 runs.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass
from html import escape
from string import Formatter
from urllib.parse import quote, urlencode

from ..config import ExternalUrls
from ..probe_state import ProbeState
from .collate import group_of, iso
from .page_assets import CSS, JS
from .page_filters import URGENCY, Group, PageQuery, View

STRIP_RUNS = 60
# The alert window of the ProbeFailing rule: the [10m] of probewatch:probe_failures:window
# in deploy/prometheus/rules.yml.  Keep the two equal.
ALERT_WINDOW = 600.0
HOUR = 3600.0


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def latency_text(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def local_text(ts: float) -> str:
    """Readable local time for the server-side text (the script shows the browser's zone)."""
    moment = dt.datetime.fromtimestamp(ts, dt.UTC).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + (moment.tzname() or moment.strftime("%z"))


def moment(ts: float, now: float) -> str:
    if not ts:
        return "never"
    stamp = escape(iso(ts) or "")
    return f'<time datetime="{stamp}" title="{escape(local_text(ts))}" data-ago>{ago(now - ts)}</time>'


def _utc_offset(now: float) -> float:
    offset = dt.datetime.fromtimestamp(now, dt.UTC).astimezone().utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def percent(part: int, whole: int) -> str:
    if part == whole:
        return "100%"
    return f"{int(part * 1000 / whole) / 10:.1f}%"  # floor: 99.96% is not 100%


def state_word(state: ProbeState) -> str:
    if not state.spec.active:
        return "inactive"
    if state.up is None:
        return "pending"
    return "up" if state.up else "down"


@dataclass
class Facts:
    runs: int = 0
    ups: int = 0
    span: float = 0.0  # seconds from the oldest kept run to now
    hour_runs: int = 0
    hour_ups: int = 0
    window_failures: int = 0
    window_covered: bool = True  # the kept runs reach back over the whole alert window
    median_latency: float | None = None
    strip: str = ""


def history_facts(state: ProbeState, now: float) -> Facts:
    runs = list(state.recent)
    facts = Facts(runs=len(runs))
    if not runs:
        return facts
    facts.span = now - runs[0].started
    covers_hour = runs[0].started <= now - HOUR
    facts.window_covered = runs[0].started <= now - ALERT_WINDOW or len(runs) < state.recent.size
    cells = []
    first_strip = len(runs) - STRIP_RUNS
    offset = _utc_offset(now)
    for i, run in enumerate(runs):
        facts.ups += run.up
        if covers_hour and run.started >= now - HOUR:
            facts.hour_runs += 1
            facts.hour_ups += run.up
        if not run.up and run.started + run.latency >= now - ALERT_WINDOW:
            facts.window_failures += 1
        if i >= first_strip:
            day = int(run.started + offset) % 86400  # strftime per cell costs 4x the rest
            when = f"{day // 3600:02d}:{day // 60 % 60:02d}:{day % 60:02d}"
            if run.up:
                cells.append(f'<i class="up" title="{when} up {latency_text(run.latency)}"></i>')
            else:
                tip = escape(f"{when} down ({run.reason}, code {run.code}) {run.message}".strip())
                cells.append(f'<i class="down" title="{tip}"></i>')
    shown = min(len(runs), STRIP_RUNS)
    failed = sum(1 for r in runs[-STRIP_RUNS:] if not r.up)
    label = f"last {plural(shown, 'run')}, {failed} failed"
    facts.strip = f'<div class="strip" role="img" aria-label="{label}">{"".join(cells)}</div>'
    facts.median_latency = statistics.median(r.latency for r in runs)
    return facts


def external_links(state: ProbeState, urls: ExternalUrls | None) -> list[tuple[str, str]]:
    spec = state.spec
    # Relative links, so the page also works behind a reverse proxy's path prefix.
    links = [("API", f"api/v1/probes/{quote(spec.name, safe='')}")]
    if urls is None:
        return links
    if urls.grafana:
        values = {"probe": spec.name, "group": group_of(spec), "kind": spec.kind,
                  "target": spec.shown_target}
        filled = "".join(
            text + (quote(values[name], safe="") if name is not None else "")
            for text, name, _, _ in Formatter().parse(urls.grafana))
        links.append(("Grafana", filled))
    if urls.prometheus:
        value = spec.name.replace("\\", "\\\\").replace('"', '\\"')
        query = urlencode({"g0.expr": f'probewatch_probe_up{{probe="{value}"}}',
                           "g0.tab": "0", "g0.range_input": "1h"})
        links.append(("Prometheus", f"{urls.prometheus.rstrip('/')}/graph?{query}"))
    return links


def threshold(state: ProbeState, facts: Facts) -> str:
    """Whether the failures within the alert window (or in a row) reach the probe's failures:."""
    need = state.spec.failures
    row = state.consecutive_failures
    found = max(facts.window_failures, 0)
    if not found and not row:
        return ""
    reached = found >= need or row >= need
    at_least = "" if facts.window_covered else "at least "
    text = (f"{at_least}{plural(found, 'failure')} in {span(ALERT_WINDOW)}, {row} in a row: "
            + (f"alert threshold ({need}) reached" if reached else f"threshold is {need}"))
    word = "reached" if reached else "below"
    return f'<div class="threshold {word}" data-threshold="{word}">{text}</div>'


def card(state: ProbeState, level: str, now: float, urls: ExternalUrls | None = None) -> str:
    spec, last = state.spec, state.last
    word = state_word(state)
    badge = level if spec.active else "Inactive"
    facts = history_facts(state, now)
    parts = [
        f'<li class="probe level-{level} {word}" id="probe-{escape(spec.name)}" '
        f'data-probe="{escape(spec.name)}" data-state="{word}" data-level="{level}" '
        f'data-group="{escape(group_of(spec))}">'
        f'<div class="head"><span class="badge level-{level}">{badge}</span>'
        f'<span class="name" title="{escape(spec.name)}">{escape(spec.name)}</span>'
        f'<span class="state">{word}</span></div>'
        f'<div class="where"><span class="kind">{escape(spec.kind)}</span>'
        f'<span class="target" title="{escape(spec.shown_target)}">{escape(spec.shown_target)}</span></div>'
    ]
    if last is not None and not last.up:
        parts.append(f'<div class="failure"><span class="nw">code <b class="code">{last.code}</b>'
                     f'</span><span class="nw">reason <b class="reason">{escape(last.reason)}</b>'
                     "</span></div>")
    message = last.message if last else ("not run yet" if spec.active else "inactive")
    parts.append(f'<p class="message">{escape(message)}</p>')
    facts_html = [f'<span class="fact">{"up" if state.up else "down"} since '
                  f'{moment(state.last_change_at, now)}</span>' if last is not None else
                  f'<span class="fact">created {moment(state.created_at, now)}</span>']
    if last is not None:
        median = (f" (median {latency_text(facts.median_latency)})"
                  if facts.median_latency is not None and facts.runs > 1 else "")
        facts_html.append(f'<span class="fact">latency <span class="latency">'
                          f'{latency_text(state.last_latency)}</span>{median}</span>')
    if facts.runs:
        facts_html.append(
            f'<span class="fact uptime" data-uptime="{facts.ups}/{facts.runs}">uptime '
            f'{percent(facts.ups, facts.runs)} of {plural(facts.runs, "run")} '
            f'({span(facts.span)})</span>')
    if facts.hour_runs:
        facts_html.append(f'<span class="fact uptime-hour">last hour '
                          f'{percent(facts.hour_ups, facts.hour_runs)}</span>')
    parts.append(f'<div class="facts">{"".join(facts_html)}</div>')
    parts.append(facts.strip)
    if spec.active:
        parts.append(threshold(state, facts))
    labels = [f"{k}={v}" for k, v in spec.labels if k != "group"]
    if labels:
        parts.append('<div class="labels">' + "".join(
            f'<span class="label" title="{escape(x)}">{escape(x)}</span>' for x in labels)
            + "</div>")
    parts.append('<nav class="links">' + "".join(
        f'<a class="link-{name.lower()}" href="{escape(url)}"'
        + (' rel="noopener noreferrer" target="_blank"' if url.startswith("http") else "")
        + f">{name}</a>" for name, url in external_links(state, urls)) + "</nav></li>")
    return "".join(parts)


def group_section(group: Group, now: float, urls: ExternalUrls | None) -> str:
    title = escape(group.name) if group.name else "ungrouped"
    count = (f"{group.failing} of {group.total} failing" if group.failing
             else plural(group.total, "probe"))
    if group.continued:
        count += ", continued"
    cards = "".join(card(s, level, now, urls) for s, level in group.cards)
    return (f'<section class="group" data-group="{escape(group.name)}"><div class="ghead">'
            f'<h2 title="{title}">{title}</h2><span class="gcount">{count}</span></div>'
            f'<ul class="probes">{cards}</ul></section>')


def summary_bar(view: View) -> str:
    q = view.query
    everything = not q.levels and not q.failing
    pills = [f'<a class="pill all{" current" if everything else ""}" '
             f'href="{escape(q.link(levels=(), failing=False))}">all {view.total}</a>']
    for level in URGENCY:
        n = view.counts[level]
        classes = f"pill level-{level}" + (" current" if q.levels == (level,) else "")
        classes += " zero" if not n else ""
        pills.append(f'<a class="{classes}" data-level="{level}" data-count="{n}" '
                     f'href="{escape(q.link(levels=(level,), failing=False))}">{level} {n}</a>')
    pills.append(f'<a class="pill failing level-Critical{" current" if q.failing else ""}'
                 f'{" zero" if not view.failing else ""}" data-count="{view.failing}" '
                 f'href="{escape(q.link(levels=(), failing=True))}">{view.failing} failing</a>')
    return f'<nav class="summary" aria-label="probes per level">{"".join(pills)}</nav>'


def filter_form(view: View) -> str:
    q = view.query
    hidden = [("label", f"{k}:{v}") for k, v in q.selection.labels]
    hidden += [("probe", p) for p in q.selection.probes]
    if q.refresh != 10:
        hidden.append(("refresh", str(q.refresh)))
    chosen_level = q.levels[0] if len(q.levels) == 1 else ""
    levels = "".join(f'<option value="{lv.lower()}"{" selected" if lv == chosen_level else ""}>'
                     f"{lv}</option>" for lv in URGENCY)
    chosen_group = q.selection.groups[0] if len(q.selection.groups) == 1 else ""
    groups = "".join(f'<option value="{escape(g)}"{" selected" if g == chosen_group else ""}>'
                     f"{escape(g)}</option>" for g in view.all_groups)
    return (
        '<form class="filters" id="filters" method="get" role="search">'
        + "".join(f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in hidden)
        + f'<input type="search" name="q" value="{escape(q.text)}" '
        'placeholder="search name, target, message" aria-label="search">'
        f'<select name="level" aria-label="level"><option value="">any level</option>{levels}'
        '</select>'
        f'<select name="group" aria-label="group"><option value="">any group</option>{groups}'
        '</select>'
        f'<label class="nw"><input type="checkbox" name="failing" value="1"'
        f'{" checked" if q.failing else ""}> failing only</label>'
        '<button type="submit">Filter</button> <a class="nw" href="?">clear</a></form>'
    )


def pager(view: View) -> str:
    if view.pages == 1:
        return ""
    q = view.query
    parts = [f'<span class="nw">page {view.page} of {view.pages}</span>']
    if view.page > 1:
        parts.insert(0, f'<a rel="prev" href="{escape(q.link(page=view.page - 1))}">previous</a>')
    if view.page < view.pages:
        parts.append(f'<a rel="next" href="{escape(q.link(page=view.page + 1))}">next</a>')
    return f'<nav class="pages" aria-label="pages">{"".join(parts)}</nav>'


def headline(view: View, status: str) -> str:
    if not view.total:
        return "no probe matches"
    if view.failing:
        return f"{plural(view.total, 'probe')} · {view.failing} failing"
    if status == "OK":
        return f"{plural(view.total, 'probe')}, " + ("OK" if view.total == 1 else "all OK")
    return plural(view.total, "probe")


def page_html(view: View, status: str, now: float, urls: ExternalUrls | None) -> str:
    q: PageQuery = view.query
    body = "".join(group_section(g, now, urls) for g in view.groups)
    if not body:
        body = (f'<p class="empty">No probe matches the filters. '
                f'<a href="{escape(q.link(levels=(), failing=False, text=""))}">Show all</a></p>')
    clock = dt.datetime.fromtimestamp(now, dt.UTC).astimezone()
    updated = (f'<time id="updated" datetime="{escape(iso(now) or "")}" data-clock '
               f'title="{escape(local_text(now))}">{clock.strftime("%H:%M:%S")}</time>')
    shown = (f'<span class="nw">showing {view.shown}</span> · ' if view.shown != view.total else "")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<noscript><meta http-equiv="refresh" content="{q.refresh}"></noscript>'
        f"<title>{status} · probewatch</title><style>{CSS}</style></head>"
        f'<body data-refresh="{q.refresh}">'
        f'<header id="top" class="level-{status}"><div class="top"><h1>probewatch</h1>'
        f'<span class="overall" id="overall" data-status="{status}">{status}</span>'
        f'<span class="meta"><span class="nw">{headline(view, status)}</span> · {shown}'
        f'<span class="nw">updated {updated}</span></span></div>{summary_bar(view)}</header>'
        f"{filter_form(view)}"
        f'<main id="cards">{pager(view)}{body}{pager(view)}</main>'
        f'<footer>Refreshes every {q.refresh} s · <a href="status">/status</a> · '
        '<a href="api/v1/probes">/api/v1/probes</a> · <a href="metrics">/metrics</a></footer>'
        f'<script id="page-script">{JS}</script></body></html>\n'
    )
