"""Tags and segments in the bot: tag a resident, build a segment, watch the count change; errors with
their position in both languages; residents cannot use staff commands."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from sqlalchemy import select

from services.i18n import translate
from services.models import Resident
from services.tags import ensure_default_tags, recompute_rule_tags, resident_tag_codes
from tests.helpers import make_staff, staff_actor, texts
from tests.seed import seed_registry


async def _setup(stack):
    await seed_registry(stack.sessions)
    async with stack.session() as s:
        await ensure_default_tags(s)
        await recompute_rule_tags(s, datetime.now(UTC))
        await s.commit()


async def test_tag_resident_and_segment_count_changes(stack):
    await _setup(stack)
    staff = await make_staff(stack, lang="en")
    await staff.send('/segment has_tag("volunteer")')
    assert "<b>0</b> residents match." in await staff.texts_since_last_action(html=True)
    await staff.send("/tag 3-2-201 volunteer")
    assert "Several residents match" in await texts(staff)
    await staff.press("王秀英 (3-2-201)")
    assert "Tag volunteer added." in await texts(staff)
    await staff.send("/tag 赵桂兰 volunteer")
    assert "Tag volunteer added." in await texts(staff)
    await staff.send('/segment_save 志愿者 = has_tag("volunteer")')
    assert 'Segment "志愿者" saved: 2 residents now.' in await texts(staff)
    await staff.send("/untag 赵桂兰 volunteer")
    await staff.send("/segments")
    assert "<b>志愿者</b> · 1 ·" in await staff.texts_since_last_action(html=True)
    await staff.send('/segment has_tag("living_alone") and age >= 80')
    out = await staff.texts_since_last_action(html=True)
    assert "<b>1</b> resident matches." in out and "赵桂兰" in out
    await staff.send('/segment has_tag("lives_alone") and age >= 80')  # the tag's former code still reads
    assert "1 resident matches." in await texts(staff)
    await staff.send("/tag 赵桂兰 lives_alone")
    assert "cannot be set by hand" in await texts(staff)
    await staff.send("/segment 独居 且 年龄 >= 80")  # Chinese works, as the usage says
    assert "1 resident matches." in await texts(staff)
    await staff.send("/segment")
    assert "/segment 独居 且 年龄 >= 70" in await texts(staff)


async def test_bad_expression_error_has_position_in_both_languages(stack):
    await _setup(stack)
    for lang in ("en", "zh-hans"):
        staff = await make_staff(stack, f"staff-{lang}", lang=lang)
        await staff.send("/segment agee >= 80")
        out = await staff.texts_since_last_action(html=True)
        locale = "en" if lang == "en" else "zh_Hans"
        head = translate(locale, "column {column}: {message}").format(
            column=1, message=translate(locale, 'unknown field "{name}" — did you mean "{hint}"?').format(
                name="agee", hint="age"))
        assert escape(head, quote=False) in out and "<pre>agee &gt;= 80\n^</pre>" in out


async def test_residents_cannot_use_staff_commands(stack):
    await _setup(stack)
    user = await stack.client.create_user("Res", language_code="en")
    for command in ("/tag 3-2-201 volunteer", "/segment age >= 80", "/tags", "/notice"):
        await user.send(command)
        assert "for committee staff only" in await texts(user)


async def test_tagging_outside_scope_changes_nothing(stack):
    await _setup(stack)
    foreign = await make_staff(stack, "冯书记", "FLSQ", "en")
    await foreign.send("/tag 王秀英 volunteer")
    assert "Nobody matching" in await texts(foreign)
    async with stack.session() as s:
        wang = await s.scalar(select(Resident).where(Resident.name == "王秀英"))
    await foreign.send("/help")
    help_message = await foreign.last_message()
    await foreign.callback(help_message["message_id"], f"tg:1:{wang.id}:volunteer")
    [refused] = await foreign.bot_messages_since_last_action()  # the forged button's message, edited
    assert refused["message_id"] == help_message["message_id"] and "outside your area" in refused["text"]
    async with stack.session() as s:
        assert "volunteer" not in await resident_tag_codes(s, await staff_actor(s, "DXYC"), wang.id)
