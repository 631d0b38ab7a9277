"""Apply a guardrail profile to a request's text, before it goes anywhere.

Verdicts name the rule, the action, where (which field, which offsets) — never the matched
text. Redaction replaces a span with a numbered placeholder (``[EMAIL_1]``); a block stops the
request with an error that names the rule; flag records; shadow records what the action would
have done and enforces nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gatehouse.guardrails.classifier import classifier_digest
from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.profiles import EffectiveProfile

RAISES_TO_CONFIDENTIAL = frozenset({"pii", "secrets"})


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str       # detector.kind, e.g. pii.email
    action: str     # redact | block | flag
    shadow: bool
    field: str      # where in the request: messages[1].content, prompt, input[0]
    start: int
    end: int
    score: float
    model: str | None = None  # the digest of the classifier that judged (injection.classifier)

    def as_dict(self) -> dict:
        verdict = {"rule": self.rule, "action": self.action, "shadow": self.shadow, "field": self.field,
                   "start": self.start, "end": self.end, "score": round(self.score, 2)}
        if self.model is not None:
            verdict["model"] = self.model
        return verdict


class Blocked(Exception):
    def __init__(self, verdict: Verdict, verdicts: list[Verdict]) -> None:
        super().__init__(verdict.rule)
        self.verdict = verdict
        self.verdicts = verdicts


@dataclass
class Inspection:
    verdicts: list[Verdict]
    sensitive: bool  # PII or secrets go upstream as they are (flagged or shadowed): at least confidential
    originals: dict[str, str] = field(default_factory=dict)  # placeholder → value, for rules with restore


class Unscannable(Exception):
    """Text the detectors cannot read (token ids): refused rather than passed unseen."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


# Keys of the OpenAI request shapes: named in a verdict's field path as they are. Any other key
# is the caller's text (a JSON schema's property names, an extension's fields) and is named by
# its position only, so no decision record ever holds it.
SCHEMA_KEYS = frozenset({"content", "text", "name", "arguments", "function", "tool_calls", "description", "parameters",
                         "refusal", "properties", "items", "required", "enum", "title", "default", "strict", "audio",
                         "data", "reasoning_content", "examples", "type", "url", "schema", "json_schema", "id"})
ID_KINDS = frozenset({"high_entropy"})  # what an id is by design (random): not a finding in one


@dataclass(slots=True)
class TextSite:
    """One piece of the caller's text that goes upstream, where it is and how to change it.

    ``field`` is a JSON path of model vocabulary and indices only (``messages[1].content``,
    ``tools[0].function.parameters.<key 2>``, and ``….keys()[2]`` for that key itself), never
    the caller's text. ``write`` puts a redacted text back: ``container[key] = text``, or
    ``writer`` where the text was decoded from what was sent (a data: URL). A ``url`` site is
    scanned with its query string split into words, so a key in it is judged like any token.
    An ``id`` site is a closed value checked for its format: it is scanned too, but being
    random-looking is what an id is, so ``high_entropy`` findings in it do not count."""

    field: str
    text: str
    container: Any
    key: Any
    kind: str = "text"  # text | id | url
    writer: Callable[[str], None] | None = None

    def write(self, text: str) -> None:
        if self.writer is not None:
            self.writer(text)
        else:
            self.container[self.key] = text

    def scanned(self) -> str:
        """The text the detectors read: the same length as ``text``, so offsets carry over."""
        if self.kind == "url" and "?" in self.text:
            at = self.text.index("?")
            return self.text[:at] + self.text[at:].translate(QUERY_SEPARATORS)
        return self.text


QUERY_SEPARATORS = str.maketrans({"?": " ", "&": " ", "=": " ", ";": " ", "#": " "})


class Renames:
    """The keys of one object that redactions rename, applied together (``apply``): one rebuild
    of the object, keeping the order of its keys, however many are renamed. Renaming each at
    once cost a rebuild per key, quadratic in a schema of thousands of addresses."""

    __slots__ = ("mapping", "names")

    def __init__(self, mapping: dict[Any, Any]) -> None:
        self.mapping = mapping
        self.names: dict[Any, str] = {}  # old key → new

    def apply(self) -> None:
        if self.names:
            pairs = [(self.names.get(old, old), item) for old, item in self.mapping.items()]
            self.mapping.clear()
            self.mapping.update(pairs)
            self.names.clear()


