"""Gemma's chat turns, tokenised so that caller text can never forge a control token."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Tokenizer = Callable[[str, bool], list[int]]  # (text, special) -> tokens


class MessageError(ValueError):
    pass


def message_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise MessageError("this deployment accepts only text content parts")
            parts.append(part["text"])
        return "".join(parts)
    raise MessageError("message content must be a string or a list of content parts")


def gemma_chat_tokens(messages: Sequence[dict[str, Any]], tokenize: Tokenizer, bos: int) -> list[int]:
    """``<bos><start_of_turn>user\\n…<end_of_turn>\\n<start_of_turn>model\\n``.

    Gemma has no system role: system and developer text opens the first user turn.
    """
    preamble: list[str] = []
    turns: list[tuple[str, str]] = []
    for message in messages:
        role, text = message["role"], message_text(message.get("content"))
        if role in ("system", "developer"):
            if turns:
                turns.append(("user", text))
            else:
                preamble.append(text)
        elif role == "assistant":
            turns.append(("model", text))
        else:  # user, tool
            turns.append(("user", text))
    if preamble:
        system = "\n\n".join(preamble)
        if turns and turns[0][0] == "user":
            turns[0] = ("user", f"{system}\n\n{turns[0][1]}")
        else:
            turns.insert(0, ("user", system))
    tokens = [bos]
    for role, text in turns:
        tokens += tokenize(f"<start_of_turn>{role}\n", True)
        tokens += tokenize(text, False)
        tokens += tokenize("<end_of_turn>\n", True)
    tokens += tokenize("<start_of_turn>model\n", True)
    return tokens
