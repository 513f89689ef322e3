"""Staff in the bot: the tag dictionary (/tags), tagging (/tag, /untag) and segments (/segment …)."""

from __future__ import annotations

from datetime import datetime
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Message
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.keyboards import inline
from handlers.staff import StaffOnly
from services import segments as seg
from services import tags as ts
from services.expressions import ExpressionError
from services.i18n import _
from services.models import TagKind
from services.residents import find_residents
from services.scope import Actor

PREVIEW = 10


class TagCb(CallbackData, prefix="tg"):
    add: bool
    resident: int
    code: str


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


def resident_label(r) -> str:
    room = "-".join(p for p in (r.building, r.unit, r.room) if p)
    return f"{r.name} ({room})" if room else r.name


async def list_tags(message: Message, actor: Actor, session: AsyncSession) -> None:
    tags = await ts.list_tags(session, actor)
    lines = [_("<b>Tag dictionary</b> (code — name — how it is set)")]
    for t in tags:
        how = _("rule: {rule}").format(rule=escape(t.rule)) if t.kind == TagKind.rule else _("set by staff")
        lines.append(f"<code>{escape(t.code)}</code> — {escape(ts.tag_name(t, actor.locale))} — {how}")
    await message.answer("\n".join(lines))


async def _resolve_code(session: AsyncSession, actor: Actor, word: str) -> str | None:
    """A tag code from its code or its name in either language."""
    for t in await ts.list_tags(session, actor):
        if word in (t.code, t.name_zh, t.name_en):
            return t.code
    return None


async def tag_command(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                      now: datetime) -> None:
    add = command.command == "tag"
    parts = (command.args or "").split()
    if len(parts) < 2:
        await message.answer(_("Usage: /{cmd} &lt;room or name&gt; &lt;tag&gt;, e.g. /{cmd} 3-2-201 volunteer")
                             .format(cmd=command.command))
        return
    code = await _resolve_code(session, actor, parts[-1])
    if code is None:
        await message.answer(_("Unknown tag \"{code}\". Send /tags for the dictionary.").format(code=escape(parts[-1])))
        return
    found = await find_residents(session, actor, " ".join(parts[:-1]), limit=8)
    if not found:
        await message.answer(_("Nobody matching {query} in your area.").format(query=escape(" ".join(parts[:-1]))))
        return
    if len(found) > 1:
        await message.answer(_("Several residents match. Which one?"), reply_markup=inline(
            [[(resident_label(r), TagCb(add=add, resident=r.id, code=code).pack())] for r in found]))
        return
    await message.answer(await _apply(session, actor, add, found[0].id, code, now))


async def _apply(session: AsyncSession, actor: Actor, add: bool, resident_id: int, code: str, now: datetime) -> str:
    try:
        changed = await (ts.tag_resident if add else ts.untag_resident)(session, actor, resident_id, code, now)
    except ts.NotInScope:
        return _("This resident does not exist or is outside your area.")
    except ts.TagError as err:
        return escape(str(err))
    codes = await ts.resident_tag_codes(session, actor, resident_id)
    if add:
        head = _("Tag {code} added.") if changed else _("The resident already had tag {code}.")
    else:
        head = _("Tag {code} removed.") if changed else _("The resident did not have tag {code}.")
    return head.format(code=escape(code)) + "\n" + _("Tags now: {codes}").format(codes=escape(", ".join(codes)) or "—")


async def tag_chosen(query: CallbackQuery, callback_data: TagCb, actor: Actor, session: AsyncSession,
                     now: datetime) -> None:
    text = await _apply(session, actor, callback_data.add, callback_data.resident, callback_data.code, now)
    await query.answer()
    if query.message:
        await query.message.edit_text(text, reply_markup=None)


def _expression_error(err: ExpressionError, expression: str) -> str:
    marker = " " * (err.position - 1) + "^"
    return f"{escape(str(err))}\n<pre>{escape(expression)}\n{marker}</pre>"


async def segment_command(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                          now: datetime) -> None:
    expression = (command.args or "").strip()
    if not expression:
        await message.answer(_("Usage: /segment &lt;expression&gt;, e.g. /segment age >= 80 and living_alone == true"))
        return
    today = now.date()
    try:
        count = await seg.count_segment(session, actor, expression, today)
        first = await seg.preview_segment(session, actor, expression, today, limit=PREVIEW)
    except ExpressionError as err:
        await message.answer(_expression_error(err, expression))
        return
    lines = [_("<b>{n}</b> residents match.").format(n=count)]
    lines += [f"· {escape(resident_label(r))}" for r in first]
    if count > len(first):
        lines.append(_("… and {n} more.").format(n=count - len(first)))
    lines.append(_("Save it with /segment_save name = expression"))
    await message.answer("\n".join(lines))


async def segment_save(message: Message, command: CommandObject, actor: Actor, session: AsyncSession,
                       now: datetime) -> None:
    name, sep, expression = (command.args or "").partition("=")
    if not sep or not name.strip() or not expression.strip():
        await message.answer(_("Usage: /segment_save name = expression, e.g. /segment_save 独居高龄 = "
                               "has_tag(\"lives_alone\") and age >= 80"))
        return
    try:
        saved = await seg.save_segment(session, actor, name, expression.strip(), now)
        count = await seg.count_segment(session, actor, saved.expression, now.date())
    except ExpressionError as err:
        await message.answer(_expression_error(err, expression.strip()))
        return
    except (seg.SegmentError, ts.NotInScope) as err:
        await message.answer(escape(str(err)))
        return
    await message.answer(_("Segment \"{name}\" saved: {n} residents now.").format(name=escape(saved.name), n=count))


async def segments_list(message: Message, actor: Actor, session: AsyncSession, now: datetime) -> None:
    items = await seg.list_segments(session, actor)
    if not items:
        await message.answer(_("No saved segments yet. Try /segment age >= 80"))
        return
    lines = []
    for s in items[:30]:
        n = await seg.count_segment(session, actor, s.expression, now.date())
        lines.append(f"<b>{escape(s.name)}</b> · {n} · <code>{escape(s.expression)}</code>")
    await message.answer("\n".join(lines))