class KeyOf:
    """Where an object's key is written: ``holder[anything] = name`` renames the key in ``cell``
    once its ``renames`` are applied (``inspect_input`` does, after writing every site; the order
    of the keys is kept); until then ``ValueOf`` with the same cell writes its value under the
    key's old name."""

    __slots__ = ("mapping", "cell", "renames")

    def __init__(self, mapping: dict[Any, Any], cell: list[Any], renames: Renames | None = None) -> None:
        self.mapping, self.cell = mapping, cell
        self.renames = renames if renames is not None else Renames(mapping)

    def __setitem__(self, _: Any, name: str) -> None:
        self.renames.names[self.cell[0]] = name


class ValueOf:
    __slots__ = ("mapping", "cell")

    def __init__(self, mapping: dict[Any, Any], cell: list[Any]) -> None:
        self.mapping, self.cell = mapping, cell

    def __setitem__(self, _: Any, value: Any) -> None:
        self.mapping[self.cell[0]] = value


def key_label(name: Any, position: int) -> str:
    return name if name in SCHEMA_KEYS else f"<key {position}>"


def text_sites(value: Any, field: str, container: Any, key: Any, limit: int | None = None) -> list[TextSite]:
    """Every string in ``value`` and every key of every object in it, as sites, in document
    order (empty ones hold nothing to scan). Iterative, depth first: however deep the value, no
    recursion, and a path is made only for a string or an object or array on the way to one (a
    million numbers cost no paths). With ``limit``, the walk stops once it has found that many
    (the caller refuses the value)."""
    sites: list[TextSite] = []
    # each open array or object: its path, itself, its keys' cells (None for an array), what is left of it
    stack: list[tuple[str, Any, list[list[Any]] | None, Iterator[tuple[int, Any]]]] = []

    def visit(item: Any, where: str, holder: Any, name: Any) -> None:
        if isinstance(item, str):
            if item:
                sites.append(TextSite(where, item, holder, name))
        elif isinstance(item, dict):
            renames, cells = Renames(item), []
            for position, inner_name in enumerate(item):
                cell = [inner_name]
                cells.append(cell)
                if isinstance(inner_name, str) and inner_name:
                    sites.append(TextSite(f"{where}.keys()[{position}]", inner_name, KeyOf(item, cell, renames), None))
            stack.append((where, item, cells, enumerate(item.values())))
        elif isinstance(item, list):
            stack.append((where, item, None, enumerate(item)))

    visit(value, field, container, key)
    while stack and (limit is None or len(sites) < limit):
        where, item, cells, entries = stack[-1]
        for index, inner in entries:
            if not isinstance(inner, str | dict | list):
                continue
            if cells is None:
                visit(inner, f"{where}[{index}]", item, index)
            else:
                cell = cells[index]
                visit(inner, f"{where}.{key_label(cell[0], index)}", ValueOf(item, cell), None)
            if not isinstance(inner, str) or (limit is not None and len(sites) >= limit):
                break  # into the object or array just opened (or stop at the limit)
        else:
            stack.pop()
    return sites


def _texts(endpoint: str, body: dict[str, Any]) -> list[TextSite]:
    """The caller's text of the fields every endpoint sends (messages, tools; prompt, suffix;
    input), for callers that have no model of the request (``inspect_input`` without sites).
    The gateway passes the sites of its request model instead (``api.request_model``).
    Token-id prompts and inputs cannot be read: Unscannable."""
    if endpoint == "chat/completions":
        return text_sites(body.get("messages"), "messages", body, "messages") + text_sites(
            body.get("tools"), "tools", body, "tools")
    key = "prompt" if endpoint == "completions" else "input"
    value = body.get(key)
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, int | list) for item in items):
        raise Unscannable(key)
    sites = text_sites(value, key, body, key)
    if endpoint == "completions":
        sites += text_sites(body.get("suffix"), "suffix", body, "suffix")
    return sites


