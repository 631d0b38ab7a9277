"""Read a policy file and report every problem with its line number."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from gatehouse.policy.schema import PolicyDocument, reference_problems

Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class Problem:
    line: int | None
    location: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "document"
        return f"{where}: {self.location + ': ' if self.location else ''}{self.message}"


class PolicyError(Exception):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid policy\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class LoadedPolicy:
    document: PolicyDocument
    text: str
    version: str  # "sha256:<hex>" of the canonical document

    @property
    def short_version(self) -> str:
        return self.version[:19]


def _line_map(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[Problem]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(Problem(key_node.start_mark.line + 1, _dotted(path + (key,)),
                                        f"duplicate key {key!r} (first at line {seen[key]})"))
            seen[key] = key_node.start_mark.line + 1
            lines[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), lines, problems)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines, problems)


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_for(path: Path_, lines: dict[Path_, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _pydantic_path(loc: tuple) -> Path_:
    # Drop pydantic's synthetic parts (validator names, union branches).
    return tuple(part for part in loc if not (isinstance(part, str) and ("[" in part or part.startswith("function-"))))


def version_of(document: PolicyDocument) -> str:
    canonical = orjson.dumps(document.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def load_policy_text(text: str, source: str = "<policy>") -> LoadedPolicy:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(source, [Problem(line, "", f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
    if root is None:
        raise PolicyError(source, [Problem(None, "", "the policy file is empty")])
    problems: list[Problem] = []
    lines: dict[Path_, int] = {}
    _line_map(root, (), lines, problems)
    if problems:
        raise PolicyError(source, problems)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise PolicyError(source, [Problem(1, "", "the policy must be a mapping with version, deployments, aliases, grants")])
    document = None
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = _pydantic_path(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown field {path[-1]!r}" if path else "unknown field"
            problems.append(Problem(_line_for(path, lines), _dotted(path), message))
    problems += [Problem(_line_for(path, lines), _dotted(path), message) for path, message in reference_problems(data)]
    if problems or document is None:
        problems.sort(key=lambda problem: problem.line or 0)
        raise PolicyError(source, problems)
    return LoadedPolicy(document=document, text=text, version=version_of(document))


def load_policy(path: Path | str) -> LoadedPolicy:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PolicyError(str(path), [Problem(None, "", "file not found (create one with `gatehouse init`)")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [Problem(None, "", f"cannot read the file: {exc}")]) from None
    return load_policy_text(text, str(path))
