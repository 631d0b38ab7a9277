"""Read a YAML document into a pydantic model, reporting every problem with its line number.

Shared by the policy file and the benchmark scenario file: both are written by hand, and a
"line 14: grants[2].aliases: unknown alias" beats a stack of validator output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Path_ = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    line: int | None
    location: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "document"
        return f"{where}: {self.location + ': ' if self.location else ''}{self.message}"


class DocumentError(Exception):
    kind = "document"

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid {self.kind}\n" + "\n".join(f"  {p}" for p in problems))


# libyaml when PyYAML was built with it: a 2,000-grant policy parses in a tenth of the time.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

def _line_map(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[Problem]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(key_node.start_mark.line + 1, dotted(path), "keys must be plain names, not lists or maps"))
                continue
            key = key_node.value
            if key in seen:
                problems.append(Problem(key_node.start_mark.line + 1, dotted(path + (key,)),
                                        f"duplicate key {key!r} (first at line {seen[key]})"))
            seen[key] = key_node.start_mark.line + 1
            lines[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), lines, problems)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines, problems)


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_for(path: Path_, lines: dict[Path_, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _pydantic_path(loc: tuple[int | str, ...]) -> Path_:
    # Drop pydantic's synthetic parts (validator names, union branches and tags).
    return tuple(part for part in loc if not (isinstance(part, str) and ("[" in part or part.startswith("function-"))))


def read_document(path: Path, error: type[DocumentError], missing: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise error(str(path), [Problem(None, "", missing)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), [Problem(None, "", f"cannot read the file: {exc}")]) from None


MAX_DEPTH = 64  # far more than any policy or scenario needs; the composer recurses per level


def _shape_problem(text: str) -> Problem | None:
    """Refuse, from the token stream (which is read without recursion), what would make
    composing the document dangerous: nesting deep enough to exhaust the C stack, and anchors
    and aliases (a few hundred bytes of nested aliases expand to billions of nodes)."""
    depth = 0
    for token in yaml.scan(text, Loader=SAFE_LOADER):
        if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
            return Problem(token.start_mark.line + 1, "", "anchors and aliases (&name, *name) are not allowed")
        if isinstance(token, yaml.BlockMappingStartToken | yaml.BlockSequenceStartToken
                      | yaml.FlowMappingStartToken | yaml.FlowSequenceStartToken):
            depth += 1
            if depth > MAX_DEPTH:
                return Problem(token.start_mark.line + 1, "", f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(token, yaml.BlockEndToken | yaml.FlowMappingEndToken | yaml.FlowSequenceEndToken):
            depth -= 1
    return None


def load_document(
    text: str,
    source: str,
    model: type[M],
    error: type[DocumentError],
    empty_message: str,
    not_mapping_message: str,
    more_problems: Callable[[dict[str, Any]], Iterable[tuple[Path_, str]]] = lambda data: (),
    adjust_path: Callable[[Path_, dict[str, Any]], Path_] = lambda path, data: path,
) -> M:
    try:
        shape_problem = _shape_problem(text)
        if shape_problem is not None:
            raise error(source, [shape_problem])
        root = yaml.compose(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise error(source, [Problem(line, "", f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
    if root is None:
        raise error(source, [Problem(None, "", empty_message)])
    problems: list[Problem] = []
    lines: dict[Path_, int] = {}
    _line_map(root, (), lines, problems)
    if problems:
        raise error(source, problems)
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:  # e.g. a tag such as !!python/name that safe loading refuses
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or exc
        raise error(source, [Problem(mark.line + 1 if mark else None, "", f"not allowed in this file: {reason}")]) from None
    except (ValueError, TypeError) as exc:  # e.g. !!float abc
        raise error(source, [Problem(None, "", f"a value cannot be read: {exc}")]) from None
    if not isinstance(data, dict):
        raise error(source, [Problem(1, "", not_mapping_message)])
    document = None
    try:
        document = model.model_validate(data)
    except ValidationError as exc:
        for item in exc.errors():
            path = adjust_path(_pydantic_path(item["loc"]), data)
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = f"unknown field {path[-1]!r}" if path else "unknown field"
            problems.append(Problem(_line_for(path, lines), dotted(path), message))
    problems += [Problem(_line_for(path, lines), dotted(path), message) for path, message in more_problems(data)]
    if problems or document is None:
        problems.sort(key=lambda problem: problem.line or 0)
        raise error(source, problems)
    return document


def mapping_in(value: object) -> dict[Any, Any]:
    """``value`` if it is a mapping, else empty: cross-reference checks read the raw document
    before it is validated, and must not fail on a wrong shape the schema will report."""
    return value if isinstance(value, dict) else {}


def items_in(value: object) -> list[Any]:
    """``value`` if it is a list, else empty, for the same reason."""
    return value if isinstance(value, list) else []
