"""The results chart names its bars in Chinese with a CJK font found through matplotlib's font
manager; without one it numbers them. CI installs a font and sets REQUIRE_CJK_FONT=1, so there the
Chinese test cannot be skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

from notifications import poll_chart
from services.polls import OptionResult, PollResults

OPTIONS = ["同意加装电梯", "不同意", "弃权"]


def elevator_vote() -> PollResults:
    return PollResults(
        id=7, question="3号楼是否加装电梯？", status="closed", unit="owner", rule="civil-code-major", quorum=None,
        secret=False, closes_at="2026-12-01T10:00:00+00:00", eligible_units=12, voted_units=10,
        eligible_area=1080.5, voted_area=902.25,
        options=[OptionResult("同意加装电梯", 8, 720.0), OptionResult("不同意", 1, 92.25),
                 OptionResult("弃权", 1, 90.0)],
        quorum_met=True, passed=False)


def draws(path: str, text: str) -> bool:
    face = FT2Font(path)
    return all(face.get_char_index(ord(ch)) for ch in text if not ch.isspace())


def test_the_chart_names_chinese_options_in_a_font_that_draws_them(tmp_path):
    if poll_chart.cjk_font() is None:
        if os.environ.get("REQUIRE_CJK_FONT") == "1":
            pytest.fail("REQUIRE_CJK_FONT=1 but no CJK font is installed (apt-get install -y fonts-wqy-microhei)")
        pytest.skip("no CJK font installed (apt-get install -y fonts-wqy-microhei)")
    figure = poll_chart.poll_figure(elevator_vote())
    ticks = figure.axes[0].get_xticklabels()
    assert [t.get_text() for t in ticks] == OPTIONS  # named, not numbered
    for tick in ticks:
        used = font_manager.findfont(tick.get_fontproperties(), fallback_to_default=False)
        assert font_manager.get_font(used).family_name in poll_chart.CJK_FAMILIES, used
        assert draws(used, tick.get_text()), (used, tick.get_text())
    assert not draws(font_manager.findfont("DejaVu Sans"), "同意")  # the check above can fail
    # drawing it warns of no missing glyph (warnings are errors in the tests)
    path = poll_chart.write_poll_chart(tmp_path, elevator_vote())
    assert Path(path).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_without_a_cjk_font_the_bars_are_numbered_not_drawn_as_boxes(monkeypatch):
    monkeypatch.setattr(poll_chart, "cjk_font", lambda: None)
    figure = poll_chart.poll_figure(elevator_vote())
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["1", "2", "3"]
    assert poll_chart.poll_chart(elevator_vote()).startswith(b"\x89PNG")
