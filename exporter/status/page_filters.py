"""The status page's query: what to show, in which order, on which page.

    ?group=G ?label=k:v ?probe=NAME   select probes as /status does
    ?level=critical                   only probes at that level (repeatable, any case)
    ?q=WORDS                          every word in name, kind, target, labels or message
    ?failing=1                        only failing probes (down, or at Warning/Critical)
    ?page=N                           PAGE_SIZE cards a page, failing ones first
    ?refresh=SECONDS                  1-86400, default 10

Empty values (what an untouched form field sends) are ignored; an unknown
parameter or a bad value is a 400, as on /status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from ..probe_state import ProbeState
from .collate import LEVELS, QUERY_KEYS, Selection, level_of, worst

DEFAULT_REFRESH = 10
PAGE_SIZE = 100  # cards a page; the summary bar still counts every probe
PAGE_KEYS = ("level", "q", "failing", "page", "refresh")
KNOWN_KEYS = QUERY_KEYS + PAGE_KEYS
FAILING_LEVELS = frozenset({"Warning", "Critical"})
# Most urgent first: the order of cards inside a group and of the summary bar.
URGENCY = ("Critical", "Warning", "Unknown", "OK")
_RANK = {level: i for i, level in enumerate(URGENCY)}
_BY_LOWER = {name.lower(): name for name in LEVELS}
_YES, _NO = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def page_level(state: ProbeState) -> str:
    """The level a card shows: inactive probes are Unknown."""
    return level_of(state) if state.spec.active else "Unknown"


def is_failing(state: ProbeState, level: str) -> bool:
    return state.spec.active and (state.up is False or level in FAILING_LEVELS)


@dataclass(frozen=True)
class PageQuery:
    selection: Selection = field(default_factory=Selection)
    levels: tuple[str, ...] = ()
    text: str = ""
    failing: bool = False
    page: int = 1
    refresh: int = DEFAULT_REFRESH

    @classmethod
    def parse(cls, query: Mapping[str, Sequence[str]]) -> PageQuery:
        """The page's query; ValueError names the parameter and what is wrong with it."""
        given = {k: [v for v in vs if v.strip()] for k, vs in query.items()}
        unknown = sorted(set(given) - set(KNOWN_KEYS))
        if unknown:
            raise ValueError(f"unknown query parameter {unknown[0]!r} "
                             f"(known: {', '.join(KNOWN_KEYS)})")
        selection = Selection.from_query({k: given[k] for k in QUERY_KEYS if given.get(k)})
        levels = []
        for item in given.get("level", ()):
            level = _BY_LOWER.get(item.strip().lower())
            if level is None:
                raise ValueError(f"level={item!r} must be one of "
                                 f"{', '.join(x.lower() for x in URGENCY)}")
            if level not in levels:
                levels.append(level)
        failing = False
        for item in given.get("failing", ()):
            word = item.strip().lower()
            if word not in _YES | _NO:
                raise ValueError(f"failing={item!r} must be 1 or 0")
            failing = word in _YES
        return cls(selection, tuple(levels), " ".join(given.get("q", ())).strip(), failing,
                   _whole(given, "page", 1, 1_000_000, 1),
                   _whole(given, "refresh", 1, 86400, DEFAULT_REFRESH))

    def link(self, **changes: object) -> str:
        """This query with ``changes`` applied, as "?..." (page 1 unless ``page`` is given)."""
        changes.setdefault("page", 1)
        other = replace(self, **changes)  # type: ignore[arg-type]
        pairs: list[tuple[str, str]] = [("group", g) for g in other.selection.groups]
        pairs += [("label", f"{k}:{v}") for k, v in other.selection.labels]
        pairs += [("probe", p) for p in other.selection.probes]
        pairs += [("level", lv.lower()) for lv in other.levels]
        if other.text:
            pairs.append(("q", other.text))
        if other.failing:
            pairs.append(("failing", "1"))
        if other.page > 1:
            pairs.append(("page", str(other.page)))
        if other.refresh != DEFAULT_REFRESH:
            pairs.append(("refresh", str(other.refresh)))
        return "?" + urlencode(pairs) if pairs else "?"

    def words(self) -> list[str]:
        return self.text.lower().split()


def _whole(given: Mapping[str, Sequence[str]], key: str, low: int, high: int, default: int) -> int:
    values = given.get(key)
    if not values:
        return default
    text = values[-1].strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(f"{key}={text!r} must be a whole number from {low} to {high}"
                         + (" (seconds)" if key == "refresh" else ""))
    return int(text)


def matches_text(state: ProbeState, words: list[str]) -> bool:
    spec, last = state.spec, state.last
    hay = " ".join((spec.name, spec.kind, spec.shown_target, *(f"{k}={v} {v}" for k, v in spec.labels),
                    last.message if last else "", last.reason if last else "")).lower()
    return all(word in hay for word in words)


@dataclass
class Group:
    name: str
    cards: list[tuple[ProbeState, str]]  # (state, level) in display order, on this page
    total: int  # the group's probes among those shown (all pages)
    failing: int
    continued: bool = False  # the group began on an earlier page


@dataclass
class View:
    """What one page shows; counts cover every selected probe, cards only this page's."""

    query: PageQuery
    counts: dict[str, int]  # per level, before the level and failing filters
    failing: int
    inactive: int
    total: int  # probes the selection and text keep
    shown: int  # ... that the level and failing filters also keep
    groups: list[Group]
    page: int
    pages: int
    all_groups: list[str]
    status: str  # the worst level of the active probes the selection and text keep


def _group(state: ProbeState) -> str:
    for key, value in state.spec.labels:
        if key == "group":
            return value
    return ""


def build_view(states: Sequence[ProbeState], query: PageQuery, page_size: int = PAGE_SIZE) -> View:
    words = query.words()
    selection = query.selection
    everything = selection == Selection()
    counts = dict.fromkeys(URGENCY, 0)
    active_levels = []
    by_group: dict[str, list[tuple[ProbeState, str, bool]]] = {}
    all_groups = set()
    failing = inactive = total = shown = 0
    for state in states:
        group = _group(state)
        all_groups.add(group)
        if not everything and not selection.matches(state.spec):
            continue
        if words and not matches_text(state, words):
            continue
        total += 1
        level = page_level(state)
        counts[level] += 1
        fails = is_failing(state, level)
        failing += fails
        if state.spec.active:
            active_levels.append(level)
        else:
            inactive += 1
        if (not query.levels or level in query.levels) and (fails or not query.failing):
            shown += 1
            by_group.setdefault(group, []).append((state, level, fails))
    # Groups with a failing probe first (most urgent first), then by name, ungrouped last.
    order = []
    for name, members in by_group.items():
        members.sort(key=lambda r: (not r[0].spec.active, _RANK[r[1]], r[0].spec.name))
        bad = sum(r[2] for r in members)
        order.append(((not bad, min(_RANK[r[1]] for r in members), not name, name), name, members, bad))
    order.sort(key=lambda item: item[0])
    pages = max(1, -(-shown // page_size))
    page = min(query.page, pages)
    start, stop = (page - 1) * page_size, page * page_size
    groups: list[Group] = []
    position = 0
    for _, name, members, bad in order:
        first, last = position, position + len(members)
        position = last
        if last <= start or first >= stop:
            continue
        visible = members[max(start - first, 0):stop - first]
        groups.append(Group(name, [(s, lv) for s, lv, _ in visible], len(members), bad,
                            continued=first < start))
    return View(query, counts, failing, inactive, total, shown, groups, page, pages,
                sorted(all_groups - {""}), worst(active_levels))

