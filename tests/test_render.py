"""The render layer escapes everything it did not make itself, in every locale."""

from __future__ import annotations

from notifications.render import Markup, join, render_message, render_template, resolve_payload, t
from services.i18n import use_locale
from services.outbox import message_payload

HOSTILE = '<a href="tg://user?id=1">Call 110</a> & <b>'


def test_t_escapes_values_but_not_the_translated_text():
    out = t("Welcome, {name}!", name=HOSTILE)
    assert "&lt;a href=&#34;tg://user?id=1&#34;&gt;Call 110&lt;/a&gt; &amp; &lt;b&gt;" in out
    assert "<a" not in out


def test_t_keeps_markup_made_here():
    bold = Markup("<b>{}</b>").format(HOSTILE)
    out = t("Welcome, {name}!", name=bold)
    assert out.count("<b>") == 1 and "&lt;b&gt;" in out


def test_join_escapes_plain_parts():
    assert join(["<i>", Markup("<i>x</i>")]) == "&lt;i&gt;\n<i>x</i>"


def test_templates_autoescape_and_translate():
    with use_locale("en"):
        out = render_template("common/example_list.html", names=[HOSTILE, "王芳"])
    assert out.startswith("<b>Residents</b>")
    assert "· &lt;a href=" in out and "· 王芳" in out
    assert out.endswith("2 residents")


def test_message_payload_renders_in_the_recipients_locale():
    payload = message_payload("common.example_list", {"names": [HOSTILE]}, locale="en")
    sent = resolve_payload(payload)
    assert sent["parse_mode"] == "HTML" and "message" not in sent and "data" not in sent
    assert sent["text"].endswith("1 resident") and "&lt;a href=" in sent["text"]
    assert render_message("common.example_list", {"names": []}, "zh_Hans").text.startswith("<b>")
