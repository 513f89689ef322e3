"""The tag dictionary: every tag that applies in the area, how many residents carry it, its rule; a
form to define (or redefine) a tag of one's own region; XLSX export."""

from __future__ import annotations

from aiohttp import web

from bot.console.core import NavItem, ctx, not_found, render, url
from bot.console.export import xlsx_response
from services import tags as ts
from services.expressions import ExpressionError
from services.i18n import N_, _
from services.ids import parse_db_id
from services.models import Tag, TagKind

routes = web.RouteTableDef()
NAV = (NavItem("tags", N_("Tag dictionary"), "/tags", order=30),)
# The built-in tags' categories as staff read them; a region's own category shows as typed.
CATEGORIES = {"age": N_("age"), "care": N_("care"), "community": N_("community"), "general": N_("general")}


def category_name(category: str) -> str:
    return _(CATEGORIES[category]) if category in CATEGORIES else category


async def _page(request: web.Request, *, error: str | None = None, form: dict | None = None,
                status: int = 200) -> web.Response:
    c = ctx(request)
    tags = await ts.list_tags(c.db, c.actor)
    usage = await ts.tag_usage(c.db, c.actor)
    owners = {g.region_id: g.region_name for g in c.actor.staff}
    return render(request, "tags.html", status=status, tags=tags, usage=usage, owners=owners, error=error,
                  form=form or {}, regions=c.actor.staff, defined=request.query.get("defined"),
                  owner_name=lambda tag: _owner(tag, owners), category_name=category_name)


def _owner(tag: Tag, owners: dict[int, str]) -> str:
    if tag.region_id is None:
        return _("built-in")
    return owners.get(tag.region_id, "#" + str(tag.region_id))


@routes.get("/tags")
async def tags_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/tags")
async def define_tag(request: web.Request) -> web.Response:
    """Define a tag in one of the staff member's regions (``services.tags.define_tag``: scoped, audited)."""
    c = ctx(request)
    form = {k: v.strip() for k, v in (await request.post()).items() if isinstance(v, str)}
    kind = form.get("kind") or TagKind.manual.value
    if kind not in (TagKind.manual.value, TagKind.rule.value):
        raise web.HTTPBadRequest()
    region_id = parse_db_id(form.get("region"))
    if not form.get("name_zh") or not form.get("name_en"):
        return await _page(request, error=_("A tag needs a name in Chinese and in English."), form=form, status=400)
    try:
        tag = await ts.define_tag(c.db, c.actor, code=form.get("code", ""), name_zh=form["name_zh"][:100],
                                  name_en=form["name_en"][:100], kind=kind, rule=form.get("rule") or None,
                                  category=(form.get("category") or "general")[:32], region_id=region_id, now=c.now)
    except ts.NotInScope:
        not_found()
    except (ts.TagError, ExpressionError) as err:
        return await _page(request, error=str(err), form=form, status=400)
    raise web.HTTPSeeOther(url("/tags", defined=tag.code))


@routes.get("/tags/export.xlsx")
async def tags_export(request: web.Request) -> web.Response:
    c = ctx(request)
    tags = await ts.list_tags(c.db, c.actor)
    usage = await ts.tag_usage(c.db, c.actor)
    owners = {g.region_id: g.region_name for g in c.actor.staff}
    rows = [(t.code, t.name_zh, t.name_en, category_name(t.category),
             _("rule") if t.kind == TagKind.rule else _("manual"), t.rule or "", _owner(t, owners),
             usage.get(t.code, 0)) for t in tags]
    headers = [_("Code"), _("Chinese name"), _("English name"), _("Category"), _("Kind"), _("Rule"), _("Defined by"),
               _("Residents")]
    return await xlsx_response(f"tags-{c.now.date().isoformat()}.xlsx", _("Tag dictionary"), headers, rows)
