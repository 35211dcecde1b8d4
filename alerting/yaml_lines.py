"""YAML read with the line of every key, so an error in a rules file can name the line it is on."""

from __future__ import annotations

from typing import Any

import yaml


class Located(dict):  # type: ignore[type-arg]
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int
    lines: dict[str, int]


def load_located(text: str, source: str) -> Any:
    """Parse `text`; mappings become `Located`. A YAML syntax error raises ValueError naming source and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        msg = f"{where}: not valid YAML: {problem}"
        raise ValueError(msg) from None
    # Scalars go through the safe constructor, typed as PyYAML types them (ints, floats, bools, timestamps).
    constructor = yaml.SafeLoader("")
    return None if node is None else _convert(node, constructor)


def _convert(node: yaml.Node, constructor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = Located()
        out.line = node.start_mark.line + 1
        out.lines = {}
        for key_node, value_node in node.value:
            key = str(_convert(key_node, constructor))
            out[key] = _convert(value_node, constructor)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, constructor) for item in node.value]
    return constructor.construct_object(node, deep=True)
