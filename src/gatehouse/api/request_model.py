"""What each inference endpoint's request may hold, field by field: a model, not a skip list.

Every field of a request is one of three things:

- **text**, scanned by the guardrails (``text`` for a string, ``free_form`` for any JSON value:
  a tool's JSON schema, a vLLM ``documents`` list — every string and every key in it);
- a **closed value**, checked here: an enum, a bounded number, a boolean, an id of a fixed format
  (ids are scanned too, for known secret formats and personal data);
- anything else is **refused**: 400 naming the field by its JSON path, never its value.

Fields an engine takes beyond the OpenAI shape (vLLM's ``documents``, ``chat_template``,
``guided_json``…) are refused unless the alias's ``requests.extra_fields`` names them; they are
then free-form text. ``check_request`` walks the body once and returns the ``Shape``: the text
sites the guardrails scan (and write redactions through), the binary content they cannot read,
token ids, and where remote URLs are.

The model's own depth is fixed (a message, its content parts, their URL), so walking it
recurses only that far; free-form values are walked iteratively (``guardrails.inspect``).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatehouse.api.errors import ApiError
from gatehouse.engines.spec import Deployment, EmbeddedSettings
from gatehouse.guardrails.inspect import KeyOf, Renames, TextSite, ValueOf, text_sites
from gatehouse.policy.schema import DEFAULT_OUTPUT_TOKENS

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")   # tool-call ids, file ids, audio ids, voices
TOKEN_ID = re.compile(r"\d{1,10}")                         # logit_bias keys
DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.A)
TEXT_TYPES = re.compile(r"text/[\w.+-]+|application/(?:json|xml|x-yaml|yaml|csv|javascript|x-www-form-urlencoded)"
                        r"|[\w.+-]+/[\w.+-]+\+(?:json|xml)")
# A data: URL's type and parameters that hold nothing but a common media type (and ;charset=utf-8):
# not scanned; any other (``image/png;name=…``, a made-up type) is the caller's text and is.
PLAIN_HEAD = re.compile(r"(?:(?:image/(?:png|jpeg|jpg|gif|webp|bmp|tiff|heic|heif|avif|svg\+xml)"
                        r"|audio/(?:wav|x-wav|wave|mpeg|mp3|ogg|flac|webm|mp4|aac|opus)|video/(?:mp4|webm|mpeg|quicktime)"
                        r"|application/(?:pdf|json|octet-stream)|text/(?:plain|csv|markdown|html|xml))"
                        r"(?:;charset=(?:utf-8|us-ascii))?)?(?:;base64)?", re.I)
URL_SAFE = ":/?#[]@!$&'()*+,;=~"  # what stays as it is when a redacted URL is encoded again
INT64 = 2**63 - 1
MAX_ITEMS = 100_000  # a list or object of the model holds at most this many entries (the body's size bounds it first)
# Different strings (keys included) one request may hold: each costs the detectors a fixed ~50 µs,
# so a body of a few MB cut into short strings would hold a worker for tens of seconds. A string
# repeated (a tool schema's "type", "string") is scanned once; all of them are walked, up to MAX_SITES.
MAX_TEXT_SITES = 20_000
MAX_SITES = 200_000


@dataclass
class Shape:
    """What a request holds, once checked."""

    sites: list[TextSite] = field(default_factory=list)  # the caller's text, where it is
    binary_bytes: int = 0                                 # decoded images, audio, files: not readable as text
    token_ids: str | None = None                          # the first field holding token ids (unreadable)
    remote_urls: list[str] = field(default_factory=list)  # paths of http(s) URLs the engine would fetch


Checker = Callable[[Any, str, Any, Any, Shape], None]  # (value, path, container, key, the shape being filled)


def refuse(path: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, f"{path}: {message}", code, path)


# Fields engines take beyond OpenAI's (vLLM, SGLang, llama-server, Ollama, TGI): refused unless
# the policy allows them, and the only unknown names an error repeats — any other key is the
# caller's text, named by its position.
ENGINE_FIELDS = frozenset({
    "documents", "chat_template", "chat_template_kwargs", "guided_json", "guided_regex", "guided_choice",
    "guided_grammar", "guided_decoding_backend", "guided_whitespace_pattern", "structural_tag", "structured_outputs",
    "add_generation_prompt", "continue_final_message", "add_special_tokens", "min_tokens", "min_p",
    "repetition_penalty", "length_penalty", "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens",
    "truncate_prompt_tokens", "prompt_logprobs", "allowed_token_ids", "bad_words", "stop_token_ids",
    "include_stop_str_in_output", "use_beam_search", "priority", "request_id", "mm_processor_kwargs",
    "return_tokens_as_token_ids", "cache_salt", "kv_transfer_params", "vllm_xargs", "prompt_embeds", "regex", "ebnf",
    "lora_path", "return_hidden_states", "separate_reasoning", "stream_reasoning", "typical_p", "mirostat",
    "mirostat_tau", "mirostat_eta", "tfs_z", "repeat_penalty", "repeat_last_n", "penalize_nl", "n_probs", "min_keep",
    "grammar", "json_schema", "cache_prompt", "samplers", "keep_alive", "options", "format", "think", "raw",
    "template", "context", "images", "id_slot", "dynatemp_range", "dry_multiplier", "xtc_probability", "top_n_sigma",
})


def shown(name: Any, position: int) -> str:
    """How an unknown key is named in an error: as itself when it is a field name Gatehouse
    knows (of any endpoint, or an engine's), else by its position — the caller's own text never
    comes back in an error."""
    if isinstance(name, str) and (name in ENGINE_FIELDS or name in KNOWN_NAMES):
        return name
    return f"<key {position}>"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# -- the checkers -------------------------------------------------------------------------------

def text(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    if not isinstance(value, str):
        raise refuse(path, "must be a string")
    if value:
        shape.sites.append(TextSite(path, value, container, key))


def free_form(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    """Any JSON value: every string and every key in it is the caller's text."""
    shape.sites.extend(text_sites(value, path, container, key, MAX_SITES + 1 - len(shape.sites)))
    if len(shape.sites) > MAX_SITES:
        raise too_many_strings(f"{MAX_SITES:,} strings")


def too_many_strings(what: str) -> ApiError:
    return ApiError(400, f"the request holds more than {what} (object keys included): send fewer, longer ones",
                    "too_many_strings")


def identifier(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise refuse(path, "must be an id: up to 128 letters, digits and _ . : -")
    shape.sites.append(TextSite(path, value, container, key, "id"))


def boolean(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    if not isinstance(value, bool):
        raise refuse(path, "must be true or false")


def integer(low: int, high: int) -> Checker:
    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise refuse(path, f"must be an integer from {low} to {high}")
    return check


def number(low: float, high: float) -> Checker:
    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            raise refuse(path, f"must be a number from {low:g} to {high:g}")
    return check


def enum(*values: str) -> Checker:
    allowed = frozenset(values)

    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        if not isinstance(value, str) or value not in allowed:
            raise refuse(path, f"must be one of {', '.join(values)}")
    return check


def items(item: Checker, low: int = 0, high: int = MAX_ITEMS) -> Checker:
    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        if not isinstance(value, list) or not low <= len(value) <= high:
            raise refuse(path, f"must be a list of {low} to {high} items" if low else f"must be a list of at most {high} items")
        for index, inner in enumerate(value):
            item(inner, f"{path}[{index}]", value, index, shape)
    return check


def mapping(key_check: Checker, value_check: Checker, high: int) -> Checker:
    """An object whose keys are data (``metadata``, ``logit_bias``): keys checked like values."""
    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        if not isinstance(value, dict) or len(value) > high:
            raise refuse(path, f"must be an object of at most {high} entries")
        renames = Renames(value)
        for position, (name, inner) in enumerate(list(value.items())):
            cell = [name]
            key_check(name, f"{path}.keys()[{position}]", KeyOf(value, cell, renames), 0, shape)
            value_check(inner, f"{path}.<key {position}>", ValueOf(value, cell), 0, shape)
    return check


def either(*choices: tuple[type | tuple[type, ...], Checker], expected: str) -> Checker:
    """The first checker whose JSON type the value has (``str`` → one, ``list`` → another)."""
    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        for types, checker in choices:
            if isinstance(value, types) and not isinstance(value, bool):
                checker(value, path, container, key, shape)
                return
        raise refuse(path, f"must be {expected}")
    return check


def obj(fields: dict[str, Checker], required: tuple[str, ...] = ()) -> Checker:
    """An object of known fields; ``null`` for a field is the field left out; any other key is refused."""
    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        if not isinstance(value, dict):
            raise refuse(path, "must be an object")
        _fields(value, path, fields, required, shape, frozenset())
    return check


def tagged(tag: str, shapes: dict[str, dict[str, Checker]], required: dict[str, tuple[str, ...]] | None = None) -> Checker:
    """An object whose ``tag`` field (``type``) says which fields it has."""
    needed = required or {}

    def check(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
        if not isinstance(value, dict):
            raise refuse(path, "must be an object")
        kind = value.get(tag)
        if not isinstance(kind, str) or kind not in shapes:
            raise refuse(join(path, tag), f"must be one of {', '.join(shapes)}")
        _fields(value, path, {tag: _tag, **shapes[kind]}, needed.get(kind, ()), shape, frozenset())
    return check


def _tag(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    pass  # checked by ``tagged`` before the fields


def url(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    """An image's, file's or audio's address: a data: URL is content (its text scanned when it
    is text, else counted as binary); an http(s) URL is text (a key in its query string is a
    secret) that the engine will fetch."""
    if not isinstance(value, str):
        raise refuse(path, "must be a string: an https:// or data: URL")
    if value[:5].lower() == "data:":
        _data_url(value, path, container, key, shape)
        return
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    try:
        netloc = urllib.parse.urlsplit(value).netloc
    except ValueError:  # an unbalanced [ in the host ("https://[::1")
        netloc = ""
    if scheme not in ("http", "https") or not netloc:
        raise refuse(path, "must be an http(s):// or data: URL")
    shape.remote_urls.append(path)
    decoded = urllib.parse.unquote(value)  # jane%40example.com is an address too
    if decoded == value:
        shape.sites.append(TextSite(path, value, container, key, "url"))
        return

    def replace(redacted: str) -> None:  # only when something was redacted: the URL is changed anyway
        container[key] = urllib.parse.quote(redacted, safe=URL_SAFE)
    shape.sites.append(TextSite(path, decoded, container, key, "url", writer=replace))


def _data_url(value: str, path: str, container: Any, key: Any, shape: Shape) -> None:
    header = DATA_URL.match(value)
    if header is None:
        raise refuse(path, "is not a well-formed data: URL (data:[type/subtype][;base64],…)")
    payload = value[header.end():]
    media = (header.group("type") or "text/plain").lower()
    encoded = header.group("b64") is not None
    try:
        raw = base64.b64decode(payload, validate=True) if encoded else urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise refuse(path, "holds data that is not valid base64") from None
    # The type and parameters (``image/png;name=…``) go upstream as they are: the caller's text
    # too, scanned; each part is written back with the other as it is now.
    parts = {"head": value[5:header.end() - 1], "payload": payload}

    def whole() -> str:
        return f"data:{parts['head']},{parts['payload']}"

    def replace_head(redacted: str) -> None:
        parts["head"] = redacted
        container[key] = whole()
    if not PLAIN_HEAD.fullmatch(parts["head"]):
        shape.sites.append(TextSite(path, parts["head"], container, key, writer=replace_head))

    def rewrite(redacted: str) -> str:  # the engine gets the redacted text, encoded as it was sent
        parts["payload"] = base64.b64encode(redacted.encode()).decode() if encoded else urllib.parse.quote(redacted)
        return whole()
    if not _content(raw, path, container, key, shape, rewrite) and TEXT_TYPES.fullmatch(media):
        raise refuse(path, f"says {media} but its data is not UTF-8 text")


def _content(raw: bytes, path: str, container: Any, key: Any, shape: Shape, rewrite: Callable[[str], str]) -> bool:
    """Decoded bytes: scanned as text when they are UTF-8 text, whatever type they claim (a
    label is the caller's to choose), else counted as binary. Returns whether they were text."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        shape.binary_bytes += len(raw)
        return False

    def replace(redacted: str) -> None:
        container[key] = rewrite(redacted)
    if decoded:
        shape.sites.append(TextSite(path, decoded, container, key, writer=replace))
    return True


def base64_data(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    """Audio or file bytes in base64 (or a data: URL): text when they decode to UTF-8 text,
    else binary, counted."""
    if isinstance(value, str) and value[:5].lower() == "data:":
        _data_url(value, path, container, key, shape)
        return
    if not isinstance(value, str):
        raise refuse(path, "must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise refuse(path, "is not valid base64") from None
    _content(raw, path, container, key, shape, lambda redacted: base64.b64encode(redacted.encode()).decode())


def token_ids(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    """A list of token ids, or a list of such lists: valid, but no guardrail can read it."""
    rows = value if value and isinstance(value[0], list) else [value]
    for row_index, row in enumerate(rows):
        where = f"{path}[{row_index}]" if rows is value else path
        if not isinstance(row, list) or not row:
            raise refuse(where, "must be a non-empty list of token ids")
        for index, token in enumerate(row):
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < 2**31:
                raise refuse(f"{where}[{index}]", "must be a token id (an integer from 0 to 2147483647)")
    if shape.token_ids is None:
        shape.token_ids = path


def prompt_list(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    """A list of strings, or token ids (one list, or a list of lists)."""
    if not value:
        raise refuse(path, "must not be empty")
    if all(isinstance(item, str) for item in value):
        items(text)(value, path, container, key, shape)
    else:
        token_ids(value, path, container, key, shape)


def _fields(value: dict[str, Any], path: str, fields: dict[str, Checker], required: tuple[str, ...], shape: Shape,
            extra: frozenset[str]) -> None:
    for name in required:
        if value.get(name) is None:
            raise refuse(join(path, name), "required")
    for position, (name, inner) in enumerate(list(value.items())):
        checker = fields.get(name) if isinstance(name, str) else None
        if checker is None and name in extra:
            checker = free_form
        if checker is None:
            where = join(path, shown(name, position))
            raise refuse(where, "unknown field: not part of this request's shape"
                         + (" (an engine-specific field is allowed only where the alias's requests.extra_fields "
                            "names it)" if not path else ""), "unknown_field")
        if inner is not None:
            checker(inner, join(path, name), value, name, shape)


# -- the endpoints -----------------------------------------------------------------------------

MAX_TOKENS_CEILING = INT64  # the type's; the route's bound is applied by the gateway (``output_token_limit``)
TEXT_PART: dict[str, Checker] = {"text": text}
CONTENT_PARTS = tagged("type", {
    "text": TEXT_PART,
    "image_url": {"image_url": either((str, url), (dict, obj({"url": url, "detail": enum("auto", "low", "high")},
                                                              ("url",))), expected="a URL or {url, detail}")},
    "input_audio": {"input_audio": obj({"data": base64_data, "format": enum("wav", "mp3")}, ("data",))},
    "file": {"file": obj({"file_data": base64_data, "file_id": identifier, "filename": text})},
    "refusal": {"refusal": text},
}, {"text": ("text",), "image_url": ("image_url",), "input_audio": ("input_audio",), "file": ("file",),
    "refusal": ("refusal",)})
CONTENT = either((str, text), (list, items(CONTENT_PARTS)), expected="a string or a list of content parts")
FUNCTION_CALL = obj({"name": text, "arguments": text})
TOOL_CALL_UNTYPED = obj({"id": identifier, "type": enum("function"), "function": FUNCTION_CALL})
MESSAGE = obj({
    "role": enum("system", "developer", "user", "assistant", "tool", "function"),
    "content": CONTENT,
    "name": text,
    "tool_calls": items(TOOL_CALL_UNTYPED),
    "tool_call_id": identifier,
    "function_call": FUNCTION_CALL,
    "refusal": text,
    "audio": obj({"id": identifier}),
    "reasoning_content": text,
}, ("role",))
FUNCTION = obj({"name": text, "description": text, "parameters": free_form, "strict": boolean}, ("name",))


def stop(value: Any, path: str, container: Any, key: Any, shape: Shape) -> None:
    if isinstance(value, str):
        text(value, path, container, key, shape)
        return
    if not isinstance(value, list) or len(value) > 4 or not all(isinstance(item, str) and item for item in value):
        raise refuse(path, "must be a string or a list of up to 4 non-empty strings")
    items(text)(value, path, container, key, shape)



SAMPLING: dict[str, Checker] = {
    "model": lambda value, path, container, key, shape: None,  # check_model's: an alias of the policy, not forwarded
    "stream": boolean,
    "stream_options": obj({"include_usage": boolean, "continuous_usage_stats": boolean, "include_obfuscation": boolean}),
    "max_tokens": integer(1, MAX_TOKENS_CEILING),
    "n": integer(1, 128),
    "top_k": integer(-1, 1_000_000),
    "seed": integer(-(2**63), INT64),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "presence_penalty": number(-2, 2),
    "frequency_penalty": number(-2, 2),
    "stop": stop,
    "logit_bias": mapping(lambda v, p, c, k, w: _token_key(v, p), number(-100, 100), 1024),
    "user": text,
}


def _token_key(value: Any, path: str) -> None:
    if not isinstance(value, str) or not TOKEN_ID.fullmatch(value):
        raise refuse(path, "must be a token id (digits)")


CHAT: dict[str, Checker] = {
    **SAMPLING,
    "messages": items(MESSAGE, 1),
    "max_completion_tokens": integer(1, MAX_TOKENS_CEILING),
    "logprobs": boolean,
    "top_logprobs": integer(0, 20),
    "tools": items(tagged("type", {"function": {"function": FUNCTION}}, {"function": ("function",)}), 0, 512),
    "tool_choice": either((str, enum("none", "auto", "required")),
                          (dict, tagged("type", {"function": {"function": obj({"name": text}, ("name",))}})),
                          expected="none, auto, required or {type: function, function: {name}}"),
    "parallel_tool_calls": boolean,
    "functions": items(FUNCTION, 0, 128),
    "function_call": either((str, enum("none", "auto")), (dict, obj({"name": text}, ("name",))),
                            expected="none, auto or {name}"),
    "response_format": tagged("type", {"text": {}, "json_object": {}, "json_schema": {"json_schema": obj(
        {"name": text, "description": text, "schema": free_form, "strict": boolean}, ("name",))}}),
    "prediction": tagged("type", {"content": {"content": either(
        (str, text), (list, items(tagged("type", {"text": TEXT_PART}, {"text": ("text",)}))),
        expected="a string or a list of text parts")}}),
    "metadata": mapping(text, text, 16),
    "store": boolean,
    "service_tier": enum("auto", "default", "flex", "scale", "priority"),
    "reasoning_effort": enum("minimal", "low", "medium", "high"),
    "verbosity": enum("low", "medium", "high"),
    "modalities": items(enum("text", "audio"), 0, 2),
    "audio": obj({"voice": identifier, "format": enum("wav", "aac", "mp3", "flac", "opus", "pcm16")}),
    "web_search_options": free_form,
    "prompt_cache_key": text,
    "safety_identifier": text,
}
COMPLETIONS: dict[str, Checker] = {
    **SAMPLING,
    "prompt": either((str, text), (list, prompt_list), expected="a string, a list of strings, or token ids"),
    "suffix": text,
    "echo": boolean,
    "best_of": integer(1, 20),
    "logprobs": integer(0, 5),
}
EMBEDDINGS: dict[str, Checker] = {
    "model": SAMPLING["model"],
    "input": either((str, text), (list, prompt_list), expected="a string, a list of strings, or token ids"),
    "encoding_format": enum("float", "base64"),
    "dimensions": integer(1, 65536),
    "user": text,
}
ENDPOINTS: dict[str, tuple[dict[str, Checker], tuple[str, ...]]] = {
    "chat/completions": (CHAT, ("messages",)),
    "completions": (COMPLETIONS, ("prompt",)),
    "embeddings": (EMBEDDINGS, ("input",)),
}
KNOWN_NAMES = frozenset(name for fields, _ in ENDPOINTS.values() for name in fields) | {
    "role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio", "reasoning_content",
    "type", "text", "image_url", "url", "detail", "input_audio", "data", "format", "file", "file_data", "file_id",
    "filename", "id", "function", "arguments", "description", "parameters", "strict", "schema", "include_usage"}


def check_request(endpoint: str, body: dict[str, Any], extra_fields: frozenset[str] = frozenset()) -> Shape:
    """Check every field of ``body`` against the endpoint's model (raising a 400 ``ApiError``
    that names the first field refused) and return where its text is. ``extra_fields``: the
    engine-specific top-level fields the policy allows, taken as free-form text."""
    fields, required = ENDPOINTS[endpoint]
    shape = Shape()
    _fields(body, "", fields, required, shape, extra_fields)
    if len(shape.sites) > MAX_SITES:
        raise too_many_strings(f"{MAX_SITES:,} strings")
    if len(shape.sites) > MAX_TEXT_SITES and len({site.text for site in shape.sites}) > MAX_TEXT_SITES:
        raise too_many_strings(f"{MAX_TEXT_SITES:,} different strings")
    if endpoint == "completions" and isinstance(body.get("prompt"), list) and body["prompt"] \
            and isinstance(body["prompt"][0], int):
        body["prompt"] = [body["prompt"]]  # one prompt of token ids, as a batch of one
    return shape


def output_token_limit(policy_maximum: int | None, deployments: list[Deployment]) -> tuple[int, str, str]:
    """The most ``max_tokens`` / ``max_completion_tokens`` a request may ask of a route, why,
    and the error code for asking more: the alias's ``requests.max_output_tokens`` (or
    ``DEFAULT_OUTPUT_TOKENS``), and where every deployment on the route knows its context
    (embedded ones do; an upstream's ``context_length``), less than the largest (a prompt takes at least one token)."""
    code = "invalid_value"
    limit, why = (policy_maximum, "the policy's max_output_tokens") if policy_maximum is not None else (
        DEFAULT_OUTPUT_TOKENS, "the gateway's default bound; a policy sets requests.max_output_tokens")
    contexts = [(d.settings or EmbeddedSettings()).context_size if d.engine == "embedded" else d.context_length
                for d in deployments]
    if contexts and all(context is not None for context in contexts):
        largest = max(context for context in contexts if context is not None)
        if largest - 1 < limit:
            limit, why, code = largest - 1, f"the route's context is {largest} tokens", "context_length_exceeded"
    return limit, why, code
