"""The region hierarchy: city → district → street → committee → compound."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.i18n import _
from services.models import LEVEL_ORDER, Region, RegionLevel
from services.scope import Actor


@dataclass(frozen=True, slots=True)
class RegionRow:
    code: str
    name: str
    level: str
    parent_code: str | None = None
    name_en: str | None = None


# A built-in demo hierarchy (codes are illustrative, not official statistical codes).
DEMO_REGIONS: tuple[RegionRow, ...] = (
    RegionRow("310000", "上海市", "city", None, "Shanghai"),
    RegionRow("310104", "徐汇区", "district", "310000", "Xuhui District"),
    RegionRow("310104003", "斜土路街道", "street", "310104", "Xietu Road Street"),
    RegionRow("DXYC", "丁香迎春居委会", "committee", "310104003", "Dingxiang Yingchun Committee"),
    RegionRow("DXYC-01", "丁香苑", "compound", "DXYC", "Dingxiang Garden"),
    RegionRow("DXYC-02", "迎春小区", "compound", "DXYC", "Yingchun Estate"),
    RegionRow("RJXC", "日晖新村居委会", "committee", "310104003", "Rihui Xincun Committee"),
    RegionRow("RJXC-01", "日晖新村", "compound", "RJXC", "Rihui Xincun"),
    RegionRow("310104012", "枫林路街道", "street", "310104", "Fenglin Road Street"),
    RegionRow("FLSQ", "枫林居委会", "committee", "310104012", "Fenglin Committee"),
    RegionRow("FLSQ-01", "枫林小区", "compound", "FLSQ", "Fenglin Estate"),
)


class RegionImportError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class RegionImportResult:
    created: int = 0
    updated: int = 0
    errors: list[RegionImportError] = field(default_factory=list)


def parse_regions_csv(text: str) -> tuple[list[tuple[int, RegionRow]], list[RegionImportError]]:
    """Rows of ``code,name,level,parent_code[,name_en]`` with their line numbers, and bad lines."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    rows, errors = [], []
    for row in reader:
        line = reader.line_num
        code = (row.get("code") or "").strip()
        name = (row.get("name") or "").strip()
        level = (row.get("level") or "").strip().lower()
        if not code or not name:
            errors.append(RegionImportError(line, _("code and name are required")))
            continue
        if level not in RegionLevel.__members__:
            errors.append(RegionImportError(line, _("unknown level {level!r}").format(level=level)))
            continue
        parent = (row.get("parent_code") or "").strip() or None
        rows.append((line, RegionRow(code, name, level, parent, (row.get("name_en") or "").strip() or None)))
    return rows, errors


async def upsert_regions(session: AsyncSession, rows: list[tuple[int, RegionRow]]) -> RegionImportResult:
    """Create or update regions, parents before children; idempotent. Bad parents are reported."""
    result = RegionImportResult()
    existing = {r.code: r for r in (await session.scalars(select(Region))).all()}
    pending = sorted(rows, key=lambda lr: LEVEL_ORDER.index(RegionLevel(lr[1].level)))
    for line, row in pending:
        level = RegionLevel(row.level)
        parent = existing.get(row.parent_code) if row.parent_code else None
        if row.parent_code and parent is None:
            result.errors.append(RegionImportError(line, _("unknown parent {code}").format(code=row.parent_code)))
            continue
        if parent is not None and LEVEL_ORDER.index(parent.level) >= LEVEL_ORDER.index(level):
            result.errors.append(RegionImportError(line, _("a {level} cannot sit under a {parent}").format(
                level=level.value, parent=parent.level.value)))
            continue
        path = (parent.path if parent else "/") + row.code + "/"
        region = existing.get(row.code)
        if region is None:
            region = Region(code=row.code, name=row.name, name_en=row.name_en, level=level,
                            parent_id=parent.id if parent else None, path=path)
            session.add(region)
            result.created += 1
        else:
            region.name, region.name_en, region.level = row.name, row.name_en, level
            region.parent_id, region.path = (parent.id if parent else None), path
            result.updated += 1
        await session.flush()
        existing[row.code] = region
    return result


async def ensure_demo_regions(session: AsyncSession) -> None:
    """Create the built-in demo hierarchy if it is missing; idempotent."""
    await upsert_regions(session, list(enumerate(DEMO_REGIONS, start=1)))


async def get_region(session: AsyncSession, code: str) -> Region | None:
    return await session.scalar(select(Region).where(Region.code == code))


async def committee_of_staff(session: AsyncSession, actor: Actor, code: str | None = None) -> Region | None:
    """The committee a staff member acts for: the committee coded ``code`` if within their scope, else
    (no or blank code) the first committee they are staff of; None if there is no such committee."""
    if code and code.strip():
        region = await get_region(session, code.strip())
        if region is None or region.level != RegionLevel.committee or not actor.covers_path(region.path):
            return None
        return region
    ids = [g.region_id for g in actor.staff]
    return await session.scalar(select(Region).where(Region.id.in_(ids), Region.level == RegionLevel.committee)
                                .order_by(Region.id).limit(1))


async def committee_compounds(session: AsyncSession, committee: Region) -> dict[str, Region]:
    """Compounds under a committee, by name."""
    rows = await session.scalars(select(Region).where(Region.parent_id == committee.id,
                                                      Region.level == RegionLevel.compound))
    return {r.name: r for r in rows}
