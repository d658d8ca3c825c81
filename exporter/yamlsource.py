"""YAML loading that remembers the line of every mapping key and list item.

Config errors name ``FILE:LINE``; PyYAML's safe loader forgets positions once it
builds plain dicts, so mappings and lists here carry their lines alongside.

Two ways to the same result.  The fast one reads libyaml's event stream and
builds LineDict/LineList directly, with each line from the event's mark: no
node tree, no per-node constructor calls (a config of 100,000 probes loads in
a fraction of the time).  It takes only plain YAML (no tags, anchors,
aliases, merge keys, duplicate or non-string keys); on anything else, and on
any error, the document is loaded again by the node-based loader below, so
every message a user sees (and every line it names) is that loader's.
"""

from __future__ import annotations

import gc
from typing import Any

import yaml

from .problems import ConfigError, ConfigProblem


class LineDict(dict[str, Any]):
    """A dict that knows the line of each key (1-based) and of itself."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    """A list that knows the line of each item and of itself."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


# libyaml's parser when PyYAML was built with it: ten times faster on large configs.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # merged (``<<:``) pairs first: the mapping's own keys override them
    merged = len(node.value) - own
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    own_keys: set[str] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):  # as written: `on:` is the key "on", not "True"
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key)
        if index >= merged and key in own_keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        if index >= merged:
            own_keys.add(key)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


class YamlError(ConfigError):
    """A syntax error: a ConfigError with one problem, its line and message (no file yet)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__([ConfigProblem(line=line, message=message)])
        self.line = line
        self.message = message


class _Fallback(Exception):
    """The fast path met something only the node-based loader handles."""


_STR = "tag:yaml.org,2002:str"
# Implicit tags of plain scalars the fast path builds; any other tag falls back.
_SCALAR_TAGS = frozenset({"tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                          "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"})
_MAX_FAST_DEPTH = 64  # deeper documents take the node-based path (its "nested too deeply")


def _fast_load(text: str) -> Any:
    """The document built from libyaml's events; _Fallback when it is not plain YAML."""
    if not hasattr(yaml, "CSafeLoader"):
        raise _Fallback
    events = yaml.events
    scalar_ev, map_start, map_end = events.ScalarEvent, events.MappingStartEvent, events.MappingEndEvent
    seq_start, seq_end = events.SequenceStartEvent, events.SequenceEndEvent
    resolvers = _Loader.yaml_implicit_resolvers
    wildcard = resolvers.get(None, [])
    constructors = _Loader.yaml_constructors
    node_cls = yaml.ScalarNode
    parser = yaml.CSafeLoader(text)
    try:
        get: Any = parser.get_event
        get()  # StreamStart
        if isinstance(parser.peek_event(), events.StreamEndEvent):
            return None
        get()  # DocumentStart
        # The open container, whether it is a mapping, its key_lines or item_lines, and the
        # key read but not yet given a value; ``stack`` saves those of the enclosing ones.
        stack: list[tuple[Any, bool, Any, Any]] = []
        container: Any = None
        is_map = False
        lines: Any = None
        key: Any = None
        root: Any = None
        plain_tags: dict[str, str] = {}
        texts: dict[str, str] = {}
        ended = False  # the loop stopped at the document's end (an empty document)
        while True:
            event = get()
            cls = type(event)
            if cls is scalar_ev:
                if event.anchor is not None or (event.tag is not None and event.tag != _STR):
                    raise _Fallback
                value = event.value
                if event.implicit[0] and event.tag is None:
                    tag = plain_tags.get(value)
                    if tag is None:  # the resolver's own rule, remembered per text
                        tag = _STR
                        for rtag, regexp in (resolvers.get(value[0] if value else "", []) + wildcard):
                            if regexp.match(value):
                                tag = rtag
                                break
                        if len(value) < 32:
                            plain_tags[value] = tag
                    if tag != _STR:
                        if tag not in _SCALAR_TAGS:
                            raise _Fallback
                        node = node_cls(tag, value, event.start_mark, event.end_mark, event.style)
                        value = constructors[tag](parser, node)
                if type(value) is str and len(value) < 64:
                    # One object per text: the keys and the values repeated probe after
                    # probe (a kind, a target, a period) are held, and pickled, once.
                    value = texts.setdefault(value, value)
                if container is None:
                    root = value
                    break
                if is_map:
                    if key is None:
                        if type(value) is not str or value in lines or value == "<<":
                            raise _Fallback
                        key = value
                        lines[value] = event.start_mark.line + 1
                    else:
                        container[key] = value
                        key = None
                else:
                    container.append(value)
                    lines.append(event.start_mark.line + 1)
            elif cls is map_start or cls is seq_start:
                if event.anchor is not None or event.tag is not None or len(stack) >= _MAX_FAST_DEPTH:
                    raise _Fallback
                line = event.start_mark.line + 1
                item: Any
                new_lines: Any
                if cls is map_start:
                    item = LineDict()
                    item.key_lines = new_lines = {}
                else:
                    item = LineList()
                    item.item_lines = new_lines = []
                item.line = line
                if container is None:
                    root = item
                else:
                    if is_map:
                        if key is None:  # a mapping or list as a key
                            raise _Fallback
                        container[key] = item
                        key = None
                    else:
                        container.append(item)
                        lines.append(line)
                    stack.append((container, is_map, lines, None))
                container, is_map, lines, key = item, cls is map_start, new_lines, None
            elif cls is map_end or cls is seq_end:
                if not stack:
                    break
                container, is_map, lines, key = stack.pop()
            elif cls is events.DocumentEndEvent:
                ended = True
                break
            else:  # an alias
                raise _Fallback
        if not ended and not isinstance(get(), events.DocumentEndEvent):
            raise _Fallback
        if not isinstance(parser.peek_event(), events.StreamEndEvent):
            raise _Fallback  # a second document: the node-based loader says so
        return root
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, LookupError):
        raise _Fallback from None
    finally:
        parser.dispose()


def load_yaml(text: str) -> Any:
    """Parse YAML text; raise YamlError(line, message) on a syntax error (``.located(file)`` adds the file)."""
    # Building large trees triggers the cyclic collector over and over, for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            return _fast_load(text)
        except _Fallback:
            pass
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or str(exc)
        context = f" ({exc.context})" if exc.context else ""
        raise YamlError(line, f"invalid YAML: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise YamlError(0, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlError(0, "invalid YAML: nested too deeply") from None
    finally:
        if enabled:
            gc.enable()
