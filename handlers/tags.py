"""Staff in the bot: the tag dictionary (/tags), tagging (/tag, /untag) and segments (/segment …)."""

from __future__ import annotations

from datetime import datetime

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import inline
from handlers.staff import StaffOnly
from notifications.callbacks import TagCb
from notifications.format import room_text
from notifications.limits import clip, excerpt
from notifications.render import plain, render_template, t, tn
from services import segments as seg
from services import tags as ts
from services.expressions import ExpressionError, canonical_tag_code
from services.models import Resident, TagKind
from services.residents import find_residents
from services.scope import Actor

PREVIEW = 10
SEGMENTS_SHOWN = 15  # with expressions cut to EXPRESSION_SHOWN, the list stays under 4096 characters
EXPRESSION_SHOWN = 120


def router() -> Router:
    r = Router(name="tags")
    only = StaffOnly()
    r.message.register(list_tags, Command("tags"), only)
    r.message.register(tag_command, Command("tag", "untag"), only)
    r.callback_query.register(tag_chosen, TagCb.filter(), only)
    r.message.register(segment_command, Command("segment"), only)
    r.message.register(segment_save, Command("segment_save"), only)
    r.message.register(segments_list, Command("segments"), only)
    return r


def resident_label(r: Resident) -> str:
    """``王秀英 (3-2-201)``: plain text, for buttons and (escaped) lists."""
    room = room_text(r.building, r.unit, r.room)
    return f"{r.name} ({room})" if room else r.name


async def list_tags(message: Message, actor: Actor, session: AsyncSession) -> None:
    tags = await ts.list_tags(session, actor)
    rows = [(tg.code, ts.tag_name(tg, actor.locale), tg.rule if tg.kind == TagKind.rule else None) for tg in tags]
    await message.answer(render_template("tags/dictionary.html", tags=rows))


async def _resolve_code(session: AsyncSession, actor: Actor, word: str) -> str | None:
    """A tag code from its code (or former code) or its name in either language."""
    word = canonical_tag_code(word)
    for tg in await ts.list_tags(session, actor):
        if word in (tg.code, tg.name_zh, tg.name_en):
            return tg.code
    return None


async def tag_command(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                      now: datetime) -> None:
    add = command.command == "tag"
    parts = (command.args or "").split()
    if len(parts) < 2:
        await message.answer(t("Usage: /{cmd} &lt;room or name&gt; &lt;tag&gt;, e.g. /{cmd} 3-2-201 volunteer",
                               cmd=command.command))
        return
    code = await _resolve_code(session, actor, parts[-1])
    if code is None:
        await message.answer(t("Unknown tag \"{code}\". Send /tags for the dictionary.", code=clip(parts[-1])))
        return
    query = " ".join(parts[:-1])
    found = await find_residents(session, actor, query, limit=8)
    if not found:
        await message.answer(t("Nobody matching {query} in your area.", query=clip(query)))
        return
    if len(found) > 1:
        await message.answer(t("Several residents match. Which one?"), reply_markup=inline(
            [[(resident_label(r), TagCb(add=add, resident=r.id, code=code).pack())] for r in found]))
        return
    await message.answer(await _apply(session, actor, add, found[0].id, code, now))


async def _apply(session: AsyncSession, actor: Actor, add: bool, resident_id: int, code: str,
                 now: datetime) -> Markup:
    try:
        changed = await (ts.tag_resident if add else ts.untag_resident)(session, actor, resident_id, code, now)
    except ts.NotInScope:
        return t("This resident does not exist or is outside your area.")
    except ts.TagError as err:
        return plain(str(err))
    codes = await ts.resident_tag_codes(session, actor, resident_id)
    if add:
        head = (t("Tag {code} added.", code=code) if changed
                else t("The resident already had tag {code}.", code=code))
    else:
        head = (t("Tag {code} removed.", code=code) if changed
                else t("The resident did not have tag {code}.", code=code))
    return t("{head}\nTags now: {codes}", head=head, codes=", ".join(codes) or "—")


async def tag_chosen(query: CallbackQuery, callback_data: TagCb, actor: Actor, session: AsyncSession,
                     now: datetime) -> None:
    text = await _apply(session, actor, callback_data.add, callback_data.resident, callback_data.code, now)
    await query.answer()
    if query.message:
        await query.message.edit_text(text, reply_markup=None)


def _expression_error(err: ExpressionError, expression: str) -> Markup:
    # Only the part around the mistake is repeated: a 4,000-character expression would not fit twice.
    shown, column = excerpt(expression, err.position)
    return render_template("tags/expression_error.html", message=clip(str(err), 300), expression=shown,
                           marker=" " * (column - 1) + "^")


async def segment_command(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                          now: datetime) -> None:
    expression = (command.args or "").strip()
    if not expression:
        await message.answer(t("Usage: /segment &lt;expression&gt;, e.g. /segment age >= 80 and living_alone == true\n"
                               "Chinese works too: /segment 独居 且 年龄 >= 70"))
        return
    today = now.date()
    try:
        count = await seg.count_segment(session, actor, expression, today)
        first = await seg.preview_segment(session, actor, expression, today, limit=PREVIEW)
    except ExpressionError as err:
        await message.answer(_expression_error(err, expression))
        return
    await message.answer(render_template(
        "tags/segment.html", first=[resident_label(r) for r in first], more=max(0, count - len(first)),
        count_line=tn("<b>{n}</b> resident matches.", "<b>{n}</b> residents match.", count)))


async def segment_save(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                       now: datetime) -> None:
    name, sep, expression = (command.args or "").partition("=")
    if not sep or not name.strip() or not expression.strip():
        await message.answer(t("Usage: /segment_save name = expression, e.g. /segment_save 独居高龄 = "
                               "has_tag(\"living_alone\") and age >= 80"))
        return
    try:
        saved = await seg.save_segment(session, actor, name, expression.strip(), now)
        count = await seg.count_segment(session, actor, saved.expression, now.date())
    except ExpressionError as err:
        await message.answer(_expression_error(err, expression.strip()))
        return
    except (seg.SegmentError, ts.NotInScope) as err:
        await message.answer(plain(str(err)))
        return
    await message.answer(tn("Segment \"{name}\" saved: {n} resident now.",
                            "Segment \"{name}\" saved: {n} residents now.", count, name=saved.name))


async def segments_list(message: Message, actor: Actor, session: AsyncSession, now: datetime) -> None:
    items = await seg.list_segments(session, actor)
    if not items:
        await message.answer(t("No saved segments yet. Try /segment age >= 80"))
        return
    rows = [(s.name, await seg.count_segment(session, actor, s.expression, now.date()), _cut(s.expression))
            for s in items[:SEGMENTS_SHOWN]]
    await message.answer(render_template("tags/segments.html", segments=rows,
                                         more=max(0, len(items) - SEGMENTS_SHOWN)))


def _cut(text: str, length: int = EXPRESSION_SHOWN) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"