def caller_text(endpoint: str, body: dict[str, Any], sites: list[TextSite] | None = None) -> str:
    """Every string of the caller's that goes upstream, one per line (for counting tokens)."""
    return "\n".join(site.text for site in (sites if sites is not None else _texts(endpoint, body)))


def redact(text: str, spans: list[Finding], counters: dict[str, int],
           originals: dict[str, str] | None = None, restorable: Callable[[Finding], bool] | None = None) -> str:
    """Replace each span (sorted by start) with a placeholder; overlapping spans become one,
    named after the first, so no part of either is left in the text. With ``originals``, each
    placeholder whose spans are all ``restorable`` is mapped to the text it replaced."""
    pieces: list[str] = []
    position = 0
    group: list[Finding] = []  # the spans behind the latest placeholder

    def remember() -> None:
        if originals is not None and group and restorable is not None and all(map(restorable, group)):
            originals[pieces[-1]] = text[group[0].start:position]

    for finding in spans:
        if finding.start < position:  # overlaps the previous placeholder: extend it
            position = max(position, finding.end)
            group.append(finding)
            continue
        remember()
        counters[finding.kind] = counters.get(finding.kind, 0) + 1
        pieces += [text[position:finding.start], f"[{finding.kind.upper()}_{counters[finding.kind]}]"]
        position, group = finding.end, [finding]
    remember()
    return "".join(pieces) + text[position:]


def inspect_input(profile: EffectiveProfile, endpoint: str, body: dict[str, Any],
                  sites: list[TextSite] | None = None, binary_bytes: int = 0) -> Inspection:
    """Scan and act, changing ``body`` in place for redactions (through the sites: the
    request model's when given). ``binary_bytes`` (content the detectors cannot read: images,
    audio) counts towards ``max_input_bytes``. Raises Blocked or Unscannable."""
    texts = sites if sites is not None else _texts(endpoint, body)
    if profile.max_input_bytes is not None:  # before any scanning: an oversized body costs nothing more
        size = sum(len(site.text.encode()) for site in texts) + binary_bytes
        if size > profile.max_input_bytes:
            verdict = Verdict("size.max_input_bytes", "block", False, "*", 0, size, 1.0)
            raise Blocked(verdict, [verdict])
    verdicts: list[Verdict] = []
    blocked: Verdict | None = None
    sensitive = False
    counters: dict[str, int] = {}
    originals: dict[str, str] = {}

    def restorable(finding: Finding) -> bool:
        return profile.rules[finding.detector].restore

    scanned: dict[str, list[Finding]] = {}  # the same text gives the same findings: a schema repeats its keys

    for site in texts:
        redactions: list[Finding] = []
        view = site.scanned()
        findings = scanned.get(view)
        if findings is None:
            findings = scanned[view] = sorted(profile.scan(view), key=lambda f: (f.start, -f.end))
        for finding in findings:
            if site.kind == "id" and finding.kind in ID_KINDS:
                continue
            rule = profile.rules[finding.detector]
            verdict = Verdict(f"{finding.detector}.{finding.kind}", rule.action, rule.shadow, site.field,
                              finding.start, finding.end, finding.score,
                              classifier_digest(profile.classifier) if finding.kind == "classifier" else None)
            verdicts.append(verdict)
            if rule.shadow:
                continue  # recorded; nothing enforced, not even a higher data class
            if rule.action == "flag":
                sensitive = sensitive or finding.detector in RAISES_TO_CONFIDENTIAL
            elif rule.action == "block" and blocked is None:
                blocked = verdict
            elif rule.action == "redact":
                redactions.append(finding)
        if redactions and blocked is None:
            site.text = redact(site.text, redactions, counters, originals, restorable)
            site.write(site.text)
    for site in texts:  # renamed keys, each object rebuilt once
        if isinstance(site.container, KeyOf):
            site.container.renames.apply()
    if blocked is not None:
        raise Blocked(blocked, verdicts)
    return Inspection(verdicts, sensitive, originals)
