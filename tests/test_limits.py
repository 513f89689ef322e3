"""notifications.limits: what is echoed is clipped, what is long is paged; nothing Telegram refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifications.limits import ELLIPSIS, MAX_MESSAGE, clip, pages, tg_len


def test_clip_keeps_short_text_and_cuts_long_text_with_an_ellipsis():
    assert clip("3-201") == "3-201"
    assert clip(None) == ""
    long = "x" * 10_000
    out = clip(long)
    assert len(out) == 100 and out.endswith(ELLIPSIS) and out.startswith("x" * 99)
    assert clip(long, 10) == "x" * 9 + ELLIPSIS


def test_clip_counts_as_telegram_does_and_never_splits_an_emoji():
    text = "😀" * 80  # 160 UTF-16 units
    out = clip(text, 100)
    assert tg_len(out) <= 100 and out.endswith(ELLIPSIS) and set(out[:-1]) == {"😀"}


def test_pages_keep_lines_whole_and_within_the_limit():
    lines = [f"{i:04d} " + "王" * 60 for i in range(500)]
    out = pages(lines, header="<b>Results</b>")
    assert len(out) > 1 and all(tg_len(p) <= MAX_MESSAGE for p in out)
    assert out[0].startswith("<b>Results</b>\n")
    assert "\n".join(out).split("\n")[1:] == lines  # nothing lost, nothing reordered, no line split


def test_a_line_longer_than_a_page_is_split_outside_tags_and_entities():
    line = ("a&amp;<b>b</b>" * 1000)
    out = pages([line], limit=100)
    assert "".join(out) == line and all(tg_len(p) <= 100 for p in out)
    for p in out:
        assert p.count("<") == p.count(">") and p.count("&") == p.count(";")


def test_no_pages_for_nothing():
    assert pages([]) == [] and pages(["", " "]) == []


@given(st.lists(st.text(max_size=300), max_size=60), st.integers(min_value=2, max_value=500))
def test_pages_never_exceed_the_limit(lines, limit):
    assert all(tg_len(p) <= limit and p.strip() for p in pages(lines, limit))


@given(st.text(max_size=300), st.integers(min_value=1, max_value=120))
def test_clip_never_exceeds_the_limit(text, limit):
    out = clip(text, limit)
    assert tg_len(out) <= limit and (out == text or out.endswith(ELLIPSIS))


def test_limits_are_checked():
    with pytest.raises(ValueError):
        clip("x", 0)


def test_excerpt_keeps_the_error_position_under_its_marker():
    from notifications.limits import excerpt

    assert excerpt("age >= 80", 5) == ("age >= 80", 5)
    text = "x" * 5000 + "@" + "y" * 5000
    piece, pos = excerpt(text, 5001, width=40)
    assert len(piece) == 40 and piece[pos - 1] == "@" and piece.startswith(ELLIPSIS) and piece.endswith(ELLIPSIS)
    piece, pos = excerpt(text, len(text) + 1, width=40)  # "missing )" points one past the end
    assert len(piece) == 40 and pos == 41 and piece.startswith(ELLIPSIS) and piece.endswith("y")
    piece, pos = excerpt(text, 1, width=40)
    assert piece[0] == "x" and pos == 1 and piece.endswith(ELLIPSIS)
