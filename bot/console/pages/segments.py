"""Segments: the saved expressions of the staff member's area with their live counts, and an editor
that counts the residents an expression matches (or points at its mistake) as it is typed.

The editor works without JavaScript (the count and the mistake are drawn with the page); with it,
``static/counts.js`` asks ``/segments/count`` (JSON) a moment after each keystroke. Both answers come
from ``services.segments.live_count``: the same parser, the same scope, the same count as the bot's
/segment.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from multidict import MultiMapping

from bot.console.core import Ctx, NavItem, ctx, not_found, render, url
from bot.console.export import xlsx_response
from services import segments as seg
from services.clock import local_time
from services.expressions import FIELDS, MAX_LENGTH, ExpressionError
from services.i18n import N_, _, ngettext
from services.ids import parse_db_id
from services.models import Segment
from services.tags import NotInScope

routes = web.RouteTableDef()
NAV = (NavItem("segments", N_("Segments"), "/segments", order=32),)
PREVIEW = 10
EXAMPLES = ("age >= 80 and living_alone == true", "独居 且 年龄 >= 70", 'has_tag("volunteer")',
            'building in ("3", "5") and gender == "F"', "between(age, 60, 69) or disability_level >= 1")


@dataclass(frozen=True, slots=True)
class Shown:
    """A live count as the page shows it: one sentence, and the expression cut at the mistake."""

    ok: bool
    text: str
    position: int | None
    before: str = ""
    at: str = ""
    after: str = ""


def today(c: Ctx):
    """The committees' calendar day now (ages are counted on it)."""
    return local_time(c.now, c.tz).date()


def shown(expression: str, live: seg.LiveCount) -> Shown:
    if live.error is not None:
        chars = list(expression)  # columns count characters, as the parser does
        at = min(max((live.position or 1) - 1, 0), len(chars))
        return Shown(False, _("column {column}: {message}").format(column=live.position, message=live.error),
                     live.position, "".join(chars[:at]), chars[at] if at < len(chars) else " ",
                     "".join(chars[at + 1:]))
    count = live.count or 0
    text = ngettext("{n} resident matches.", "{n} residents match.", count).format(n=count)
    if live.unknown_tags:
        text += " " + _("No tag {codes} in your area: it matches nobody.").format(codes=", ".join(live.unknown_tags))
    return Shown(True, text, None)


def _fields() -> list[tuple[str, str]]:
    return [(spec.name, " / ".join(spec.aliases)) for spec in FIELDS.values()]


async def _segments_with_counts(c: Ctx) -> list[tuple[Segment, int | None]]:
    out: list[tuple[Segment, int | None]] = []
    for segment in await seg.list_segments(c.db, c.actor):
        try:
            out.append((segment, await seg.count_segment(c.db, c.actor, segment.expression, today(c))))
        except ExpressionError:  # saved before a field was renamed: shown, not counted
            out.append((segment, None))
    return out


async def _list_page(request: web.Request, *, form: dict[str, str] | None = None, error: str | None = None,
                     status: int = 200) -> web.Response:
    c = ctx(request)
    form = form or {}
    expression = form.get("expression", "")
    live = shown(expression, await seg.live_count(c.db, c.actor, expression, today(c))) if expression else None
    done = {"deleted": _("The segment was deleted.")}.get(request.query.get("done", ""))
    return render(request, "segments.html", status=status, segments=await _segments_with_counts(c), form=form,
                  live=live, error=error, done=done, fields=_fields(), examples=EXAMPLES, max_length=MAX_LENGTH,
                  regions=c.actor.staff)


@routes.get("/segments")
async def segments_page(request: web.Request) -> web.Response:
    return await _list_page(request, form={"expression": (request.query.get("expression") or "")[:MAX_LENGTH]})


async def asked(request: web.Request) -> MultiMapping[str]:
    """The fields of a live question: the query string, or the body of one too long for a URL (posted,
    so it passed the CSRF check like any post)."""
    return request.query if request.method == "GET" else await request.post()


@routes.get("/segments/count")
@routes.post("/segments/count")
async def live_count(request: web.Request) -> web.Response:
    """JSON for the editor: ``{"ok", "text", "count" | "position", "error"}`` (reads only)."""
    c = ctx(request)
    expression = str((await asked(request)).get("expression") or "")
    live = await seg.live_count(c.db, c.actor, expression[:MAX_LENGTH + 1], today(c))
    view = shown(expression, live)
    return web.json_response({"ok": live.ok, "text": view.text, "count": live.count, "position": live.position,
                              "error": live.error, "unknown_tags": list(live.unknown_tags)})


@routes.post("/segments")
async def save(request: web.Request) -> web.Response:
    """Save (or replace, by region and name) a segment: ``services.segments.save_segment``, audited."""
    c = ctx(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str) and k != "csrf"}
    region_id = parse_db_id(form.get("region")) if form.get("region") else None
    if form.get("region") and region_id is None:
        raise web.HTTPBadRequest()
    try:
        saved = await seg.save_segment(c.db, c.actor, form.get("name", ""), form.get("expression", ""), c.now,
                                       region_id=region_id)
    except NotInScope:
        not_found()
    except ExpressionError:
        return await _list_page(request, form=form, status=400)  # the editor shows where
    except seg.SegmentError as err:
        return await _list_page(request, form=form, error=str(err), status=400)
    raise web.HTTPSeeOther(url(f"/segments/{saved.id}", done="saved"))


async def _segment(c: Ctx, raw: str) -> Segment:
    segment_id = parse_db_id(raw)
    segment = None if segment_id is None else await seg.get_segment(c.db, c.actor, segment_id)
    if segment is None:
        not_found()
    return segment


@routes.get(r"/segments/{id:\d+}")
async def segment_page(request: web.Request) -> web.Response:
    c = ctx(request)
    segment = await _segment(c, request.match_info["id"])
    expression = (request.query.get("expression") or segment.expression)[:MAX_LENGTH]
    live = await seg.live_count(c.db, c.actor, expression, today(c))
    first = await seg.preview_segment(c.db, c.actor, expression, today(c), limit=PREVIEW) if live.ok else []
    done = {"saved": _("The segment is saved.")}.get(request.query.get("done", ""))
    return render(request, "segment.html", segment=segment, form={"name": segment.name, "expression": expression},
                  live=shown(expression, live), first=first, more=max(0, (live.count or 0) - len(first)),
                  done=done, fields=_fields(), examples=EXAMPLES, max_length=MAX_LENGTH)


@routes.post(r"/segments/{id:\d+}/delete")
async def delete(request: web.Request) -> web.Response:
    c = ctx(request)
    segment = await _segment(c, request.match_info["id"])
    await seg.delete_segment(c.db, c.actor, segment.id, c.now)
    raise web.HTTPSeeOther(url("/segments", done="deleted"))


@routes.get("/segments/export.xlsx")
async def export(request: web.Request) -> web.Response:
    c = ctx(request)
    regions = {g.region_id: g.region_name for g in c.actor.staff}
    rows = [(s.name, s.expression, count, regions.get(s.region_id, "#" + str(s.region_id)),
             local_time(s.updated_at, c.tz).strftime("%Y-%m-%d %H:%M"))
            for s, count in await _segments_with_counts(c)]
    headers = [_("Segment name"), _("Expression"), _("Residents"), _("Region"), _("Changed")]
    return await xlsx_response(f"segments-{today(c).isoformat()}.xlsx", _("Segments"), headers, rows)
