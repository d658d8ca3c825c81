"""GET /: the status page for people, rendered here, with no outside assets.

Failing groups and probes first, a summary bar of counts per level (each a
filter link), a filter form (level, group, free text, failing only) that works
as plain query parameters, one card per probe with its code and reason when
failing, uptime, latency, runs and alert threshold, and links to its API
document and, when ``web.external_urls`` is configured, to Grafana and
Prometheus.  Query parameters: see page_filters.py; unknown ones are a 400,
as on /status.  Markup: page_render.py; style and script: page_assets.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..config import ExternalUrls
from ..probe_state import ProbeState
from ..routing import Request, Response
from ..service import Exporter
from .collate import Selection
from .page_filters import DEFAULT_REFRESH, PAGE_SIZE, PageQuery, build_view
from .page_render import page_html

__all__ = ["DEFAULT_REFRESH", "PAGE_SIZE", "StatusPage", "render"]


def render(states: Sequence[ProbeState], selection: Selection | None = None,
           refresh: int = DEFAULT_REFRESH, now: float | None = None, *,
           query: PageQuery | None = None, urls: ExternalUrls | None = None) -> str:
    """The page's HTML for ``states``; ``query`` (when given) overrides selection and refresh."""
    if query is None:
        query = PageQuery(selection=selection or Selection(), refresh=refresh)
    view = build_view(states, query)
    return page_html(view, view.status, time.time() if now is None else now, urls)


class StatusPage:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def get(self, request: Request) -> Response:
        try:
            query = PageQuery.parse(request.query)
        except ValueError as exc:
            return Response.text(f"{exc}\n", 400)
        config = self.exporter.config
        urls = config.web.external_urls if config is not None else None
        html = render(self.exporter.scheduler.states(), query=query, urls=urls)
        return Response(200, html.encode(), "text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
