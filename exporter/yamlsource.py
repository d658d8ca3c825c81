"""YAML loading that remembers the line of every mapping key and list item.

Config errors name ``FILE:LINE``; PyYAML's safe loader forgets positions once it
builds plain dicts, so mappings and lists here carry their lines alongside.
"""

from __future__ import annotations

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


def load_yaml(text: str) -> Any:
    """Parse YAML text; raise YamlError(line, message) on a syntax error (``.located(file)`` adds the file)."""
    try:
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
